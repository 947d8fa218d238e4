"""Train one miniseries run: parse -> build -> optimizer -> data -> loop -> evaluate -> save.

    python -m miniseries_trainer.train --sweep S --run d12 --depth 12 ... (see --help)
    torchrun --nproc-per-node 8 -m miniseries_trainer.train ...

The flags (and their MINISERIES_<FLAG> environment defaults) are in `flags.py`; the operator
and the local runner build them with `miniseries.plan.trainer_argv.trainer_flags`.
`main` reads top to bottom like nanochat's `scripts/base_train.py`; each step it takes is
one function in a module named for it:

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
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist

from miniseries.contract import shapes
from miniseries.contract.exits import EXIT_FENCED
from miniseries.contract.layout import RunLayout, SweepLayout, fenced, join_uri, lineage
from miniseries.contract.preemption import EXIT_PREEMPTED, PROGRESS_PREEMPTED
from miniseries.contract.results import START_CHECKPOINT, START_FRESH, START_TRUNK, Owners, RunStart
from miniseries.contract.schedule import schedule_record
from miniseries.contract.store import Store, StoreAccessDenied, open_store
from miniseries_trainer import checkpoint, masking, precision, provenance, val_trace
from miniseries_trainer.evaluate import core_score, load_validation, validation_bpb
from miniseries_trainer.flags import build_parser, denied, fail, refuse_env_overrides
from miniseries_trainer.inputs import open_inputs
from miniseries_trainer.loader import StepLoader
from miniseries_trainer.metrics import TrainerMetrics
from miniseries_trainer.model import build_model, shape_from_flags
from miniseries_trainer.optim import build_optimizers, lr_multiplier, set_schedule
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
from miniseries_trainer.runtime import set_numerics, start_runtime, stop_runtime
from miniseries_trainer.step import train_step
from miniseries_trainer.throughput import Throughput, peak_flops_per_device

__all__ = ["build_parser", "main", "train_step"]


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
    parser = build_parser()
    args = parser.parse_args(argv)
    refuse_env_overrides(parser, args)
    if problem := val_trace.check_flags(args.val_every, args.val_tokens):
        fail(problem)

    # -- where we run: the device and torchrun's ranks
    rt = start_runtime(args.device, args.precision)
    device, rank, world, master = rt.device, rt.rank, rt.world, rt.master
    print0 = rt.print0
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

    # -- store, tokenizer, data and CORE bundle are checked before any compute is spent
    inputs = open_inputs(args, rank)
    store, tokenizer = inputs.store, inputs.tokenizer
    run = RunLayout(args.namespace, args.sweep, args.run)
    set_numerics(rt, seed=args.seed, deterministic=args.deterministic)

    # -- model
    model = build_model(shape, device)
    if world > 1:  # same seed => same init, but make "identical on every rank" a fact, not a hope
        for p in model.parameters():
            dist.broadcast(p.data, src=0)
    params = sum(p.numel() for p in model.parameters())
    assert params == shape.total_params, (params, shape.total_params)
    compile_ = precision.resolve_compile(args.compile, device)
    forward = precision.prepare(model, precision=rt.precision, compile=compile_)  # fp8 layers, torch.compile
    print0(
        f"model: depth {shape.depth}, width {shape.n_embd}, heads {shape.n_head}, params {params:,}, "
        f"{shape.flops_per_token:.3e} FLOPs/token; {steps} steps x {hz.total_batch_tokens:,} tokens "
        f"({hz.grad_accum_steps} micro-batches x {world} ranks); {rt.precision}"
        + (", compiled" if compile_ else ", eager")
    )

    # -- optimizer
    optimizers = build_optimizers(
        model,
        total_batch_tokens=hz.total_batch_tokens,
        matrix_lr=args.matrix_lr,
        embedding_lr=args.embedding_lr,
        unembedding_lr=args.unembedding_lr,
        weight_decay=args.weight_decay,
        compile=compile_,
    )

    # -- resume
    # only this sweep's checkpoints (and those of the sweeps it adopted), never a deleted predecessor's
    owners = lineage(store, SweepLayout(args.namespace, args.sweep), args.sweep_uid) if args.sweep_uid else None
    ckpt = resume(args.resume, store, run, model, optimizers, args.init_from, owners)
    start_step, loader_state, loss_curve = 0, None, []
    start = RunStart(kind=START_FRESH, sweep_uid=args.sweep_uid)
    val_rows: list[dict[str, Any]] = []
    if ckpt is not None:
        start_step, loader_state = ckpt.step, ckpt.state["loader"]
        loss_curve = ckpt.state.get("loss_curve", [])
        val_rows = val_trace.read_rows(ckpt.state)
        own = join_uri(store.uri, run.checkpoint(ckpt.step))
        trunk = args.init_from and ckpt.step not in checkpoint.checkpoint_steps(store, run, owners)
        source = args.init_from if trunk else own
        start = RunStart(kind=START_TRUNK if trunk else START_CHECKPOINT, step=ckpt.step, uri=source,
                         sweep_uid=args.sweep_uid)  # fmt: skip
        print0(f"resumed from {source} at step {ckpt.step}")
    elif args.resume != "never" and master and store.exists(run.results):
        print0("note: results.json exists but no checkpoint: training from scratch")

    # -- data
    loader = StepLoader(
        inputs.data_store,
        inputs.train_keys,
        tokenizer,
        batch_size=args.device_batch_size,
        seq_len=args.seq_len,
        rank=rank,
        world_size=world,
        grad_accum=hz.grad_accum_steps,
        state=loader_state,
    )
    batches = ((x.to(device, non_blocking=True), y.to(device, non_blocking=True)) for x, y in loader)
    # the val-bpb trace: a small fixed slice evaluated every few steps (val_trace.py)
    vtrace = val_trace.build(args, steps=steps, total_batch_tokens=hz.total_batch_tokens, world_size=world, rank=rank,
                             data_store=inputs.data_store, store=store, run=run, val_key=inputs.val_key,
                             tokenizer=tokenizer, device=device, flops_per_token=float(shape.flops_per_token),
                             master=master)  # fmt: skip
    vtrace.rows = val_rows

    # -- metrics and progress
    metrics = TrainerMetrics(
        namespace=args.namespace,
        sweep=args.sweep,
        depth=args.depth,
        run=args.run,
        rank=rank,
        local_rank=rt.local_rank,
        port=args.metrics_port,
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
    store.on_change = inputs.data_store.on_change = metrics.set_store_health
    metrics.set_store_health(inputs.health)
    speed = Throughput(
        hz.total_batch_tokens, shape.flops_per_token, peak_flops_per_device(device, args.peak_flops), world
    )
    progress = ProgressWriter(store, run, args.depth, hz, steps, rt, metrics, args.sweep_uid)

    def save(step: int) -> str:
        state: dict[str, Any] = {
            "loader": loader.state_dict(),
            "rng": checkpoint.rng_state(),
            "step": step,
            "loss_curve": loss_curve,
            "val_curve": vtrace.rows,
        }
        prefix = checkpoint.save_checkpoint(
            store,
            run,
            step,
            step * hz.total_batch_tokens,
            model=model,
            optimizers=optimizers,
            state=state,
            keep=args.keep_checkpoints,
            pinned=args.keep_steps,
            sweep_uid=args.sweep_uid,
        )
        if master:
            write_json_lines(store, run.loss_curve, loss_curve)
        return prefix

    def preempted(done: int, saved: bool) -> int:
        """A stop signal on some rank: checkpoint the finished step (unless it just was), say so, exit."""
        t_stop = time.perf_counter()
        if done == start_step:  # stopped while starting: the newest checkpoint (if any) is still the newest
            print0(f"preempted by {stop.describe()} before step {done + 1}/{steps}: nothing to save; "
                   f"exit {EXIT_PREEMPTED}", flush=True)  # fmt: skip
        else:
            prefix = run.checkpoint(done) if saved else save(done)
            progress.write(done, loss_value, lrm, speed, PROGRESS_PREEMPTED)
            print0(f"preempted by {stop.describe()} after step {done}/{steps}: checkpoint {join_uri(store.uri, prefix)} "
                   f"written in {time.perf_counter() - t_stop:.2f} s; exit {EXIT_PREEMPTED}, resume with --resume=auto",
                   flush=True)  # fmt: skip
        stop_runtime(rt)
        return EXIT_PREEMPTED

    # -- training loop
    last_progress, last_curve = 0.0, time.time()
    loss_value = lrm = None
    if start_step < steps and stop.agreed(world, device):  # stopped while starting: nothing new to save
        return preempted(start_step, saved=False)
    for step in range(start_step, steps):
        t0 = time.perf_counter()
        lrm = lr_multiplier(step, steps, args.warmup_steps, args.warmdown_ratio,
                            shape=args.warmdown_shape, warmdown_steps=args.warmdown_steps)  # fmt: skip
        set_schedule(optimizers, step, lrm)
        loss = train_step(forward, model, optimizers, batches, hz.grad_accum_steps, rt.autocast, world)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t0
        done = step + 1
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            fail(f"loss became {loss_value} at step {done}; lower the learning rates or check the data")
        speed.add(step - start_step, dt)
        tokens = done * hz.total_batch_tokens

        # log, metrics
        if done % args.log_every == 0 or done == steps:
            loss_curve.append(loss_point(done, tokens, shape, loss_value, lrm))
            tps, mfu = speed.tokens_per_second, speed.mfu
            print0(
                f"step {done:6d}/{steps} | loss {loss_value:.4f} | lrm {lrm:.3f} | {dt * 1000:.0f} ms"
                + (f" | {tps:,.0f} tok/s | MFU {mfu:.2%}" if tps and mfu is not None else "")
            )
        record_step(metrics, step=done, tokens=tokens, shape=shape, loss=loss_value, lr=lrm, speed=speed, device=device)

        if vtrace.due(done, steps):
            print0(f"step {done:6d}/{steps} | val bpb {vtrace.evaluate(model, forward, done, rt.autocast):.4f} (slice)")

        # checkpoint, progress.json, loss curve
        periodic = bool(args.checkpoint_every) and done % args.checkpoint_every == 0
        checkpointed = (periodic or done in args.keep_steps) and done < steps
        if checkpointed:
            save(done)
        if time.time() - last_progress > PROGRESS_EVERY_SECONDS:
            progress.write(done, loss_value, lrm, speed, "training")
            last_progress = time.time()
        # the curve is advisory too: it is rewritten whole at every checkpoint and at the end
        curve_due = master and time.time() - last_curve > LOSS_CURVE_EVERY_SECONDS
        if curve_due and store.write_advisory(run.loss_curve, json_lines(loss_curve)):
            last_curve = time.time()
        # a SIGTERM on any rank: every rank stops here, after the same step (one int all-reduced)
        if stop.agreed(world, device):
            return preempted(done, saved=checkpointed)
    final_checkpoint = save(steps) if start_step < steps or ckpt is None else run.checkpoint(steps)
    stop.raise_on_signal()  # from here on nothing is left to save: a stop signal exits at once

    # -- evaluate
    progress.write(steps, loss_value, lrm, speed, "evaluating")
    model.eval()
    val_bpb = None
    if args.eval_tokens:
        val = load_validation(
            inputs.data_store,
            inputs.val_key,
            tokenizer,
            rt,
            batch_size=args.device_batch_size,
            seq_len=args.seq_len,
            eval_tokens=args.eval_tokens,
        )
        val_bpb = validation_bpb(forward, val, tokenizer, rt)
        val_tokens = len(val) * world * args.device_batch_size * args.seq_len
        print0(f"validation: {val_bpb:.4f} bits per byte over {val_tokens:,} tokens")
        metrics.set("miniseries_val_bpb", val_bpb)
    core = None
    if inputs.bundle is not None:
        core = core_score(
            model,
            tokenizer,
            inputs.bundle,
            rt,
            max_per_task=args.core_max_per_task,
            max_seq_len=args.seq_len,
            allow_partial=args.core_allow_partial,
        )
        if core.core is not None:
            metrics.set("miniseries_core_score", core.core)

    # -- save results
    if master:
        results = run_results(
            args,
            shape=shape,
            hz=hz,
            steps=steps,
            runtime=rt,
            wall_seconds=time.time() - t_start,
            speed=speed,
            loss_curve=loss_curve,
            val_bpb=val_bpb,
            core=core,
            checkpoint_uri=join_uri(store.uri, final_checkpoint),
            loss_curve_key=run.loss_curve,
            val_curve_key=run.val_curve if vtrace.rows else None,
            val_trace=val_trace.summary(vtrace, speed.seconds),
            provenance=provenance.collect(
                device=device,
                precision=rt.precision,
                world_size=world,
                data_uri=args.data,
                data_store=inputs.data_store,
                tokenizer_uri=args.tokenizer,
                tokenizer_store=open_store(args.tokenizer),
                seed=args.seed,
                lr_schedule=schedule_record(
                    steps,
                    args.warmup_steps,
                    args.warmdown_ratio,
                    shape=args.warmdown_shape,
                    warmdown_steps=args.warmdown_steps,
                ),
            ),
        )
        results.sweep_uid, results.start, results.hyperparameters = args.sweep_uid, start, hyperparameters(args)
        if args.sweep_uid and (why := fenced(store, SweepLayout(args.namespace, args.sweep), args.sweep_uid)):
            # the sweep was deleted (or re-created) while this run finished: its results are no one's
            print0(f"not writing results: {why}; exit {EXIT_FENCED}", flush=True)
            stop_runtime(rt)
            return EXIT_FENCED
        write_json_lines(store, run.loss_curve, loss_curve)
        if vtrace.rows:  # whole again at the end, as the loss curve (a restarted run rewrites both)
            vtrace.write()
        store.write_bytes(run.results, results.to_json())
        progress.write(steps, loss_value, lrm, speed, "done")
        print0(f"results: {join_uri(store.uri, run.results)}")
        health = inputs.health
        if health.errors:
            print0(f"store: {health.errors} failed operations, {health.waited_seconds:.1f} s waited on retries, "
                   f"longest outage {health.longest_outage_seconds:.1f} s")  # fmt: skip
    stop_runtime(rt)
    return 0


if __name__ == "__main__":
    status = main()
    if status == EXIT_PREEMPTED:
        # Everything is written (the store's writes are synchronous): skip the interpreter's teardown
        # of torch, pyarrow and the rest, seconds of the pod's grace period (measured: ~5 s of 5.2).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
