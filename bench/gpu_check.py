"""The prepared GPU check: the trainer on one GPU, beside nanochat, in a few minutes (bench/gpu_check.sh runs it).

    bench/gpu_check.sh [--nanochat DIR] [--bundle URI]       # one H100/H200: under 8 minutes
    python bench/gpu_check.py --smoke [--results PATH]       # CPU: tiny depth, short sequence (a test runs this)

Prints one JSON line per figure, and appends them to bench/RESULTS.md (--results; --smoke writes only
where --results says), headed by the device's name and the date:

  versions   torch, CUDA, driver, triton, device name and compute capability, the bf16 dense peak used for MFU
  train      per depth (12 and 20) and implementation, at sequence 2048 and the plan's device batch
             (examples/miniseries.yaml: 32): tokens/s, MFU, planned MFU (miniseries.contract.mfu), peak
             memory, compile seconds, fwd+bwd and optimizer seconds per step, first and last loss.
             Implementations: miniseries eager, miniseries compiled (the trainer's defaults on CUDA: bf16
             autocast, torch.compile of the model and of Muon), nanochat compiled (its GPT and MuonAdamW from
             --nanochat DIR at the same shape with full-context attention), and miniseries compiled fp8
             where torchao is importable and the GPU has FP8. An out-of-memory step is retried at half
             the device batch, and the row says so.
  attention  per head dim (the API allows even 8..512): which SDPA kernels take the (padded) heads, and
             fwd+bwd milliseconds at sequence 2048
  core       CORE examples/s at d12, our evaluator and nanochat's on the same weights (bench/core_eval.py)

Every training figure runs in its own process (a clean peak-memory reading and compile cache per
figure) on random tokens: the data path is not what is measured. MFU counts
miniseries.contract.shapes' FLOPs per token for both implementations (nanochat's value embeddings
are lookups) over the device's dense bf16 peak (miniseries_trainer.throughput). A figure that would
start after --budget-seconds is skipped, and says so.

The trainer must run where pydantic and boto3 are absent (the GPU image has neither): with
MINISERIES_FORBID_IMPORTS=pydantic,boto3 every process of this check refuses those imports, so a
smoke run under it proves the trainer's import graph is free of them.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.abc
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FORBID_ENV = "MINISERIES_FORBID_IMPORTS"
#: examples/miniseries.yaml's spec.training.deviceBatchSize (a test keeps the two equal).
PLAN_DEVICE_BATCH = 32
DEFAULT_RESULTS = REPO / "bench" / "RESULTS.md"
HEAD_DIMS = (64, 128, 66, 100, 130, 256, 512)


class _Forbidden(importlib.abc.MetaPathFinder):
    """Refuses the named top-level packages, as if they were not installed."""

    def __init__(self, names: set[str]):
        self.names = names

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r} (hidden by {FORBID_ENV})", name=fullname)


def forbid_imports() -> None:
    names = {n.strip() for n in os.environ.get(FORBID_ENV, "").split(",") if n.strip()}
    if names:
        sys.meta_path.insert(0, _Forbidden(names))


forbid_imports()
sys.path[:0] = [str(REPO / "operator/src"), str(REPO / "trainer_image/src")]


# ------------------------------------------------------------------------------------------------ workers


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory(device: Any) -> int:
    import resource

    import torch

    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def train_worker(cfg: dict[str, Any]) -> dict[str, Any]:
    """Time `steps` training steps of one implementation at one shape (in its own process)."""
    import torch

    from miniseries.contract.shapes import model_shape

    device = torch.device(cfg["device"])
    torch.manual_seed(0)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    shape = model_shape(
        cfg["depth"], head_dim=cfg["head_dim"], vocab_size=cfg["vocab_size"], sequence_len=cfg["seq_len"]
    )
    extra: dict[str, Any] = {}
    if cfg["impl"] == "miniseries":
        from miniseries_trainer import precision
        from miniseries_trainer.model import build_model
        from miniseries_trainer.optim import build_optimizers

        prec = precision.resolve_precision(cfg["precision"], device)  # auto: bf16 on CUDA, as the trainer
        extra["precision_resolved"] = prec
        model = build_model(shape, device)
        forward = precision.prepare(model, precision=prec, compile=cfg["compile"])  # the trainer's own path
        optimizers = build_optimizers(
            model, total_batch_tokens=cfg["batch"] * shape.sequence_len, compile=cfg["compile"]
        )

        def fwd_bwd(x: Any, y: Any) -> Any:
            with precision.autocast(device, prec):
                loss = forward(x, y)
            loss.backward()
            return loss

        def opt_step() -> None:
            for opt in optimizers:
                opt.step()
            model.zero_grad(set_to_none=True)

    else:  # nanochat's GPT and optimizer, its own dtype handling (bf16 on CUDA, no autocast)
        sys.path.insert(0, cfg["nanochat"])
        from nanochat import flash_attention
        from nanochat.gpt import GPT, GPTConfig

        conf = GPTConfig(sequence_len=shape.sequence_len, vocab_size=shape.padded_vocab_size, n_layer=shape.n_layer,
                         n_head=shape.n_head, n_kv_head=shape.n_head, n_embd=shape.n_embd, window_pattern="L")  # fmt: skip
        with torch.device("meta"):
            model = GPT(conf)
        model.to_empty(device=device)
        model.init_weights()
        forward = torch.compile(model, dynamic=False) if cfg["compile"] else model
        opt = model.setup_optimizer()
        extra["nanochat_attention"] = "fa3" if flash_attention.USE_FA3 else "sdpa"

        def fwd_bwd(x: Any, y: Any) -> Any:
            loss = forward(x, y)
            loss.backward()
            return loss

        def opt_step() -> None:
            opt.step()
            model.zero_grad(set_to_none=True)

    params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(1)
    x = torch.randint(0, shape.vocab_size, (cfg["batch"], shape.sequence_len), generator=gen).to(device)
    y = torch.randint(0, shape.vocab_size, (cfg["batch"], shape.sequence_len), generator=gen).to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fb, op, losses = [], [], []
    for _ in range(cfg["warmup"] + cfg["steps"]):
        t0 = time.perf_counter()
        loss = fwd_bwd(x, y)
        _sync(device)
        t1 = time.perf_counter()
        opt_step()
        _sync(device)
        fb.append(t1 - t0)
        op.append(time.perf_counter() - t1)
        losses.append(float(loss.item()))
    steps = sorted(a + b for a, b in zip(fb[cfg["warmup"] :], op[cfg["warmup"] :], strict=True))
    median = steps[len(steps) // 2]
    tokens = cfg["batch"] * shape.sequence_len
    return {
        "params": params,
        "flops_per_token": shape.flops_per_token,
        "step_seconds_median": median,
        "fwd_bwd_seconds_median": sorted(fb[cfg["warmup"] :])[len(steps) // 2],
        "optimizer_seconds_median": sorted(op[cfg["warmup"] :])[len(steps) // 2],
        "tokens_per_second": tokens / median,
        # the first step compiles (model fwd+bwd, then Muon's shapes in the optimizer step)
        "compile_seconds": (fb[0] + op[0] - median) if cfg["compile"] else None,
        "peak_memory_bytes": _peak_memory(device),
        "loss_first": losses[0],
        "loss_last": losses[-1],
        **extra,
    }


def attention_worker(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """For each head dim: which SDPA kernels accept the heads as the model passes them, and fwd+bwd ms."""
    import torch
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from miniseries_trainer.model import SDPA_HEAD_DIM_MULTIPLE, attention

    device = torch.device(cfg["device"])
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    rows = []
    for head_dim in cfg["head_dims"]:
        heads = max(1, cfg["width"] // head_dim)
        shape = (cfg["batch"], heads, cfg["seq_len"], head_dim)
        q, k, v = (torch.randn(shape, device=device, dtype=dtype, requires_grad=True) for _ in range(3))
        padded = -head_dim % SDPA_HEAD_DIM_MULTIPLE if device.type == "cuda" else 0
        qp, kp, vp = (F.pad(t.detach(), (0, padded)) for t in (q, k, v))
        kernels = {}
        for name, backend in (("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION),
                              ("cudnn", SDPBackend.CUDNN_ATTENTION)):  # fmt: skip
            try:
                with sdpa_kernel(backend):
                    F.scaled_dot_product_attention(qp, kp, vp, is_causal=True)
                kernels[name] = True
            except RuntimeError:
                kernels[name] = False
        times = []
        for _ in range(cfg["repeats"] + 1):
            _sync(device)
            t0 = time.perf_counter()
            attention(q, k, v).sum().backward()
            _sync(device)
            times.append(time.perf_counter() - t0)
        rows.append({"head_dim": head_dim, "heads": heads, "padded_to": head_dim + padded, "kernels": kernels,
                     "fwd_bwd_ms": 1000 * sorted(times[1:])[len(times[1:]) // 2]})  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------------ driver


def run_worker(kind: str, cfg: dict[str, Any], timeout: float) -> dict[str, Any] | list[dict[str, Any]]:
    """Run one worker in a fresh process; {"error": ...} when it fails, runs out of memory or time."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if cfg.get("impl") == "nanochat" and cfg["device"] == "cpu":
        env["NANOCHAT_DTYPE"] = "float32"  # as nanochat's own CPU runs
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, json.dumps(cfg)]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=max(timeout, 1), check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-3:]
        oom = "OutOfMemoryError" in out.stderr or "CUDA out of memory" in out.stderr
        return {"error": "out of memory" if oom else " | ".join(tail)[-600:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def versions(device: Any) -> dict[str, Any]:
    from importlib import metadata

    import torch

    from miniseries_trainer.throughput import peak_flops_per_device

    row: dict[str, Any] = {"torch": torch.__version__, "cuda": torch.version.cuda, "python": sys.version.split()[0]}
    for pkg in ("triton", "torchao"):
        try:
            row[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            row[pkg] = None
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        row |= {"device_name": props.name, "capability": f"{props.major}.{props.minor}",
                "memory_gib": round(props.total_memory / 2**30, 1), "multiprocessors": props.multi_processor_count}  # fmt: skip
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20, check=False)  # fmt: skip
            row["driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout.strip() else None
        except (OSError, subprocess.TimeoutExpired):
            row["driver"] = None
    else:
        row |= {"device_name": "cpu", "threads": torch.get_num_threads()}
    row["peak_flops"] = peak_flops_per_device(device, None)
    return row


def plan_tasks(depths: list[int], nanochat: bool, fp8: bool) -> list[tuple[str, dict[str, Any]]]:
    """Every figure in the order it runs: the most wanted first (the trainer's default path beside nanochat's,
    then CORE), so a spent --budget-seconds skips the least wanted."""

    def train(impl: str, compiled: bool, prec: str, depth: int) -> tuple[str, dict[str, Any]]:
        return "train", {"impl": impl, "compile": compiled, "precision": prec, "depth": depth}

    tasks = []
    for depth in depths:
        tasks.append(train("miniseries", True, "auto", depth))
        if nanochat:
            tasks.append(train("nanochat", True, "auto", depth))
    tasks.append(("core", {}))
    tasks += [train("miniseries", False, "auto", depth) for depth in depths]
    tasks.append(("attention", {}))
    if fp8:
        tasks += [train("miniseries", True, "fp8", depth) for depth in depths]
    return tasks


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="CPU-sized: depth 2, sequence 64, batch 2, 3 steps")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--depths", default=None, help="comma-separated depths (default 12,20; smoke 2)")
    p.add_argument("--seq-len", type=int, default=None, help="default 2048 (smoke 64)")
    p.add_argument(
        "--device-batch-size", type=int, default=None, help=f"default the plan's {PLAN_DEVICE_BATCH} (smoke 2)"
    )
    p.add_argument("--steps", type=int, default=None, help="timed steps per figure (default 8; smoke 2)")
    p.add_argument(
        "--warmup", type=int, default=None, help="untimed steps first, compile included (default 2; smoke 1)"
    )
    p.add_argument("--nanochat", default=None, help="a nanochat checkout (its nanochat/ package); omit: ours only")
    p.add_argument("--bundle", default=None, help="the CORE eval bundle URI (default: bench/core_eval.py's); "
                   "smoke: CORE only when given")  # fmt: skip
    p.add_argument("--core-max-per-task", type=int, default=None, help="CORE examples per task (default 50; smoke 11)")
    p.add_argument("--no-core", action="store_true", help="skip the CORE figure")
    p.add_argument("--results", default=None, help=f"append the figures here (default {DEFAULT_RESULTS.relative_to(REPO)}; "
                   "smoke: nowhere unless given)")  # fmt: skip
    p.add_argument("--budget-seconds", type=float, default=420.0,
                   help="start no figure after this many seconds, and stop one still running then (default 420: "
                   "with the last figure's own end, under 8 minutes)")  # fmt: skip
    p.add_argument("--worker", nargs=2, metavar=("KIND", "JSON"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        kind, cfg = args.worker[0], json.loads(args.worker[1])
        if kind == "core":  # bench/core_eval.py in this process, under the same forbidden imports
            import runpy

            sys.argv = [str(REPO / "bench" / "core_eval.py"), *cfg]
            runpy.run_path(sys.argv[0], run_name="__main__")
            return 0
        result = train_worker(cfg) if kind == "train" else attention_worker(cfg)
        print(json.dumps(result))
        return 0

    import torch

    if args.nanochat and not Path(args.nanochat, "nanochat", "gpt.py").is_file():
        p.error(f"--nanochat {args.nanochat}: no nanochat/gpt.py there; give a nanochat checkout")
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    smoke = args.smoke
    args.depths = [int(d) for d in (args.depths or ("2" if smoke else "12,20")).split(",")]
    seq_len = args.seq_len or (64 if smoke else 2048)
    batch = args.device_batch_size or (2 if smoke else PLAN_DEVICE_BATCH)
    steps, warmup = args.steps or (2 if smoke else 8), args.warmup or (1 if smoke else 2)
    results = Path(args.results) if args.results else (None if smoke else DEFAULT_RESULTS)
    t_start = time.perf_counter()
    left = lambda: args.budget_seconds - (time.perf_counter() - t_start)  # noqa: E731
    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        print(json.dumps(row), flush=True)
        rows.append(row)

    head = versions(device)
    emit({"figure": "versions", **head})
    from miniseries.contract.mfu import planned_mfu
    from miniseries_trainer.precision import fp8_unavailable

    fp8_problem = fp8_unavailable(device)
    if fp8_problem:
        emit({"figure": "train", "precision": "fp8", "skipped": fp8_problem})
    base = {"device": device.type, "seq_len": seq_len, "head_dim": 128 if not smoke else 16,
            "vocab_size": 32768 if not smoke else 512, "nanochat": args.nanochat, "steps": steps, "warmup": warmup}  # fmt: skip
    spent = {"skipped": f"--budget-seconds {args.budget_seconds:g} spent"}
    for kind, fig in plan_tasks(args.depths, bool(args.nanochat), fp8_problem is None):
        if kind == "core":
            if not args.no_core and (args.bundle or not smoke):
                emit(core_figure(args, device, smoke, left()))
            continue
        if kind == "attention":
            if left() <= 0:
                emit({"figure": "attention", **spent})
                continue
            attn_cfg = {"device": device.type, "head_dims": list(HEAD_DIMS) if not smoke else [16, 10],
                        "width": 1280 if not smoke else 64, "batch": 8 if not smoke else 1, "seq_len": seq_len,
                        "repeats": 5 if not smoke else 1}  # fmt: skip
            got_rows = run_worker("attention", attn_cfg, left())
            for r in got_rows if isinstance(got_rows, list) else [got_rows]:
                emit({"figure": "attention", "seq_len": seq_len, "batch": attn_cfg["batch"], **r})
            continue
        row: dict[str, Any] = {"figure": "train", **fig, "seq_len": seq_len, "device_batch_size": batch}
        if left() <= 0:
            emit({**row, **spent})
            continue
        cfg = {**base, **fig, "batch": batch}
        got = run_worker("train", cfg, left())
        if got.get("error") == "out of memory" and batch > 1 and left() > 0:  # type: ignore[union-attr]
            row["out_of_memory_at_batch"] = batch
            row["device_batch_size"] = cfg["batch"] = batch // 2
            got = run_worker("train", cfg, left())
        assert isinstance(got, dict)
        if "tokens_per_second" in got:
            got["mfu"] = got["flops_per_token"] * got["tokens_per_second"] / head["peak_flops"]
            got["planned_mfu"] = planned_mfu(fig["depth"])
        emit({**row, **got})

    emit({"figure": "total", "seconds": time.perf_counter() - t_start})
    if results is not None:
        append_results(results, head, rows, smoke)
    return 0


def core_figure(args: argparse.Namespace, device: Any, smoke: bool, budget: float) -> dict[str, Any]:
    """bench/core_eval.py at d12 (smoke: d2) on this device, ours and nanochat's evaluator on the same weights."""
    if budget <= 0:
        return {"figure": "core", "skipped": f"--budget-seconds {args.budget_seconds:g} spent"}
    core_args = ["--device", device.type, "--rounds", "1",
           "--depth", "2" if smoke else "12", "--head-dim", "16" if smoke else "128",
           "--vocab-size", "1024" if smoke else "32768", "--seq-len", "256" if smoke else "2048",
           "--max-per-task", str(args.core_max_per_task or (11 if smoke else 50))]  # fmt: skip
    if args.bundle:
        core_args += ["--bundle", args.bundle]
    if args.nanochat:
        core_args += ["--nanochat", args.nanochat]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "core", json.dumps(core_args)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, check=False)
    except subprocess.TimeoutExpired:
        return {"figure": "core", "error": f"timed out after {budget:.0f} s"}
    if out.returncode != 0:
        return {"figure": "core", "error": " | ".join(out.stderr.strip().splitlines()[-3:])[-600:]}
    got = json.loads(out.stdout.strip().splitlines()[-1])
    got.pop("bench", None)
    return {"figure": "core", **got}


def _gib(n: Any) -> str:
    return f"{n / 2**30:.1f}" if isinstance(n, int | float) else ""


def _fmt(x: Any, spec: str) -> str:
    return format(x, spec) if isinstance(x, int | float) else ""


def append_results(path: Path, head: dict[str, Any], rows: list[dict[str, Any]], smoke: bool) -> None:
    """Append this run's figures to the results file: a heading with device and date, a table per figure kind."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["", f"## {now} · {head['device_name']}" + (" · smoke" if smoke else ""), "",
             f"torch {head['torch']}, CUDA {head.get('cuda')}, driver {head.get('driver')}, triton {head.get('triton')}, "
             f"torchao {head.get('torchao')}, capability {head.get('capability')}, peak {head['peak_flops']:.3g} FLOP/s "
             "(bf16 dense; CPU: the trainer's nominal figure)", "",
             "| depth | impl | compiled | precision | batch | tokens/s | MFU | planned MFU | peak GiB | compile s "
             "| fwd+bwd s | opt s | loss first→last | note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in rows:
        if r["figure"] == "train" and "depth" not in r:
            lines.append(f"| | | | {r.get('precision')} | | | | | | | | | | {r.get('skipped')} |")
        if r["figure"] != "train" or "depth" not in r:
            continue
        note = r.get("skipped") or r.get("error") or ""
        if r.get("out_of_memory_at_batch"):
            note = f"out of memory at batch {r['out_of_memory_at_batch']}; " + note
        if r.get("nanochat_attention"):
            note += f"nanochat attention: {r['nanochat_attention']}"
        lines.append(
            f"| {r['depth']} | {r['impl']} | {'yes' if r['compile'] else 'no'} | {r.get('precision_resolved', r['precision'])} | "
            f"{r['device_batch_size']} | {_fmt(r.get('tokens_per_second'), ',.0f')} | {_fmt(r.get('mfu'), '.1%')} | "
            f"{_fmt(r.get('planned_mfu'), '.0%')} | {_gib(r.get('peak_memory_bytes'))} | "
            f"{_fmt(r.get('compile_seconds'), '.1f')} | {_fmt(r.get('fwd_bwd_seconds_median'), '.3f')} | "
            f"{_fmt(r.get('optimizer_seconds_median'), '.3f')} | "
            f"{_fmt(r.get('loss_first'), '.3f')}→{_fmt(r.get('loss_last'), '.3f')} | {note} |"
        )
    attn = [r for r in rows if r["figure"] == "attention" and "head_dim" in r]
    if attn:
        lines += [
            "",
            "| head dim | padded to | flash | efficient | cudnn | fwd+bwd ms |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for r in attn:
            k = r["kernels"]
            lines.append(f"| {r['head_dim']} | {r['padded_to']} | {k['flash']} | {k['efficient']} | {k['cudnn']} | "
                         f"{r['fwd_bwd_ms']:.2f} |")  # fmt: skip
    for r in rows:
        if r["figure"] == "core":
            if "ours_examples_per_s" in r:
                nano = f"{r['nanochat_examples_per_s']:.1f}" if "nanochat_examples_per_s" in r else "not run"
                lines += ["", f"CORE at d{r['depth']}: {r['examples']} examples ({r['tasks']} tasks x <= {r['max_per_task']}), "
                          f"ours {r['ours_examples_per_s']:.1f} examples/s, nanochat's evaluator {nano}"
                          + (f", identical accuracies: {r['identical_accuracies']}" if "identical_accuracies" in r else "")]  # fmt: skip
            else:
                lines += ["", f"CORE: {r.get('skipped') or r.get('error')}"]
        if r["figure"] == "total":
            lines += ["", f"whole check: {r['seconds']:.0f} s"]
    if not path.exists():
        path.write_text("# bench/gpu_check.py results\n\nAppended by `bench/gpu_check.sh` (see bench/README.md).\n")
    with path.open("a", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
