"""Train one miniseries run: parse -> build -> optimizer -> data -> loop -> evaluate -> save.

    python -m miniseries_trainer.train --sweep S --run d12 --depth 12 ... (see --help)
    torchrun --nproc-per-node 8 -m miniseries_trainer.train ...

The flags (and their MINISERIES_<FLAG> environment defaults) are in `flags.py`; the operator
and the local runner build them with `miniseries.plan.trainer_argv.trainer_flags`.
`train` reads top to bottom like nanochat's `scripts/base_train.py`, one function per phase,
each handing the next what it built (no phase reads a name another assigns later):

    set_up -> Setup       flags, device and ranks, shape and horizon, inputs, model, optimizers (start.py)
    resume_run -> Begun   the checkpoint to start from: its own, a wsd branch's trunk's, or none (start.py)
    go_live -> Live       the loader at that position, the val trace, metrics, throughput, progress
    run_steps -> Position the step loop (take_step, report_step, write_when_due); on a stop signal
                          agreed by every rank, `preempted` checkpoints and exits EXIT_PREEMPTED
    evaluate              validation bits per byte and CORE
    write_results         results.json and the curves (rank 0), unless the sweep is gone (fenced)

Each thing a phase does is one function in a module named for it:

    runtime.py     device, ranks, numerics          inputs.py      store, shards, tokenizer, bundle
    model.py       the GPT                          optim.py       Muon + AdamW and the LR schedule
    checkpoint.py  save / resume                    loader.py      the token loader
    step.py        one optimizer step               throughput.py  tokens/s and MFU
    evaluate.py    validation bpb and CORE          outputs.py     progress, loss curve, metrics, results
    preemption.py  SIGTERM/SIGINT: finish the step, checkpoint, exit EXIT_PREEMPTED (75)

Written after karpathy/nanochat `scripts/base_train.py`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from miniseries.contract.exits import EXIT_FENCED
from miniseries.contract.layout import SweepLayout, fenced, join_uri
from miniseries.contract.preemption import EXIT_PREEMPTED, PROGRESS_PREEMPTED
from miniseries.contract.results import CoreResult, Provenance
from miniseries.contract.schedule import schedule_record
from miniseries.contract.store import StoreAccessDenied, open_store
from miniseries_trainer import checkpoint, masking, provenance, val_trace
from miniseries_trainer.evaluate import core_score, load_validation, validation_bpb
from miniseries_trainer.flags import build_parser, denied, fail
from miniseries_trainer.loader import StepLoader
from miniseries_trainer.metrics import TrainerMetrics
from miniseries_trainer.optim import lr_multiplier, set_schedule
from miniseries_trainer.outputs import (
    LOSS_CURVE_EVERY_SECONDS,
    PROGRESS_EVERY_SECONDS,
    ProgressWriter,
    hyperparameters,
    json_lines,
    loss_point,
    record_step,
    run_results,
    write_json_lines,
)
from miniseries_trainer.preemption import Preempted, StopSignal
from miniseries_trainer.runtime import stop_runtime
from miniseries_trainer.start import Begun, Setup, parse_flags, resume_run, set_up
from miniseries_trainer.step import train_step
from miniseries_trainer.throughput import Throughput, peak_flops_per_device

__all__ = ["build_parser", "main", "train_step"]


def main(argv: Sequence[str] | None = None) -> int:
    """Train; 0 when results.json is written, EXIT_PREEMPTED when a SIGTERM/SIGINT stopped it (preemption.py)."""
    masking.install()  # first: nothing printed from here on shows the store's credentials
    with StopSignal() as stop:
        try:
            return train(argv, stop)
        except StoreAccessDenied as e:  # a write refused mid-run (a rotated key): the credentials, not training
            denied(str(e))
        except Preempted as e:  # during evaluation: the final checkpoint is written, nothing to save
            print(f"{e} after the last step, before results were written; exit {EXIT_PREEMPTED}", flush=True)
            return EXIT_PREEMPTED


def train(argv: Sequence[str] | None, stop: StopSignal) -> int:
    """The phases in order: set up and resume (start.py), then the step loop, evaluate, write results (below)."""
    s = set_up(parse_flags(argv))
    begun = resume_run(s)
    live = go_live(s, begun)
    pos = run_steps(s, live, begun.step, stop)
    if pos.stopped:
        return preempted(s, live, pos, stop)
    final_checkpoint = (
        save(s, live, s.steps) if begun.step < s.steps or not begun.from_checkpoint else s.run.checkpoint(s.steps)
    )
    stop.raise_on_signal()  # from here on nothing is left to save: a stop signal exits at once
    val_bpb, core = evaluate(s, live, pos)
    status = write_results(s, begun, live, pos, final_checkpoint, val_bpb, core) if s.rt.master else 0
    stop_runtime(s.rt)
    return status


# -- what runs beside the steps: the data, the val trace, metrics, throughput, progress


@dataclass
class Live:
    """What the step loop feeds from and writes to (go_live); checkpoints save the loader and both curves."""

    loader: StepLoader
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    vtrace: val_trace.ValTrace
    loss_curve: list[dict[str, Any]]
    metrics: TrainerMetrics
    speed: Throughput
    progress: ProgressWriter


def go_live(s: Setup, begun: Begun) -> Live:
    """The loader at the resumed position, the val-bpb trace, metrics, throughput and progress.json."""
    args, rt, inputs, hz = s.args, s.rt, s.inputs, s.hz
    loader = StepLoader(
        inputs.data_store,
        inputs.train_keys,
        inputs.tokenizer,
        batch_size=args.device_batch_size,
        seq_len=args.seq_len,
        rank=rt.rank,
        world_size=rt.world,
        grad_accum=hz.grad_accum_steps,
        state=begun.loader_state,
    )
    batches = ((x.to(rt.device, non_blocking=True), y.to(rt.device, non_blocking=True)) for x, y in loader)
    # the val-bpb trace: a small fixed slice evaluated every few steps (val_trace.py)
    vtrace = val_trace.build(args, steps=s.steps, total_batch_tokens=hz.total_batch_tokens, world_size=rt.world,
                             rank=rt.rank, data_store=inputs.data_store, store=s.store, run=s.run,
                             val_key=inputs.val_key, tokenizer=inputs.tokenizer, device=rt.device,
                             flops_per_token=float(s.shape.flops_per_token), master=rt.master)  # fmt: skip
    vtrace.rows = begun.val_rows
    metrics = start_metrics(s)
    speed = Throughput(
        hz.total_batch_tokens, s.shape.flops_per_token, peak_flops_per_device(rt.device, args.peak_flops), rt.world
    )
    progress = ProgressWriter(s.store, s.run, args.depth, hz, s.steps, rt, metrics, args.sweep_uid)
    return Live(loader, batches, vtrace, begun.loss_curve, metrics, speed, progress)


def start_metrics(s: Setup) -> TrainerMetrics:
    """The Prometheus metrics (--metrics-port), with the run's shape as info and the stores' health."""
    args, rt = s.args, s.rt
    metrics = TrainerMetrics(
        namespace=args.namespace,
        sweep=args.sweep,
        depth=args.depth,
        run=args.run,
        rank=rt.rank,
        local_rank=rt.local_rank,
        port=args.metrics_port,
    )
    metrics.set_info(
        {
            "n_layer": str(s.shape.n_layer),
            "n_embd": str(s.shape.n_embd),
            "params": str(s.params),
            "device": str(rt.device),
            "world_size": str(rt.world),
            "total_batch_tokens": str(s.hz.total_batch_tokens),
        }
    )
    metrics.set("miniseries_train_steps_planned", s.steps)
    s.store.on_change = s.inputs.data_store.on_change = metrics.set_store_health
    metrics.set_store_health(s.inputs.health)
    return metrics


def save(s: Setup, live: Live, step: int) -> str:
    """A checkpoint after `step` (model, optimizers, loader position, RNG, both curves); the loss curve too.
    Returns the checkpoint's prefix in the store."""
    state: dict[str, Any] = {
        "loader": live.loader.state_dict(),
        "rng": checkpoint.rng_state(),
        "step": step,
        "loss_curve": live.loss_curve,
        "val_curve": live.vtrace.rows,
    }
    prefix = checkpoint.save_checkpoint(
        s.store,
        s.run,
        step,
        step * s.hz.total_batch_tokens,
        model=s.model,
        optimizers=s.optimizers,
        state=state,
        keep=s.args.keep_checkpoints,
        pinned=s.args.keep_steps,
        sweep_uid=s.args.sweep_uid,
    )
    if s.rt.master:
        write_json_lines(s.store, s.run.loss_curve, live.loss_curve)
    return prefix


