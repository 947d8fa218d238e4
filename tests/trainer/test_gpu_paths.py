"""The code paths a GPU run takes, run on the CPU: torch.compile (model and Muon), bf16 autocast,
the attention kernel at every head dim the API allows, and the precision flags' refusals.

What the CPU cannot show (kernel speed, the flash kernel's own numerics, FP8 GEMMs) is measured by
bench/gpu_check.py on a GPU; these tests keep the paths themselves from rotting in between.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable

import pytest

from miniseries.contract.shapes import model_shape

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

from miniseries_trainer import model as model_module  # noqa: E402
from miniseries_trainer import precision  # noqa: E402
from miniseries_trainer.model import attention, build_model  # noqa: E402
from miniseries_trainer.optim import build_optimizers, set_schedule  # noqa: E402
from miniseries_trainer.step import train_step  # noqa: E402

#: compiled vs eager, fp32, over STEPS steps: inductor reorders and fuses fp32 arithmetic, so the
#: losses may differ in the last bits (4.8e-7 here), which Muon's orthogonalization may amplify per step.
COMPILE_LOSS_TOLERANCE = 1e-4
#: bf16 autocast vs fp32 over STEPS steps: bf16 keeps 8 bits of mantissa (relative error ~4e-3 per
#: matmul); the loss, an average over many tokens, moved 5e-4 here (10x margin).
BF16_LOSS_TOLERANCE = 5e-3
STEPS = 4
CPU = torch.device("cpu")


def tiny_run(
    *, compile: bool = False, precision_name: str = "fp32", head_dim: int = 16, steps: int = STEPS
) -> tuple[list[float], float]:
    """Losses of `steps` optimizer steps of a depth-2 GPT on fixed random tokens, and the wall seconds."""
    torch.manual_seed(0)
    shape = model_shape(2, aspect_ratio=32, head_dim=head_dim, vocab_size=256, sequence_len=32)
    model = build_model(shape, CPU)
    with torch.no_grad():  # the init zeroes output projections and nearly the lm_head: make every matmul count
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    forward = precision.prepare(model, precision=precision_name, compile=compile)
    optimizers = build_optimizers(model, total_batch_tokens=2 * 32 * 2, compile=compile)
    gen = torch.Generator().manual_seed(1)
    # the same two micro-batches every step: the loss falls as they are learnt
    batch = [(torch.randint(0, 256, (2, 32), generator=gen), torch.randint(0, 256, (2, 32), generator=gen))] * 2
    stream = iter(batch * steps)
    losses = []
    t0 = time.perf_counter()
    for step in range(steps):
        set_schedule(optimizers, step, 1.0)
        loss = train_step(
            forward, model, optimizers, stream, 2, lambda: precision.autocast(CPU, precision_name), world=1
        )
        losses.append(loss.item())
    return losses, time.perf_counter() - t0


@pytest.mark.slow  # compiling fwd+bwd and three Muon shapes with inductor's C++ backend: ~40 s idle, 130 s loaded
def test_compiled_model_and_optimizer_train_as_eager() -> None:
    """torch.compile of the model and of Muon's orthogonalization (inductor's CPU backend, as on CUDA
    with Triton) gives the eager losses within COMPILE_LOSS_TOLERANCE over STEPS steps."""
    eager, _ = tiny_run()
    torch._dynamo.reset()
    compiled, seconds = tiny_run(compile=True)
    diff = max(abs(a - b) for a, b in zip(eager, compiled, strict=True))
    print(f"compiled vs eager: max |loss difference| {diff:.2e} over {STEPS} steps; {seconds:.1f} s with compile")
    assert all(math.isfinite(x) for x in compiled)
    assert diff < COMPILE_LOSS_TOLERANCE, (eager, compiled)
    assert eager[-1] < eager[0]  # the steps train: a comparison of two broken runs would pass too


def test_bf16_autocast_is_close_to_fp32() -> None:
    """bf16 autocast (the CUDA default, here on the CPU) stays within BF16_LOSS_TOLERANCE of fp32."""
    fp32, _ = tiny_run()
    bf16, _ = tiny_run(precision_name="bf16")
    diff = max(abs(a - b) for a, b in zip(fp32, bf16, strict=True))
    print(f"bf16 vs fp32: max |loss difference| {diff:.2e} over {STEPS} steps")
    assert 0 < diff < BF16_LOSS_TOLERANCE, (fp32, bf16)  # 0: autocast did nothing


#: fp8 (tensorwise-scaled e4m3 forward, e5m2 gradients) vs bf16 over STEPS steps; torch runs torchao's
#: float8 matmuls on the CPU too (emulated), so the conversion and its numerics are checked here.
#: Measured 1.65e-3 (10x margin).
FP8_LOSS_TOLERANCE = 2e-2


@pytest.mark.slow  # importing torchao and emulating float8 matmuls on the CPU: ~35 s on a loaded 2-core box
def test_fp8_conversion_trains_close_to_bf16() -> None:
    """torchao's Float8Linear in the blocks (not the lm_head), the same Parameters (Muon, checkpoints and
    the parameter count see no change), and losses within FP8_LOSS_TOLERANCE of bf16 autocast."""
    pytest.importorskip("torchao")

    shape = model_shape(2, aspect_ratio=32, head_dim=16, vocab_size=256, sequence_len=32)
    model = build_model(shape, CPU)
    params = [id(p) for p in model.parameters()]
    keys = list(model.state_dict())
    assert precision.convert_to_fp8(model) == 12  # q, k, v, proj, fc, proj in each of 2 blocks
    assert type(model.blocks[1].mlp.c_fc).__name__ == "Float8Linear" and type(model.lm_head) is torch.nn.Linear
    assert [id(p) for p in model.parameters()] == params and list(model.state_dict()) == keys
    narrow = build_model(model_shape(1, aspect_ratio=40, head_dim=40, vocab_size=256, sequence_len=32), CPU)
    assert precision.convert_to_fp8(narrow) == 0  # 40 is not a multiple of 16: those layers stay bf16
    bf16, _ = tiny_run(precision_name="bf16")
    fp8, _ = tiny_run(precision_name="fp8")
    diff = max(abs(a - b) for a, b in zip(bf16, fp8, strict=True))
    print(f"fp8 vs bf16: max |loss difference| {diff:.2e} over {STEPS} steps; {fp8}")
    assert 0 < diff < FP8_LOSS_TOLERANCE, (bf16, fp8)
    assert fp8[-1] < fp8[0]


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Attention written out: softmax(q k^T / sqrt(head_dim), masked) v, in float64."""
    scores = (q.double() @ k.double().mT) / math.sqrt(q.size(-1))
    scores = scores.masked_fill(~mask, float("-inf"))
    return (scores.softmax(-1) @ v.double()).to(q.dtype)


