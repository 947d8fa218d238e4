"""The validation curve: val bits-per-byte on a small fixed slice every N steps while training.

Cleaner than the training loss (no batch noise from new data, the same tokens every time),
so the report can plot it against tokens and FLOPs and the forecast can read the run's own
loss-to-bpb ratio. Cheap by construction: by default the slice is sized so that the
evaluations cost `VAL_TRACE_BUDGET` of the training compute (an evaluation token is a forward
pass, about a third of a training token's forward + backward), `VAL_TRACE_POINTS` times per
run. `--val-every` and `--val-tokens` override either; `--val-tokens 0` turns it off.

The rows are kept in the checkpoint state (a resumed run continues its curve) and written,
whole and atomically, to `RunLayout.val_curve` after each evaluation.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from miniseries.contract.layout import RunLayout
from miniseries.contract.store import Store

#: Evaluations along a run, by default.
VAL_TRACE_POINTS = 20
#: Fraction of the training compute the default slice may cost (the issue's ceiling is 2%).
VAL_TRACE_BUDGET = 0.01
#: Forward-only FLOPs per token relative to a training token (forward + backward = 3 forwards).
EVAL_COST_PER_TOKEN = 1 / 3


@dataclass(frozen=True)
class ValTracePlan:
    every: int  # steps between evaluations (0: off)
    tokens: int  # tokens in the fixed slice, over all ranks
    batch_size: int  # sequences per micro-batch per rank
    batches: int  # micro-batches per rank

    @property
    def enabled(self) -> bool:
        return self.every > 0 and self.batches > 0

    def expected_overhead(self, total_batch_tokens: int) -> float:
        """Evaluation compute as a fraction of training compute (forward-only counted as 1/3)."""
        if not self.enabled:
            return 0.0
        return EVAL_COST_PER_TOKEN * self.tokens / (self.every * total_batch_tokens)


def plan_val_trace(
    *,
    steps: int,
    total_batch_tokens: int,
    seq_len: int,
    device_batch_size: int,
    world_size: int,
    eval_tokens: int = 0,
    every: int | None = None,
    tokens: int | None = None,
) -> ValTracePlan:
    """How often and on how many tokens; None means the default from the plan (see the module doc)."""
    if every == 0 or tokens == 0:
        return ValTracePlan(every=0, tokens=0, batch_size=0, batches=0)
    default_every = every is None
    if every is None:
        every = max(1, steps // VAL_TRACE_POINTS)
    if tokens is None:
        # the budget's worth, but at least one full micro-batch on every rank (a slice of a
        # sequence or two is neither representative nor efficient to evaluate) and at most
        # --eval-tokens (the final evaluation's size)
        tokens = int(VAL_TRACE_BUDGET / EVAL_COST_PER_TOKEN * every * total_batch_tokens)
        tokens = max(tokens, device_batch_size * seq_len * world_size)
        if eval_tokens:
            tokens = min(tokens, max(eval_tokens, seq_len * world_size))
        if default_every:  # a minimum slice larger than the budget: evaluate less often instead
            every = max(every, math.ceil(EVAL_COST_PER_TOKEN * tokens / (VAL_TRACE_BUDGET * total_batch_tokens)))
    # whole sequences, the same number on every rank, at least one
    per_rank = max(1, tokens // (seq_len * world_size))
    batch_size = min(device_batch_size, per_rank)
    batches = per_rank // batch_size
    return ValTracePlan(
        every=every, tokens=batches * batch_size * seq_len * world_size, batch_size=batch_size, batches=batches
    )


@dataclass
class ValTrace:
    """Evaluates the fixed slice when due, keeps the rows, writes them (rank 0)."""

    plan: ValTracePlan
    store: Store
    run: RunLayout
    slice: list[tuple[torch.Tensor, torch.Tensor]]
    token_bytes: torch.Tensor
    device: torch.device
    flops_per_token: float
    total_batch_tokens: int
    master: bool
    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0  # wall time spent evaluating, for the overhead

    def due(self, done: int, steps: int) -> bool:
        if not self.plan.enabled or done >= steps:  # the final step gets the full evaluation instead
            return False
        return done % self.plan.every == 0 and not any(r["step"] == done for r in self.rows)

    def evaluate(
        self,
        model: torch.nn.Module,
        forward: Callable[..., torch.Tensor],
        done: int,
        autocast: Callable[[], Any],
    ) -> float:
        """val bpb of the slice at step `done`; the model is back in training mode afterwards."""
        from miniseries_trainer.bpb import evaluate_bpb

        t0 = time.perf_counter()
        model.eval()
        try:
            with autocast():
                bpb = evaluate_bpb(forward, self.slice, self.token_bytes, self.device)
        finally:
            model.train()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds += time.perf_counter() - t0
        tokens = done * self.total_batch_tokens
        self.rows.append(
            {
                "step": done,
                "tokens": tokens,
                "flops": float(self.flops_per_token) * tokens,
                "val_bpb": bpb,
                "slice_tokens": self.plan.tokens,
            }
        )
        if self.master:
            self.write()
        return bpb

    def write(self) -> None:
        self.store.write_bytes(self.run.val_curve, "".join(json.dumps(r) + "\n" for r in self.rows).encode())


def read_rows(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows a checkpoint carried (none from a checkpoint written before the val trace existed)."""
    return list(state.get("val_curve", []))