# -- the step loop


@dataclass
class Position:
    """Where the step loop is: the last finished step, its loss and LR multiplier, and whether it stopped."""

    first: int  # the step the run started from (resumed or 0)
    done: int  # optimizer steps finished
    loss: float | None = None
    lrm: float | None = None
    stopped: bool = False  # a stop signal, agreed by every rank, after step `done`
    saved: bool = False  # step `done` was checkpointed already (periodic or pinned)
    progress_at: float = 0.0  # wall clock of the last progress.json
    curve_at: float = field(default_factory=time.time)  # wall clock of the last advisory loss-curve write


def run_steps(s: Setup, live: Live, first: int, stop: StopSignal) -> Position:
    """Steps `first`..steps, each: train, report, checkpoint and write progress when due, then ask every
    rank whether to stop. Returns where it ended: after the last step, or `stopped` after a signal."""
    pos = Position(first=first, done=first)
    if first < s.steps and stop.agreed(s.rt.world, s.rt.device):  # stopped while starting: nothing new to save
        pos.stopped = True
        return pos
    for step in range(first, s.steps):
        dt = take_step(s, live, pos, step)
        live.speed.add(step - first, dt)
        report_step(s, live, pos, dt)
        pos.saved = write_when_due(s, live, pos)
        # a SIGTERM on any rank: every rank stops here, after the same step (one int all-reduced)
        if stop.agreed(s.rt.world, s.rt.device):
            pos.stopped = True
            return pos
    return pos