# spec.model.headDim allows even 8..512: the default 128, nanochat-style 64, the bounds, and heads
# that are not a multiple of 8 (padded on CUDA, see model.SDPA_HEAD_DIM_MULTIPLE).
HEAD_DIMS = [8, 10, 18, 64, 66, 100, 128, 130, 512]


@pytest.mark.parametrize("head_dim", HEAD_DIMS)
@pytest.mark.parametrize("pad_to", [None, 8], ids=["cpu-path", "cuda-padded-path"])
def test_attention_matches_reference(head_dim: int, pad_to: int | None) -> None:
    torch.manual_seed(head_dim)
    B, H, T = 2, 3, 24
    q, k, v = (torch.randn(B, H, T, head_dim) for _ in range(3))
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    want = reference_attention(q, k, v, causal)
    got = attention(q, k, v, pad_to=pad_to)
    assert got.shape == (B, H, T, head_dim)
    torch.testing.assert_close(got, want, atol=2e-5, rtol=2e-5)
    # the packed-evaluation path (core_eval): an explicit mask, here block-diagonal causal
    mask = causal.clone()
    mask[12:, :12] = False
    got = attention(q, k, v, mask[None, None].expand(B, 1, T, T), pad_to=pad_to)
    torch.testing.assert_close(got, reference_attention(q, k, v, mask), atol=2e-5, rtol=2e-5)


def test_model_with_padded_heads_is_the_same_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A head dim of 10 through the whole GPT: the CUDA path (padded to 16) gives the CPU path's logits."""
    torch.manual_seed(0)
    shape = model_shape(2, aspect_ratio=20, head_dim=10, vocab_size=256, sequence_len=16)
    model = build_model(shape, CPU)
    with torch.no_grad():
        for p in model.parameters():  # the init zeroes output projections: make attention matter
            p.add_(torch.randn_like(p) * 0.05)
    idx = torch.randint(0, 256, (2, 16))
    plain = model(idx)
    monkeypatch.setattr(model_module, "attention", functools.partial(attention, pad_to=8))
    padded = model(idx)
    assert plain.shape == padded.shape == (2, 16, 256)
    torch.testing.assert_close(padded, plain, atol=1e-5, rtol=1e-5)


def expect_exit(fn: Callable[[], object], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as e:
        fn()
    assert e.value.code == 2
    return capsys.readouterr().err


def test_fp8_is_refused_on_cpu_naming_the_flag_and_field(capsys: pytest.CaptureFixture[str]) -> None:
    err = expect_exit(lambda: precision.resolve_precision("fp8", CPU), capsys)
    assert "--precision" in err and "spec.training.precision" in err and "compute capability" in err, err
    assert "this run is on cpu" in err


def test_fp8_is_refused_before_hopper(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """No GPU here: torch.cuda's answers are faked to be an A100's (compute capability 8.0)."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _d=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda _d=None: "NVIDIA A100-SXM4-80GB")
    err = expect_exit(lambda: precision.resolve_precision("fp8", torch.device("cuda", 0)), capsys)
    assert "A100" in err and "8.0" in err and ">= 8.9" in err and "--precision" in err, err
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _d=None: (9, 0))
    problem = precision.fp8_unavailable(torch.device("cuda", 0))
    assert problem is None or "torchao" in problem  # Hopper passes the capability check


def test_cuda_only_choices_warn_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert precision.resolve_precision("auto", CPU) == "fp32"
    assert capsys.readouterr().err == ""
    assert precision.resolve_precision("bf16", CPU) == "bf16"
    assert "--precision bf16 on cpu" in capsys.readouterr().err
    assert precision.resolve_compile(None, CPU) is False  # CPU default: off
    assert capsys.readouterr().err == ""
    assert precision.resolve_compile(True, CPU) is True  # asked for: it runs, with a word on its cost
    assert "--compile on cpu" in capsys.readouterr().err
    assert precision.resolve_compile(None, torch.device("cuda", 0)) is True


def test_trainer_flags_parse_precision_and_compile() -> None:
    from miniseries_trainer.flags import build_parser

    base = ["--sweep", "s", "--run", "r", "--depth", "1", "--target-tokens", "1", "--total-batch-tokens", "1"]
    base += ["--store", "file:///x", "--data", "file:///x", "--tokenizer", "file:///x"]
    args = build_parser().parse_args(base)
    assert args.precision == "auto" and args.compile is None
    args = build_parser().parse_args([*base, "--precision", "fp8", "--no-compile"])
    assert args.precision == "fp8" and args.compile is False
    with pytest.raises(SystemExit):
        build_parser().parse_args([*base, "--precision", "fp16"])
