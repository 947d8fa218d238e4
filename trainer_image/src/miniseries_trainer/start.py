"""How a run starts: everything before its first step. `set_up` parses the flags and builds the
runtime, the shape and horizon, the inputs (checked before any compute is spent), the model and its
optimizers (a `Setup`); `resume_run` loads the checkpoint to start from (`resume`: --resume and
--init-from) and says where the run starts (a `Begun`, whose `record` is results.json's RunStart).

The first two phases of train.py.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from miniseries.contract import shapes
from miniseries.contract.layout import RunLayout, SweepLayout, join_uri, lineage
from miniseries.contract.results import START_CHECKPOINT, START_FRESH, START_TRUNK, Owners, RunStart
from miniseries.contract.shapes import Horizon, ModelShape
from miniseries.contract.store import RetryingStore, Store
from miniseries_trainer import checkpoint, precision, val_trace
from miniseries_trainer.flags import build_parser, fail, refuse_env_overrides
from miniseries_trainer.inputs import Inputs, open_inputs
from miniseries_trainer.model import build_model, shape_from_flags
from miniseries_trainer.optim import build_optimizers
from miniseries_trainer.runtime import Runtime, set_numerics, start_runtime

# -- set up: flags, runtime, shape and horizon, inputs, model, optimizer


@dataclass
class Setup:
    """What the run is and what it runs on, built once before any step (set_up); read by every phase."""

    args: argparse.Namespace
    rt: Runtime
    t_start: float  # wall clock at the start, for results.json's wall_seconds
    shape: ModelShape
    hz: Horizon
    steps: int
    params: int
    inputs: Inputs
    run: RunLayout
    model: torch.nn.Module
    forward: Any  # the model as trained: fp8 layers and torch.compile applied (precision.prepare)
    optimizers: list[torch.optim.Optimizer]

    @property
    def store(self) -> RetryingStore:
        return self.inputs.store


def parse_flags(argv: Sequence[str] | None) -> argparse.Namespace:
    """The flags, refused when a cluster run's environment overrides them or they contradict each other."""
    parser = build_parser()
    args = parser.parse_args(argv)
    refuse_env_overrides(parser, args)
    if problem := val_trace.check_flags(args.val_every, args.val_tokens):
        fail(problem)
    return args


def set_up(args: argparse.Namespace) -> Setup:
    """The device and ranks, the shape and horizon, the inputs (checked before any compute is spent),
    the model and its optimizers."""
    rt = start_runtime(args.device, args.precision)  # where we run: the device and torchrun's ranks
    t_start = time.time()
    shape, hz, steps = shape_and_horizon(args, rt.world)
    inputs = open_inputs(args, rt.rank)  # store, tokenizer, data and CORE bundle
    set_numerics(rt, seed=args.seed, deterministic=args.deterministic)
    model = build_model(shape, rt.device)
    if rt.world > 1:  # same seed => same init, but make "identical on every rank" a fact, not a hope
        for p in model.parameters():
            dist.broadcast(p.data, src=0)
    params = sum(p.numel() for p in model.parameters())
    assert params == shape.total_params, (params, shape.total_params)
    compile_ = precision.resolve_compile(args.compile, rt.device)
    forward = precision.prepare(model, precision=rt.precision, compile=compile_)  # fp8 layers, torch.compile
    rt.print0(
        f"model: depth {shape.depth}, width {shape.n_embd}, heads {shape.n_head}, params {params:,}, "
        f"{shape.flops_per_token:.3e} FLOPs/token; {steps} steps x {hz.total_batch_tokens:,} tokens "
        f"({hz.grad_accum_steps} micro-batches x {rt.world} ranks); {rt.precision}"
        + (", compiled" if compile_ else ", eager")
    )
    optimizers = build_optimizers(
        model,
        total_batch_tokens=hz.total_batch_tokens,
        matrix_lr=args.matrix_lr,
        embedding_lr=args.embedding_lr,
        unembedding_lr=args.unembedding_lr,
        weight_decay=args.weight_decay,
        compile=compile_,
    )
    run = RunLayout(args.namespace, args.sweep, args.run)
    return Setup(args, rt, t_start, shape, hz, steps, params, inputs, run, model, forward, optimizers)