def take_step(s: Setup, live: Live, pos: Position, step: int) -> float:
    """One optimizer step at the schedule's LR; `pos` gets its loss. Returns its wall seconds."""
    args = s.args
    t0 = time.perf_counter()
    pos.lrm = lr_multiplier(step, s.steps, args.warmup_steps, args.warmdown_ratio,
                            shape=args.warmdown_shape, warmdown_steps=args.warmdown_steps)  # fmt: skip
    set_schedule(s.optimizers, step, pos.lrm)
    loss = train_step(s.forward, s.model, s.optimizers, live.batches, s.hz.grad_accum_steps, s.rt.autocast, s.rt.world)
    if s.rt.device.type == "cuda":
        torch.cuda.synchronize(s.rt.device)
    dt = time.perf_counter() - t0
    pos.done, pos.loss = step + 1, loss.item()
    if not math.isfinite(pos.loss):
        fail(f"loss became {pos.loss} at step {pos.done}; lower the learning rates or check the data")
    return dt


def report_step(s: Setup, live: Live, pos: Position, dt: float) -> None:
    """The log line and loss-curve point (every --log-every), the metrics, and the val trace when due."""
    done, steps, speed = pos.done, s.steps, live.speed
    assert pos.loss is not None and pos.lrm is not None  # take_step set them
    tokens = done * s.hz.total_batch_tokens
    if done % s.args.log_every == 0 or done == steps:
        live.loss_curve.append(loss_point(done, tokens, s.shape, pos.loss, pos.lrm))
        tps, mfu = speed.tokens_per_second, speed.mfu
        s.rt.print0(
            f"step {done:6d}/{steps} | loss {pos.loss:.4f} | lrm {pos.lrm:.3f} | {dt * 1000:.0f} ms"
            + (f" | {tps:,.0f} tok/s | MFU {mfu:.2%}" if tps and mfu is not None else "")
        )
    record_step(live.metrics, step=done, tokens=tokens, shape=s.shape, loss=pos.loss, lr=pos.lrm, speed=speed,
                device=s.rt.device)  # fmt: skip
    if live.vtrace.due(done, steps):
        bpb = live.vtrace.evaluate(s.model, s.forward, done, s.rt.autocast)
        s.rt.print0(f"step {done:6d}/{steps} | val bpb {bpb:.4f} (slice)")


def write_when_due(s: Setup, live: Live, pos: Position) -> bool:
    """The periodic (or pinned) checkpoint, progress.json and the advisory loss curve, each when due.
    Returns whether this step was checkpointed."""
    done = pos.done
    periodic = bool(s.args.checkpoint_every) and done % s.args.checkpoint_every == 0
    checkpointed = (periodic or done in s.args.keep_steps) and done < s.steps
    if checkpointed:
        save(s, live, done)
    if time.time() - pos.progress_at > PROGRESS_EVERY_SECONDS:
        live.progress.write(done, pos.loss, pos.lrm, live.speed, "training")
        pos.progress_at = time.time()
    # the curve is advisory too: it is rewritten whole at every checkpoint and at the end
    curve_due = s.rt.master and time.time() - pos.curve_at > LOSS_CURVE_EVERY_SECONDS
    if curve_due and s.store.write_advisory(s.run.loss_curve, json_lines(live.loss_curve)):
        pos.curve_at = time.time()
    return checkpointed


def preempted(s: Setup, live: Live, pos: Position, stop: StopSignal) -> int:
    """A stop signal on some rank: checkpoint the finished step (unless it just was), say so, exit."""
    t_stop = time.perf_counter()
    done, steps = pos.done, s.steps
    if done == pos.first:  # stopped while starting: the newest checkpoint (if any) is still the newest
        s.rt.print0(f"preempted by {stop.describe()} before step {done + 1}/{steps}: nothing to save; "
                    f"exit {EXIT_PREEMPTED}", flush=True)  # fmt: skip
    else:
        prefix = s.run.checkpoint(done) if pos.saved else save(s, live, done)
        live.progress.write(done, pos.loss, pos.lrm, live.speed, PROGRESS_PREEMPTED)
        s.rt.print0(f"preempted by {stop.describe()} after step {done}/{steps}: checkpoint "
                    f"{join_uri(s.store.uri, prefix)} written in {time.perf_counter() - t_stop:.2f} s; "
                    f"exit {EXIT_PREEMPTED}, resume with --resume=auto", flush=True)  # fmt: skip
    stop_runtime(s.rt)
    return EXIT_PREEMPTED