def add_flags(g: Any) -> None:
    """--val-every and --val-tokens on the trainer's "checkpoints and evaluation" group."""
    g.add_argument(
        "--val-every",
        type=int,
        default=None,
        help=f"evaluate val bpb on a fixed slice every N steps (default: steps // {VAL_TRACE_POINTS}, or less often "
        f"when one micro-batch per rank would cost more than {VAL_TRACE_BUDGET * 100:g}%% of training; 0: off)",
    )
    g.add_argument(
        "--val-tokens",
        type=int,
        default=None,
        help=f"tokens in that slice (default: sized to cost {VAL_TRACE_BUDGET * 100:g}%% of training; 0: off)",
    )


def check_flags(every: int | None, tokens: int | None) -> str | None:
    """The error for a negative --val-every/--val-tokens, or None."""
    for flag, value in (("--val-every", every), ("--val-tokens", tokens)):
        if value is not None and value < 0:
            return f"{flag} must be >= 0 (0 turns the validation curve off), got {value}"
    return None


def build(
    args: Any,
    *,
    steps: int,
    total_batch_tokens: int,
    world_size: int,
    rank: int,
    data_store: Store,
    store: Store,
    run: RunLayout,
    val_key: str,
    tokenizer: Any,
    device: torch.device,
    flops_per_token: float,
    master: bool,
) -> ValTrace:
    """The run's ValTrace from its flags; the slice is read now: its micro-batches spread evenly over the
    tokens the final evaluation reads (--eval-tokens), so the trace and the final point measure the same text."""
    from miniseries_trainer.loader import validation_batches

    plan = plan_val_trace(
        steps=steps,
        total_batch_tokens=total_batch_tokens,
        seq_len=args.seq_len,
        device_batch_size=args.device_batch_size,
        world_size=world_size,
        every=args.val_every,
        tokens=args.val_tokens,
        eval_tokens=args.eval_tokens,
    )
    batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    if plan.enabled:
        batches = validation_batches(
            data_store,
            val_key,
            tokenizer,
            batch_size=plan.batch_size,
            seq_len=args.seq_len,
            eval_tokens=max(args.eval_tokens or 0, plan.batches * plan.batch_size * args.seq_len * world_size),
            rank=rank,
            world_size=world_size,
            keep=plan.batches,
        )[: plan.batches]
        n = torch.tensor(len(batches))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(n, op=torch.distributed.ReduceOp.MIN)  # the same collectives on every rank
        batches = [(x.to(device), y.to(device)) for x, y in batches]
    return ValTrace(
        plan=plan,
        store=store,
        run=run,
        slice=batches,
        token_bytes=tokenizer.token_bytes(),
        device=device,
        flops_per_token=flops_per_token,
        total_batch_tokens=total_batch_tokens,
        master=master,
    )


def summary(trace: ValTrace, train_seconds: float) -> dict[str, Any]:
    """What results.json records about the curve: plan, points and the measured overhead."""
    return {
        "every": trace.plan.every,
        "slice_tokens": trace.plan.tokens,
        "points": len(trace.rows),
        "eval_seconds": trace.seconds,
        "expected_overhead": trace.plan.expected_overhead(trace.total_batch_tokens),
        "measured_overhead": trace.seconds / train_seconds if train_seconds > 0 else None,
    }