def shape_and_horizon(args: argparse.Namespace, world: int) -> tuple[ModelShape, Horizon, int]:
    """The model's shape, the batch arithmetic and the number of steps, from the one arithmetic module."""
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
    return shape, hz, steps


# -- resume: where the run starts


@dataclass
class Begun:
    """Where the run starts (resume_run): step 0, its own newest checkpoint, or (wsd) its trunk's."""

    step: int
    loader_state: dict[str, Any] | None
    loss_curve: list[dict[str, Any]]
    val_rows: list[dict[str, Any]]
    record: RunStart  # results.json's `start`
    from_checkpoint: bool


def resume_run(s: Setup) -> Begun:
    """Load the checkpoint --resume and --init-from ask for (resume) and say where the run starts."""
    args, store, run = s.args, s.store, s.run
    # only this sweep's checkpoints (and those of the sweeps it adopted), never a deleted predecessor's
    owners = lineage(store, SweepLayout(args.namespace, args.sweep), args.sweep_uid) if args.sweep_uid else None
    ckpt = resume(args.resume, store, run, s.model, s.optimizers, args.init_from, owners)
    if ckpt is None:
        if args.resume != "never" and s.rt.master and store.exists(run.results):
            s.rt.print0("note: results.json exists but no checkpoint: training from scratch")
        return Begun(0, None, [], [], RunStart(kind=START_FRESH, sweep_uid=args.sweep_uid), from_checkpoint=False)
    own = join_uri(store.uri, run.checkpoint(ckpt.step))
    trunk = args.init_from and ckpt.step not in checkpoint.checkpoint_steps(store, run, owners)
    source = args.init_from if trunk else own
    record = RunStart(kind=START_TRUNK if trunk else START_CHECKPOINT, step=ckpt.step, uri=source,
                      sweep_uid=args.sweep_uid)  # fmt: skip
    s.rt.print0(f"resumed from {source} at step {ckpt.step}")
    return Begun(
        ckpt.step,
        ckpt.state["loader"],
        ckpt.state.get("loss_curve", []),
        val_trace.read_rows(ckpt.state),
        record,
        from_checkpoint=True,
    )


def resume(
    policy: str,
    store: Store,
    run: RunLayout,
    model: torch.nn.Module,
    optimizers: list[torch.optim.Optimizer],
    init_from: str | None = None,
    owner_uid: Owners = None,
) -> checkpoint.LoadedCheckpoint | None:
    """Load the newest valid checkpoint into the model, optimizers and RNG (--resume auto|require|never);
    without one of its own, the checkpoint `init_from` names (--init-from: a wsd branch's trunk checkpoint)."""
    if policy == "never":
        return None
    try:
        ckpt = checkpoint.load_latest_checkpoint(store, run, owner_uid)
        if ckpt is None and init_from:
            try:
                ckpt = checkpoint.load_checkpoint_uri(init_from, owner_uid)
            except (checkpoint.WorldSizeMismatch, checkpoint.UnsafeCheckpoint):
                raise
            except Exception as e:  # missing, unreadable or corrupt: the branch cannot start
                fail(f"--init-from {init_from}: cannot load the checkpoint ({type(e).__name__}: {e})")
    except (checkpoint.WorldSizeMismatch, checkpoint.UnsafeCheckpoint) as e:
        fail(str(e))
    if ckpt is None:
        if policy == "require":
            fail(f"--resume require: no valid checkpoint under {join_uri(store.uri, run.checkpoints)}")
        return None
    model.load_state_dict(ckpt.model)
    for opt, state in zip(optimizers, ckpt.optimizers, strict=True):
        opt.load_state_dict(state)
    checkpoint.set_rng_state(ckpt.state["rng"])
    return ckpt
