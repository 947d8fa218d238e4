"""Train one miniseries run: parse -> build -> optimizer -> data -> loop -> evaluate -> save.

    python -m miniseries_trainer.train --sweep S --run d12 --depth 12 ... (see --help)
    torchrun --nproc-per-node 8 -m miniseries_trainer.train ...

Every flag can also come from the environment as MINISERIES_<FLAG> (dashes as
underscores, e.g. MINISERIES_DEVICE_BATCH_SIZE); a flag on the command line wins.
The operator and the local runner build the flags with
`miniseries.control.trainer_args.trainer_flags`, and a test parses that output with this parser.

Written after karpathy/nanochat `scripts/base_train.py`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from miniseries.contract import shapes
from miniseries.contract.core import CoreError
from miniseries.contract.layout import LOCAL_NAMESPACE, RunLayout, join_uri
from miniseries.contract.results import LossSummary, Progress, RunResults
from miniseries.contract.store import RetryingStore, RetryPolicy, Store, StoreError, StoreHealth, open_store
from miniseries_trainer import provenance, val_trace

#: Peak dense bf16 FLOP/s per device by name fragment (no sparsity), for MFU.
PEAK_FLOPS_BY_DEVICE = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
#: CPU peak per thread when --peak-flops is not given: a modern x86 core's fp32 FMA
#: throughput (2 FMA units x 8 fp32 lanes x 2 FLOPs x ~3 GHz ~= 100 GFLOP/s). An
#: order-of-magnitude figure that keeps CPU MFU meaningful across machines.
CPU_PEAK_FLOPS_PER_THREAD = 100e9
PROGRESS_EVERY_SECONDS = 5.0
#: How long the store may take to answer at the start before the run fails (see --store-outage-seconds).
STARTUP_STORE_SECONDS = 10.0
#: The whole loss curve is rewritten (atomically) this often and at every checkpoint.
LOSS_CURVE_EVERY_SECONDS = 30.0


# -----------------------------------------------------------------------------
# Flags


def env_name(flag: str) -> str:
    return "MINISERIES_" + flag[2:].upper().replace("-", "_")


def apply_env_defaults(parser: argparse.ArgumentParser) -> None:
    """Defaults from MINISERIES_<FLAG> when set (a flag given on the command line still wins)."""
    for action in parser._actions:
        flag = next((o for o in action.option_strings if o.startswith("--") and not o.startswith("--no-")), None)
        if flag is None or flag == "--help":
            continue
        env = env_name(flag)
        action.help = f"{action.help or ''} [env {env}]".strip()
        if env in os.environ:
            action.default = _env_value(os.environ[env], action, env)
            action.required = False


def _env_value(raw: str, action: argparse.Action, env: str) -> Any:
    if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
        if raw.lower() not in ("1", "true", "yes", "0", "false", "no", ""):
            raise SystemExit(f"error: {env}={raw!r} is not a boolean (use 1/0, true/false)")
        return raw.lower() in ("1", "true", "yes")
    convert = action.type or str
    try:
        value = convert(raw)  # type: ignore[operator]
    except (ValueError, argparse.ArgumentTypeError) as e:
        raise SystemExit(f"error: {env}={raw!r}: {e}") from None
    if action.choices is not None and value not in action.choices:
        raise SystemExit(f"error: {env}={raw!r}: choose from {', '.join(map(str, action.choices))}")
    return value


def _positive(name: str, zero_ok: bool = False) -> Callable[[str], int]:
    def parse(v: str) -> int:
        try:
            n = int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {v!r}") from None
        if n < 0 or (n == 0 and not zero_ok):
            raise argparse.ArgumentTypeError(f"{name} must be {'>= 0' if zero_ok else '>= 1'}, got {n}")
        return n

    return parse


def _ratio(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--warmdown-ratio must be a number, got {v!r}") from None
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"--warmdown-ratio must be in [0, 1], got {x}")
    return x


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="miniseries-train",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    g = p.add_argument_group("run identity")
    g.add_argument(
        "--namespace",
        default=LOCAL_NAMESPACE,
        help="the sweep's namespace: its store key is <store>/<namespace>/<sweep>/ (the operator passes it)",
    )
    g.add_argument("--sweep", required=True, help="sweep name (store layout and metric label)")
    g.add_argument("--run", required=True, help="run id within the sweep, e.g. d12")
    g = p.add_argument_group("model shape (miniseries.contract.shapes.model_shape)")
    g.add_argument(
        "--depth", type=_positive("--depth"), required=True, help="number of layers; width = depth x aspect ratio"
    )
    g.add_argument("--aspect-ratio", type=_positive("--aspect-ratio"), default=64, help="width per layer of depth")
    g.add_argument("--head-dim", type=_positive("--head-dim"), default=128, help="channels per attention head (even)")
    g.add_argument(
        "--vocab-size", type=_positive("--vocab-size"), default=32768, help="vocabulary size (>= the tokenizer's)"
    )
    g.add_argument("--seq-len", type=_positive("--seq-len"), default=2048, help="training sequence length in tokens")
    g = p.add_argument_group("horizon and batch")
    g.add_argument(
        "--target-tokens", type=_positive("--target-tokens"), required=True, help="training tokens to aim for"
    )
    g.add_argument(
        "--steps",
        type=_positive("--steps"),
        default=None,
        help="optimizer steps (default: target tokens // total batch)",
    )
    g.add_argument(
        "--total-batch-tokens",
        type=_positive("--total-batch-tokens"),
        required=True,
        help="tokens per optimizer step over all ranks (a multiple of device batch x seq len x ranks)",
    )
    g.add_argument(
        "--device-batch-size",
        type=_positive("--device-batch-size"),
        default=32,
        help="sequences per micro-batch per rank",
    )
    g.add_argument(
        "--warmup-steps", type=_positive("--warmup-steps", zero_ok=True), default=40, help="linear LR warmup steps"
    )
    g.add_argument(
        "--warmdown-ratio", type=_ratio, default=0.4, help="fraction of steps at the end with linear LR decay to 0"
    )
    g.add_argument("--seed", type=_positive("--seed", zero_ok=True), default=42, help="random seed")
    g = p.add_argument_group("optimizer (nanochat defaults, scaled by width and batch)")
    g.add_argument("--matrix-lr", type=float, default=0.02, help="Muon LR for hidden matrices at a 2^19-token batch")
    g.add_argument(
        "--embedding-lr", type=float, default=0.2, help="AdamW LR for the embedding at width 768, 2^19 batch"
    )
    g.add_argument(
        "--unembedding-lr", type=float, default=0.004, help="AdamW LR for the lm_head at width 768, 2^19 batch"
    )
    g.add_argument("--weight-decay", type=float, default=0.0, help="Muon weight decay")
    g = p.add_argument_group("checkpoints and evaluation")
    g.add_argument(
        "--checkpoint-every",
        type=_positive("--checkpoint-every", zero_ok=True),
        default=0,
        help="save a checkpoint every N steps (0: only at the end)",
    )
    g.add_argument(
        "--keep-checkpoints", type=_positive("--keep-checkpoints"), default=2, help="newest checkpoints kept"
    )
    g.add_argument(
        "--resume",
        choices=["auto", "never", "require"],
        default="auto",
        help="auto: resume from the newest valid checkpoint if any; require: fail without one; never: start over",
    )
    g.add_argument(
        "--eval-tokens",
        type=_positive("--eval-tokens", zero_ok=True),
        default=10 * 2**19,
        help="validation tokens for bits-per-byte (0: skip)",
    )
    val_trace.add_flags(g)
    g.add_argument("--eval-bundle", default=None, help="CORE eval bundle URI; CORE is skipped without it")
    g.add_argument(
        "--core-max-per-task",
        type=_positive("--core-max-per-task"),
        default=None,
        help="at most this many examples per CORE task (shots are drawn from these: at least 11 for CORE's 10-shot tasks)",
    )
    g.add_argument(
        "--core-allow-partial",
        action="store_true",
        default=False,
        help="score the tasks a bundle has when some of CORE's 22 are missing; the result is labeled partial "
        "and is never reported as CORE",
    )
    g.add_argument("--budget-flops", type=float, default=None, help="isoFLOP budget this run belongs to (recorded)")
    g = p.add_argument_group("store and data")
    g.add_argument("--store", required=True, help="store root URI (file:///path or s3://bucket/prefix)")
    g.add_argument("--data", required=True, help="URI of the parquet shards (last one = validation)")
    g.add_argument("--tokenizer", required=True, help="URI of the trained tokenizer (see miniseries_trainer.tokenizer)")
    g.add_argument(
        "--store-outage-seconds",
        type=_positive("--store-outage-seconds", zero_ok=True),
        default=300,
        help="how long one store operation is retried (exponential backoff up to 5 s) before the run fails; "
        "progress.json is never waited for (skipped and written later). At the start the store must answer "
        f"within {STARTUP_STORE_SECONDS:g} s (a store never reached is a wrong URI or credentials)",
    )
    g = p.add_argument_group("runtime")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda when available")
    g.add_argument(
        "--metrics-port",
        type=_positive("--metrics-port", zero_ok=True),
        default=0,
        help="Prometheus /metrics port (0: disabled; rank r>0 serves port + LOCAL_RANK)",
    )
    g.add_argument(
        "--peak-flops",
        type=float,
        default=None,
        help=f"peak FLOP/s per device for MFU (default: by GPU name; CPU: "
        f"{CPU_PEAK_FLOPS_PER_THREAD:.0e} x torch threads)",
    )
    g.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="torch.compile the model (CUDA only; ignored on CPU)",
    )
    g.add_argument(
        "--deterministic",
        action="store_true",
        default=False,
        help="deterministic algorithms, fixed seeds (tests: bitwise-reproducible resume on CPU)",
    )
    g.add_argument(
        "--log-every", type=_positive("--log-every"), default=1, help="print and record the loss every N steps"
    )
    apply_env_defaults(p)
    return p


# -----------------------------------------------------------------------------
# Small helpers (each a few lines; the loop below reads top to bottom)


def peak_flops_per_device(device: torch.device, override: float | None) -> float:
    if override:
        return override
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for fragment, flops in PEAK_FLOPS_BY_DEVICE.items():
            if fragment in name:
                return flops
        print(f"WARNING: unknown GPU {name!r}: MFU unavailable (pass --peak-flops)", file=sys.stderr)
        return float("nan")
    return CPU_PEAK_FLOPS_PER_THREAD * torch.get_num_threads()


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def all_reduce_gradients(model: torch.nn.Module, world: int) -> None:
    """Average gradients over ranks in one flat buffer (gloo has no AVG, so SUM / world)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def train_step(
    model: Callable[..., torch.Tensor],
    params_owner: torch.nn.Module,
    optimizers: list[torch.optim.Optimizer],
    micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]] | Any,
    grad_accum: int,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    world: int,
) -> torch.Tensor:
    """One optimizer step over grad_accum micro-batches; returns the mean loss over all ranks."""
    total: torch.Tensor | None = None
    for _ in range(grad_accum):
        x, y = next(micro_batches)
        with autocast():
            loss = model(x, y)
        (loss / grad_accum).backward()
        # stays on the device: no host sync per micro-batch (the caller syncs once per step)
        total = loss.detach().float() if total is None else total + loss.detach().float()
    assert total is not None
    total = total / grad_accum
    if world > 1:
        all_reduce_gradients(params_owner, world)
        dist.all_reduce(total)
        total = total / world
    for opt in optimizers:
        opt.step()
    params_owner.zero_grad(set_to_none=True)
    return total


