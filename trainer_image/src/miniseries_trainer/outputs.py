"""What a run writes for others to read: progress.json while it trains, the loss curve, the step's
Prometheus metrics, and results.json at the end (the schemas are in miniseries.contract.results).

Rank 0 writes the files. progress.json and the periodic loss curve are advisory (one try: during
a store outage training goes on and the next one is written later); the whole loss curve is
rewritten at every checkpoint and at the end, and results.json is written last.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

import torch

from miniseries.contract.layout import RunLayout

# the loss curve's rows, summary and file format are the contract's (the trainer kit writes the same)
from miniseries.contract.results import (
    CoreResult,
    Progress,
    Provenance,
    RunResults,
    json_lines,
    loss_summary,
)
from miniseries.contract.results import loss_point as loss_point  # train.py's import: one row format, the contract's
from miniseries.contract.shapes import Horizon, ModelShape, training_flops
from miniseries.contract.store import Store
from miniseries_trainer.metrics import TrainerMetrics
from miniseries_trainer.runtime import Runtime, peak_memory_bytes
from miniseries_trainer.throughput import Throughput

PROGRESS_EVERY_SECONDS = 5.0
#: The whole loss curve is rewritten (atomically) this often and at every checkpoint.
LOSS_CURVE_EVERY_SECONDS = 30.0


def write_json_lines(store: Store, key: str, rows: list[dict[str, Any]]) -> None:
    store.write_bytes(key, json_lines(rows))


def record_step(
    metrics: TrainerMetrics,
    *,
    step: int,
    tokens: int,
    shape: ModelShape,
    loss: float,
    lr: float,
    speed: Throughput,
    device: torch.device,
) -> None:
    """The step's gauges and counters (a rank other than 0 serves only its peak memory)."""
    metrics.set("miniseries_train_loss", loss)
    metrics.set("miniseries_train_step", step)
    metrics.set("miniseries_train_tokens_total", tokens)
    metrics.set("miniseries_train_flops_total", training_flops(shape, tokens))
    metrics.set("miniseries_train_lr", lr)
    if speed.tokens_per_second:
        metrics.set("miniseries_train_tokens_per_second", speed.tokens_per_second)
        metrics.set("miniseries_train_mfu", speed.mfu or 0.0)
    metrics.set("miniseries_peak_memory_bytes", peak_memory_bytes(device))


@dataclass
class ProgressWriter:
    """progress.json of one run, and the ETA gauge that goes with it."""

    store: Store
    run: RunLayout
    depth: int
    hz: Horizon
    steps: int
    runtime: Runtime
    metrics: TrainerMetrics
    sweep_uid: str | None = None

    def write(self, step: int, loss: float | None, lr: float | None, speed: Throughput, state: str) -> None:
        if not self.runtime.master:
            return
        tps = speed.tokens_per_second
        eta = (self.steps - step) * self.hz.total_batch_tokens / tps if tps else None
        progress = Progress(
            sweep=self.run.sweep,
            run=self.run.run,
            depth=self.depth,
            step=step,
            steps=self.steps,
            tokens=step * self.hz.total_batch_tokens,
            loss=loss,
            lr=lr,
            tokens_per_second=tps,
            mfu=speed.mfu,
            elapsed_seconds=speed.seconds,
            eta_seconds=eta,
            world_size=self.runtime.world,
            state=state,  # training | evaluating | done | preempted (contract.preemption)
            updated_at=time.time(),
            sweep_uid=self.sweep_uid,
        )
        self.store.write_advisory(self.run.progress, progress.to_json())
        if eta is not None:
            self.metrics.set("miniseries_train_eta_seconds", eta)


def run_results(
    args: argparse.Namespace,
    *,
    shape: ModelShape,
    hz: Horizon,
    steps: int,
    runtime: Runtime,
    wall_seconds: float,
    speed: Throughput,
    loss_curve: list[dict[str, Any]],
    val_bpb: float | None,
    core: CoreResult | None,
    checkpoint_uri: str,
    loss_curve_key: str,
    val_curve_key: str | None = None,
    val_trace: dict[str, Any] | None = None,
    provenance: Provenance | None = None,
) -> RunResults:
    tokens = steps * hz.total_batch_tokens
    return RunResults(
        sweep=args.sweep,
        run=args.run,
        depth=args.depth,
        budget_flops=args.budget_flops,
        shape=shape.to_dict(),
        params=shape.param_counts(),
        target_tokens=args.target_tokens,
        tokens=tokens,
        steps=steps,
        total_batch_tokens=hz.total_batch_tokens,
        flops_per_token=shape.flops_per_token,
        flops=training_flops(shape, tokens),
        wall_seconds=wall_seconds,
        gpu_seconds=wall_seconds * runtime.world if runtime.device.type == "cuda" else 0.0,
        world_size=runtime.world,
        device=runtime.device_name(),
        mfu=speed.mfu,
        tokens_per_second=speed.tokens_per_second,
        loss=loss_summary(loss_curve),
        val_bpb=val_bpb,
        core=core,
        checkpoint_uri=checkpoint_uri,
        loss_curve_key=loss_curve_key,
        val_curve_key=val_curve_key,
        val_trace=val_trace,
        provenance=provenance,
        created_at=time.time(),
    )


#: Flags that say where a run reads and writes, not how it trains (kept out of `hyperparameters`).
NOT_HYPERPARAMETERS = frozenset({"store", "data", "tokenizer", "eval_bundle", "metrics_port", "namespace", "sweep",
                                 "run", "sweep_uid", "init_from", "resume", "device"})  # fmt: skip


def hyperparameters(args: argparse.Namespace) -> dict[str, Any]:
    """Every parsed flag that shapes what is trained (learning rates, batch, schedule, seed, precision, ...),
    as the trainer used it: results.json says how its run was trained, not only what the plan meant."""
    out: dict[str, Any] = {}
    for name, value in sorted(vars(args).items()):
        if name in NOT_HYPERPARAMETERS:
            continue
        out[name] = list(value) if isinstance(value, (tuple, set, frozenset)) else value
    return out