# -- evaluate


def evaluate(s: Setup, live: Live, pos: Position) -> tuple[float | None, CoreResult | None]:
    """Validation bits per byte (--eval-tokens) and CORE (--eval-bundle), each skipped when not asked for."""
    args, rt, inputs = s.args, s.rt, s.inputs
    live.progress.write(s.steps, pos.loss, pos.lrm, live.speed, "evaluating")
    s.model.eval()
    val_bpb = None
    if args.eval_tokens:
        val = load_validation(
            inputs.data_store,
            inputs.val_key,
            inputs.tokenizer,
            rt,
            batch_size=args.device_batch_size,
            seq_len=args.seq_len,
            eval_tokens=args.eval_tokens,
        )
        val_bpb = validation_bpb(s.forward, val, inputs.tokenizer, rt)
        val_tokens = len(val) * rt.world * args.device_batch_size * args.seq_len
        rt.print0(f"validation: {val_bpb:.4f} bits per byte over {val_tokens:,} tokens")
        live.metrics.set("miniseries_val_bpb", val_bpb)
    core = None
    if inputs.bundle is not None:
        core = core_score(
            s.model,
            inputs.tokenizer,
            inputs.bundle,
            rt,
            max_per_task=args.core_max_per_task,
            max_seq_len=args.seq_len,
            allow_partial=args.core_allow_partial,
        )
        if core.core is not None:
            live.metrics.set("miniseries_core_score", core.core)
    return val_bpb, core


# -- write results (rank 0)


def write_results(
    s: Setup,
    begun: Begun,
    live: Live,
    pos: Position,
    final_checkpoint: str,
    val_bpb: float | None,
    core: CoreResult | None,
) -> int:
    """results.json, both curves whole and progress "done"; EXIT_FENCED, writing nothing, when the sweep
    this run belongs to is gone. Returns the exit status."""
    args, store, run, print0 = s.args, s.store, s.run, s.rt.print0
    results = run_results(
        args,
        shape=s.shape,
        hz=s.hz,
        steps=s.steps,
        runtime=s.rt,
        wall_seconds=time.time() - s.t_start,
        speed=live.speed,
        loss_curve=live.loss_curve,
        val_bpb=val_bpb,
        core=core,
        checkpoint_uri=join_uri(store.uri, final_checkpoint),
        loss_curve_key=run.loss_curve,
        val_curve_key=run.val_curve if live.vtrace.rows else None,
        val_trace=val_trace.summary(live.vtrace, live.speed.seconds),
        provenance=run_provenance(s),
    )
    results.sweep_uid, results.start, results.hyperparameters = args.sweep_uid, begun.record, hyperparameters(args)
    if args.sweep_uid and (why := fenced(store, SweepLayout(args.namespace, args.sweep), args.sweep_uid)):
        # the sweep was deleted (or re-created) while this run finished: its results are no one's
        print0(f"not writing results: {why}; exit {EXIT_FENCED}", flush=True)
        return EXIT_FENCED
    write_json_lines(store, run.loss_curve, live.loss_curve)
    if live.vtrace.rows:  # whole again at the end, as the loss curve (a restarted run rewrites both)
        live.vtrace.write()
    store.write_bytes(run.results, results.to_json())
    live.progress.write(s.steps, pos.loss, pos.lrm, live.speed, "done")
    print0(f"results: {join_uri(store.uri, run.results)}")
    health = s.inputs.health
    if health.errors:
        print0(f"store: {health.errors} failed operations, {health.waited_seconds:.1f} s waited on retries, "
               f"longest outage {health.longest_outage_seconds:.1f} s")  # fmt: skip
    return 0


def run_provenance(s: Setup) -> Provenance:
    """What results.json records about the code, data, tokenizer, device and schedule that made it."""
    args = s.args
    return provenance.collect(
        device=s.rt.device,
        precision=s.rt.precision,
        world_size=s.rt.world,
        data_uri=args.data,
        data_store=s.inputs.data_store,
        tokenizer_uri=args.tokenizer,
        tokenizer_store=open_store(args.tokenizer),
        seed=args.seed,
        lr_schedule=schedule_record(
            s.steps,
            args.warmup_steps,
            args.warmdown_ratio,
            shape=args.warmdown_shape,
            warmdown_steps=args.warmdown_steps,
        ),
    )


if __name__ == "__main__":
    status = main()
    if status == EXIT_PREEMPTED:
        # Everything is written (the store's writes are synchronous): skip the interpreter's teardown
        # of torch, pyarrow and the rest, seconds of the pod's grace period (measured: ~5 s of 5.2).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