def write_json_lines(store: Store, key: str, rows: list[dict[str, Any]]) -> None:
    store.write_bytes(key, "".join(json.dumps(r) + "\n" for r in rows).encode())


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


# -----------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if problem := val_trace.check_flags(args.val_every, args.val_tokens):
        fail(problem)
    from miniseries_trainer import checkpoint, data
    from miniseries_trainer.metrics import TrainerMetrics
    from miniseries_trainer.model import build_model, shape_from_flags
    from miniseries_trainer.optim import build_optimizers, lr_multiplier, set_schedule
    from miniseries_trainer.tokenizer import load_tokenizer

    # -- distributed setup: torchrun sets RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/PORT
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: no CUDA device is visible (use --device cpu or auto)")
    device = torch.device("cuda", local_rank) if args.device == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    master = rank == 0
    print0: Callable[..., None] = print if master else (lambda *a, **k: None)
    t_start = time.time()

    # -- shape and horizon from the one arithmetic module
    try:
        shape = shape_from_flags(args)
        hz = shapes.horizon(
            args.target_tokens,
            args.total_batch_tokens,
            device_batch_size=args.device_batch_size,
            sequence_len=args.seq_len,
            world_size=world,
        )
    except ValueError as e:
        fail(f"{e} (flags --depth/--aspect-ratio/--head-dim/--total-batch-tokens/--device-batch-size/--seq-len)")
    steps = args.steps if args.steps is not None else hz.steps
    if steps < 1:
        fail(
            f"--target-tokens {args.target_tokens} is less than one step of --total-batch-tokens {args.total_batch_tokens}"
        )

    # -- store, tokenizer and data are checked before any compute is spent
    health = StoreHealth()  # shared by both stores: one outage, one set of metrics
    policy = RetryPolicy(budget_seconds=float(args.store_outage_seconds))

    def store_log(msg: str) -> None:
        print(f"rank {rank}: {msg}", file=sys.stderr, flush=True)

    try:
        raw_store = open_store(args.store)
        # A store that does not answer at the start is most likely a wrong URI, endpoint or
        # credentials: fail fast (STARTUP_STORE_SECONDS) before compute is spent; once it has
        # answered, an outage is ridden out for --store-outage-seconds.
        RetryingStore(raw_store, RetryPolicy(budget_seconds=min(STARTUP_STORE_SECONDS, policy.budget_seconds))).check()
        store = RetryingStore(raw_store, policy, log=store_log, health=health)
        data_store = RetryingStore(open_store(args.data), policy, log=store_log, health=health)
        train_keys, val_key = data.list_shards(data_store)
        tokenizer = load_tokenizer(args.tokenizer)
        bundle = None
        if args.eval_bundle:  # read and checked now: a bad bundle must not surface after hours of training
            from miniseries_trainer.core_eval import load_bundle

            bundle = load_bundle(
                args.eval_bundle, allow_partial=args.core_allow_partial, max_per_task=args.core_max_per_task
            )
    except (StoreError, ValueError) as e:
        fail(f"--eval-bundle: {e}" if isinstance(e, CoreError) else str(e))
    if tokenizer.vocab_size > args.vocab_size:
        fail(f"--vocab-size {args.vocab_size} is smaller than the tokenizer's vocabulary ({tokenizer.vocab_size})")
    run = RunLayout(args.namespace, args.sweep, args.run)

    # -- runtime settings
    if args.deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(args.seed)  # the same on every rank: identical initial weights
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True

    def autocast() -> contextlib.AbstractContextManager[Any]:
        # bf16 autocast on CUDA; plain fp32 on CPU (CPU bf16 matmuls are slow and less exact)
        if device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- model
    model = build_model(shape, device)
    if world > 1:  # same seed => same init, but make "identical on every rank" a fact, not a hope
        for p in model.parameters():
            dist.broadcast(p.data, src=0)
    params = sum(p.numel() for p in model.parameters())
    assert params == shape.total_params, (params, shape.total_params)
    forward = torch.compile(model, dynamic=False) if (args.compile and device.type == "cuda") else model
    print0(
        f"model: depth {shape.depth}, width {shape.n_embd}, heads {shape.n_head}, params {params:,}, "
        f"{shape.flops_per_token:.3e} FLOPs/token; {steps} steps x {hz.total_batch_tokens:,} tokens "
        f"({hz.grad_accum_steps} micro-batches x {world} ranks)"
    )

    # -- optimizer
    optimizers = build_optimizers(
        model,
        total_batch_tokens=hz.total_batch_tokens,
        matrix_lr=args.matrix_lr,
        embedding_lr=args.embedding_lr,
        unembedding_lr=args.unembedding_lr,
        weight_decay=args.weight_decay,
    )

    # -- resume
    start_step, loader_state, loss_curve = 0, None, []
    val_rows: list[dict[str, Any]] = []
    ckpt = None
    if args.resume != "never":
        try:
            ckpt = checkpoint.load_latest_checkpoint(store, run)
        except checkpoint.WorldSizeMismatch as e:
            fail(str(e))
        if ckpt is None and args.resume == "require":
            fail(f"--resume require: no valid checkpoint under {join_uri(store.uri, run.checkpoints)}")
    if ckpt is not None:
        model.load_state_dict(ckpt.model)
        for opt, state in zip(optimizers, ckpt.optimizers, strict=True):
            opt.load_state_dict(state)
        start_step, loader_state = ckpt.step, ckpt.state["loader"]
        loss_curve = ckpt.state.get("loss_curve", [])
        val_rows = val_trace.read_rows(ckpt.state)
        checkpoint.set_rng_state(ckpt.state["rng"])
        print0(f"resumed from {join_uri(store.uri, run.checkpoint(ckpt.step))} at step {ckpt.step}")
    elif args.resume != "never" and master and store.exists(run.results):
        print0("note: results.json exists but no checkpoint: training from scratch")

    # -- data
    loader = data.TokenLoader(
        data_store,
        train_keys,
        tokenizer,
        batch_size=args.device_batch_size,
        seq_len=args.seq_len,
        rank=rank,
        world_size=world,
        state=loader_state,
    )
    batches = ((x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in loader)
    vtrace = val_trace.build(args, steps=steps, total_batch_tokens=hz.total_batch_tokens, world_size=world, rank=rank,
                             data_store=data_store, store=store, run=run, val_key=val_key, tokenizer=tokenizer,
                             device=device, flops_per_token=float(shape.flops_per_token), master=master)  # fmt: skip
    vtrace.rows = val_rows

    # -- metrics
    metrics = TrainerMetrics(
        sweep=args.sweep, depth=args.depth, run=args.run, rank=rank, local_rank=local_rank, port=args.metrics_port
    )
    metrics.set_info(
        {
            "n_layer": str(shape.n_layer),
            "n_embd": str(shape.n_embd),
            "params": str(params),
            "device": str(device),
            "world_size": str(world),
            "total_batch_tokens": str(hz.total_batch_tokens),
        }
    )
    metrics.set("miniseries_train_steps_planned", steps)

    def store_metrics(h: StoreHealth) -> None:
        metrics.set("miniseries_store_errors_total", h.errors)
        metrics.set("miniseries_store_retry_wait_seconds_total", h.waited_seconds)
        metrics.set("miniseries_store_outage_seconds", h.outage_seconds(time.monotonic()))

    store.on_change = data_store.on_change = store_metrics
    store_metrics(health)
    peak = peak_flops_per_device(device, args.peak_flops)

    def save(step: int) -> str:
        state = {"loader": loader.state_dict(), "rng": checkpoint.rng_state(), "step": step, "loss_curve": loss_curve,
                 "val_curve": vtrace.rows}  # fmt: skip
        prefix = checkpoint.save_checkpoint(
            store,
            run,
            step,
            step * hz.total_batch_tokens,
            model=model,
            optimizers=optimizers,
            state=state,
            keep=args.keep_checkpoints,
        )
        if master:
            write_json_lines(store, run.loss_curve, loss_curve)
        return prefix

    def progress(
        step: int,
        loss: float | None,
        lrm: float | None,
        tps: float | None,
        mfu: float | None,
        train_seconds: float,
        state: str,
    ) -> None:
        if not master:
            return
        eta = (steps - step) * hz.total_batch_tokens / tps if tps else None
        # Advisory: one try; during a store outage training goes on and the next one is written later.
        store.write_advisory(
            run.progress,
            Progress(
                sweep=args.sweep,
                run=args.run,
                depth=args.depth,
                step=step,
                steps=steps,
                tokens=step * hz.total_batch_tokens,
                loss=loss,
                lr=lrm,
                tokens_per_second=tps,
                mfu=mfu,
                elapsed_seconds=train_seconds,
                eta_seconds=eta,
                world_size=world,
                state=state,
                updated_at=time.time(),
            ).to_json(),
        )
        if eta is not None:
            metrics.set("miniseries_train_eta_seconds", eta)

    # -- training loop
    train_seconds, timed_tokens = 0.0, 0
    last_progress = 0.0
    last_curve = time.time()
    loss_value = lrm = tps = mfu = None
    prefix = None
    for step in range(start_step, steps):
        t0 = time.perf_counter()
        lrm = lr_multiplier(step, steps, args.warmup_steps, args.warmdown_ratio)
        set_schedule(optimizers, step, lrm)
        loss = train_step(forward, model, optimizers, batches, hz.grad_accum_steps, autocast, world)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        done = step + 1
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            fail(f"loss became {loss_value} at step {done}; lower the learning rates or check the data")
        # The first steps include compilation and warm-up: leave them out of throughput.
        if step - start_step >= 3:
            train_seconds += dt
            timed_tokens += hz.total_batch_tokens
        tps = timed_tokens / train_seconds if train_seconds else None
        mfu = shape.flops_per_token * tps / (world * peak) if tps else None
        tokens = done * hz.total_batch_tokens
        if done % args.log_every == 0 or done == steps:
            loss_curve.append(
                {
                    "step": done,
                    "tokens": tokens,
                    "flops": float(shape.flops_per_token) * tokens,
                    "loss": loss_value,
                    "lr": lrm,
                }
            )
            print0(
                f"step {done:6d}/{steps} | loss {loss_value:.4f} | lrm {lrm:.3f} | {dt * 1000:.0f} ms"
                + (f" | {tps:,.0f} tok/s | MFU {mfu:.2%}" if tps and mfu is not None else "")
            )
        metrics.set("miniseries_train_loss", loss_value)
        metrics.set("miniseries_train_step", done)
        metrics.set("miniseries_train_tokens_total", tokens)
        metrics.set("miniseries_train_flops_total", float(shape.flops_per_token) * tokens)
        metrics.set("miniseries_train_lr", lrm)
        if tps:
            metrics.set("miniseries_train_tokens_per_second", tps)
            metrics.set("miniseries_train_mfu", mfu or 0.0)
        metrics.set("miniseries_peak_memory_bytes", peak_memory_bytes(device))
        if vtrace.due(done, steps):
            print0(f"step {done:6d}/{steps} | val bpb {vtrace.evaluate(model, model, done, autocast):.4f} (slice)")
        if args.checkpoint_every and done % args.checkpoint_every == 0 and done < steps:
            prefix = save(done)
        if time.time() - last_progress > PROGRESS_EVERY_SECONDS:
            progress(done, loss_value, lrm, tps, mfu, train_seconds, "training")
            last_progress = time.time()
        if master and time.time() - last_curve > LOSS_CURVE_EVERY_SECONDS:
            # Advisory too: the whole curve is rewritten at every checkpoint and at the end.
            rows = "".join(json.dumps(r) + "\n" for r in loss_curve).encode()
            if store.write_advisory(run.loss_curve, rows):
                last_curve = time.time()
    prefix = save(steps) if start_step < steps or ckpt is None else run.checkpoint(steps)

    # -- evaluate
    progress(steps, loss_value, lrm, tps, mfu, train_seconds, "evaluating")
    model.eval()
    val_bpb = None
    if args.eval_tokens:
        from miniseries_trainer.bpb import evaluate_bpb

        val = data.validation_batches(
            data_store,
            val_key,
            tokenizer,
            batch_size=args.device_batch_size,
            seq_len=args.seq_len,
            eval_tokens=args.eval_tokens,
            rank=rank,
            world_size=world,
        )
        n = torch.tensor(len(val))
        if world > 1:
            dist.all_reduce(n, op=dist.ReduceOp.MIN)  # every rank must run the same number of collectives
        val = [(x.to(device), y.to(device)) for x, y in val[: int(n)]]
        with autocast():
            val_bpb = evaluate_bpb(forward, val, tokenizer.token_bytes(), device)
        print0(
            f"validation: {val_bpb:.4f} bits per byte over {int(n) * world * args.device_batch_size * args.seq_len:,} tokens"
        )
        metrics.set("miniseries_val_bpb", val_bpb)
    core = None
    if bundle is not None:
        from miniseries_trainer.core_eval import evaluate_core

        # Every rank scores its share of the examples and all get the summed result. The eager
        # model, not the compiled one: evaluation batches vary in shape and would recompile.
        with autocast():
            core = evaluate_core(
                model,
                tokenizer,
                bundle,
                device=device,
                max_per_task=args.core_max_per_task,
                max_seq_len=args.seq_len,
                allow_partial=args.core_allow_partial,
            )
        if core.core is not None:
            metrics.set("miniseries_core_score", core.core)

    # -- save results
    wall = time.time() - t_start
    if master:
        losses = [p["loss"] for p in loss_curve]
        window = losses[-max(1, len(losses) // 10) :] if losses else []
        prov = provenance.collect(
            device=device,
            world_size=world,
            data_uri=args.data,
            data_store=data_store,
            tokenizer_uri=args.tokenizer,
            tokenizer_store=open_store(args.tokenizer),
            seed=args.seed,
            warmup_steps=args.warmup_steps,
            warmdown_ratio=args.warmdown_ratio,
        )
        results = RunResults(
            sweep=args.sweep,
            run=args.run,
            depth=args.depth,
            budget_flops=args.budget_flops,
            shape=shape.to_dict(),
            params=shape.param_counts(),
            target_tokens=args.target_tokens,
            tokens=steps * hz.total_batch_tokens,
            steps=steps,
            total_batch_tokens=hz.total_batch_tokens,
            flops_per_token=shape.flops_per_token,
            flops=float(shape.flops_per_token) * steps * hz.total_batch_tokens,
            wall_seconds=wall,
            gpu_seconds=wall * world if device.type == "cuda" else 0.0,
            world_size=world,
            device=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            mfu=mfu,
            tokens_per_second=tps,
            loss=LossSummary(
                first=losses[0] if losses else None,
                final=sum(window) / len(window) if window else None,
                min=min(losses) if losses else None,
                points=len(losses),
            ),
            val_bpb=val_bpb,
            core=core,
            checkpoint_uri=join_uri(store.uri, prefix),
            loss_curve_key=run.loss_curve,
            val_curve_key=run.val_curve if vtrace.rows else None,
            val_trace=val_trace.summary(vtrace, train_seconds),
            provenance=prov,
            created_at=time.time(),
        )
        write_json_lines(store, run.loss_curve, loss_curve)
        if vtrace.rows:  # whole again at the end, as the loss curve (a restarted run rewrites both)
            vtrace.write()
        store.write_bytes(run.results, results.to_json())
        progress(steps, loss_value, lrm, tps, mfu, train_seconds, "done")
        print0(f"results: {join_uri(store.uri, run.results)}")
        if health.errors:
            print0(f"store: {health.errors} failed operations, {health.waited_seconds:.1f} s waited on retries, "
                   f"longest outage {health.longest_outage_seconds:.1f} s")  # fmt: skip
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
