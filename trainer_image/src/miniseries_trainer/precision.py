"""How the trainer computes: the precision of its matmuls and whether torch.compile builds its kernels.

    --precision auto   bf16 autocast on CUDA (fp32 master weights, TF32 for what stays fp32), fp32 on CPU
    --precision bf16   bf16 autocast anywhere (on CPU: slow and only for checking numerics)
    --precision fp32   plain fp32 everywhere
    --precision fp8    bf16 autocast plus torchao's float8 training (tensorwise scaling) for the
                       transformer blocks' linear layers; needs CUDA compute capability >= 8.9
                       (Hopper H100/H200, Ada L4/L40S) and torchao installed

FP8 is off by default. nanochat (dev/LOG.md, 2026-02-02) measured tensorwise FP8 at 1.17x tokens/s
on d26 and about 5% faster at equal capability (each FP8 step learns a little less), and slower than
bf16 at d12: most depths of a miniseries are too small for it to pay. The lm_head stays bf16 (its
logits decide the loss; nanochat's earlier lm_head-only FP8 gained 1%).

    --compile / --no-compile   default: on for CUDA, off for CPU. On CPU it runs inductor's C++
                               backend (tens of seconds to compile a tiny model): the same code path
                               the GPU takes, which the tests run.

The model and Muon's orthogonalization (optim.py) are compiled; AdamW is fused on CUDA instead.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from typing import Any

import torch
from torch import nn

from miniseries_trainer.flags import PRECISIONS, fail

#: FP8 tensor cores: Ada (8.9) and Hopper (9.0) onwards.
FP8_MIN_CAPABILITY = (8, 9)
#: FP8 GEMMs (torch._scaled_mm) need both dimensions divisible by 16; smaller layers stay bf16.
FP8_DIM_MULTIPLE = 16
#: The flag, and the spec field the operator sets it from, as refusals name them.
PRECISION_FIELD = "--precision (spec.training.precision)"


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def resolve_precision(flag: str, device: torch.device) -> str:
    """The precision this run computes in: `auto` decided by the device, a refusal where the hardware cannot."""
    if flag not in PRECISIONS:
        fail(f"{PRECISION_FIELD} {flag!r}: choose from {', '.join(PRECISIONS)}")
    if flag == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    if flag == "fp8":
        fp8_problem = fp8_unavailable(device)
        if fp8_problem:
            fail(f"{PRECISION_FIELD} fp8: {fp8_problem}; use bf16 (or auto)")
    if flag == "bf16" and device.type == "cpu":
        warn("--precision bf16 on cpu: bf16 autocast is slow on most CPUs (the CPU default, auto, is fp32)")
    return flag


def fp8_unavailable(device: torch.device) -> str | None:
    """Why FP8 training cannot run on `device`, or None when it can."""
    if device.type != "cuda":
        return (
            f"FP8 training needs a CUDA GPU with FP8 tensor cores (compute capability >= "
            f"{FP8_MIN_CAPABILITY[0]}.{FP8_MIN_CAPABILITY[1]}: H100, H200, L4, L40S); this run is on {device.type}"
        )
    capability = torch.cuda.get_device_capability(device)
    if capability < FP8_MIN_CAPABILITY:
        return (
            f"{torch.cuda.get_device_name(device)} has compute capability {capability[0]}.{capability[1]}, "
            f"FP8 tensor cores need >= {FP8_MIN_CAPABILITY[0]}.{FP8_MIN_CAPABILITY[1]} (H100, H200, L4, L40S)"
        )
    if importlib.util.find_spec("torchao") is None:
        return "FP8 training uses torchao, which is not installed (pip install 'miniseries-trainer[fp8]')"
    return None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast for bf16 and fp8 (fp8 covers only the blocks' linears; the rest runs in bf16)."""
    if precision in ("bf16", "fp8"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def label(device: torch.device, precision: str) -> str:
    """The precision as results.json's provenance records it."""
    tf32 = "+tf32" if device.type == "cuda" else ""
    return {"fp32": f"fp32{tf32}", "bf16": f"bf16-autocast{tf32}", "fp8": f"fp8-tensorwise+bf16-autocast{tf32}"}[
        precision
    ]


def resolve_compile(flag: bool | None, device: torch.device) -> bool:
    """--compile/--no-compile, or the device's default (CUDA on, CPU off) when neither was given."""
    if flag is None:
        return device.type == "cuda"
    if flag and device.type == "cpu":
        warn("--compile on cpu: inductor's C++ backend compiles for tens of seconds first (the CPU default is off)")
    return flag


def fp8_eligible(module: nn.Module, fqn: str) -> bool:
    """Linear layers FP8 can take: inside the transformer blocks, both dimensions multiples of 16."""
    return (
        isinstance(module, nn.Linear)
        and module.in_features % FP8_DIM_MULTIPLE == 0
        and module.out_features % FP8_DIM_MULTIPLE == 0
    )


def convert_to_fp8(model: nn.Module) -> int:
    """Swap the blocks' eligible nn.Linear for torchao's Float8Linear (tensorwise); returns how many.

    The weights stay the same fp32 Parameters, so Muon, checkpoints and the parameter count see no change.
    """
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    blocks = model.blocks  # type: ignore[attr-defined]
    before = sum(isinstance(m, nn.Linear) and type(m) is nn.Linear for m in blocks.modules())
    convert_to_float8_training(
        blocks, config=Float8LinearConfig.from_recipe_name("tensorwise"), module_filter_fn=fp8_eligible
    )
    after = sum(type(m) is nn.Linear for m in blocks.modules())
    return before - after


def prepare(model: nn.Module, *, precision: str, compile: bool) -> Any:
    """The callable the training loop runs: FP8 layers swapped in when asked, then compiled when asked.
    `model` itself stays the eager module (optimizers, checkpoints and CORE use it)."""
    if precision == "fp8":
        convert_to_fp8(model)
    return torch.compile(model, dynamic=False) if compile else model
