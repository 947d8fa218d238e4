"""The report's rows: one per planned run, from what the trainer wrote (results.json, loss_curve.jsonl).

A run without results, with unreadable results or with a NaN loss is a row all the same, with
its status (missing, invalid) and a line for the report's Problems: never a silently smaller table.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from miniseries.api.spec import ScalingSweepSpec
from miniseries.contract.doc import json_ready
from miniseries.contract.layout import SweepLayout
from miniseries.contract.results import ResultsError, RunResults, read_loss_curve, read_results
from miniseries.contract.store import Store, StoreError
from miniseries.plan.planner import make_plan


@dataclass
class RunRow:
    name: str
    depth: int
    budget_flops: float | None
    status: str  # finished | missing | invalid
    params: float | None = None
    tokens: float | None = None
    flops: float | None = None
    final_loss: float | None = None
    val_bpb: float | None = None
    core: float | None = None
    core_partial: bool = False
    mfu: float | None = None  # as the trainer reported it
    gpu_seconds: float | None = None
    wall_seconds: float | None = None  # the attempt's wall time as the trainer measured it (results.json)
    achieved_flops_per_device: float | None = None  # training FLOP/s per GPU (or CPU process), measured
    warmup_tokens: float = 0.0
    curve: list[tuple[float, float, float]] = field(default_factory=list)  # (tokens, flops, loss)
    message: str | None = None
    role: str | None = None  # wsd mode: trunk, branch or twin (PlannedRun.role)
    wsd_budget: float | None = None  # wsd mode: the point's tokens per parameter

    @property
    def usable(self) -> bool:
        return self.status == "finished" and self.final_loss is not None

    def table(self) -> dict[str, Any]:
        """The row as report.json's `runs` entry: every field but the curve, plus D/N."""
        fields = {k: v for k, v in self.__dict__.items() if k != "curve"}
        ratio = self.tokens / self.params if self.tokens and self.params else None
        return json_ready(fields | {"tokens_per_param": ratio})  # type: ignore[no-any-return]


def _row_from_results(row: RunRow, res: RunResults, curve: list[dict[str, float]], warmup_steps: int) -> RunRow:
    row.status = "finished"
    row.params = float(res.params.get("scaling") or res.params.get("total") or 0) or None
    row.tokens, row.flops = float(res.tokens), float(res.flops)
    row.final_loss = res.loss.final
    row.val_bpb, row.mfu, row.gpu_seconds = res.val_bpb, res.mfu, res.gpu_seconds
    row.wall_seconds = res.wall_seconds or None
    world = max(1, res.world_size)
    if res.tokens_per_second and res.tokens_per_second > 0:
        row.achieved_flops_per_device = res.tokens_per_second * res.flops_per_token / world
    elif res.wall_seconds > 0:
        row.achieved_flops_per_device = res.flops / res.wall_seconds / world
    row.warmup_tokens = float(warmup_steps * res.total_batch_tokens)
    if res.core is not None:
        row.core, row.core_partial = res.core.core, res.core.partial
        if res.core.partial:
            row.message = f"CORE partial (missing {', '.join(res.core.missing_tasks) or 'tasks'}): not used in fits"
    for p in curve:
        t, loss = p.get("tokens"), p.get("loss")
        if t is None or loss is None:
            continue
        f = p.get("flops", float(t) * res.flops_per_token)
        row.curve.append((float(t), float(f), float(loss)))
    if row.final_loss is None or not math.isfinite(row.final_loss):
        row.status, row.message = (
            "invalid",
            f"final loss is {row.final_loss} (missing or NaN): the run diverged or logged nothing",
        )
        row.final_loss = None
    return row


def gather_runs(store: Store, layout: SweepLayout, spec: ScalingSweepSpec | None) -> tuple[list[RunRow], list[str]]:
    """One row per planned run (or per results.json found, without a spec)."""
    problems: list[str] = []
    planned: list[tuple[str, int, float | None]] = []
    warmup = spec.training.warmup_steps if spec else 0
    wsd: dict[str, tuple[str | None, float | None]] = {}
    if spec is not None:
        plan = make_plan(spec).runs
        planned = [(r.name, r.depth, r.budget_flops) for r in plan]
        wsd = {r.name: (r.role, r.wsd_budget) for r in plan}
    else:
        for key in store.list(layout.root):
            parts = key[len(layout.root) :].split("/")
            if len(parts) == 2 and parts[1] == "results.json":
                planned.append((parts[0], 0, None))
    rows = []
    for name, depth, budget in planned:
        row = RunRow(name, depth, budget, "missing")
        row.role, row.wsd_budget = wsd.get(name, (None, None))
        run = layout.run(name)
        try:
            res = read_results(store, run)
        except (ResultsError, StoreError) as e:
            row.status, row.message = "invalid", str(e)
            problems.append(f"{name}: {e}")
            rows.append(row)
            continue
        if res is None:
            row.message = "no results.json yet (not finished)"
            problems.append(f"{name}: no results (not finished); left out of the fits")
            rows.append(row)
            continue
        row.depth, row.budget_flops = res.depth, res.budget_flops
        try:
            curve = read_loss_curve(store, run)
        except (json.JSONDecodeError, StoreError) as e:
            curve = []
            problems.append(f"{name}: loss curve unreadable ({e}); plotted without it")
        _row_from_results(row, res, curve, warmup)
        if row.status == "invalid":
            problems.append(f"{name}: {row.message}; left out of the fits")
        rows.append(row)
    rows.sort(key=lambda r: (r.budget_flops or 0.0, r.depth, r.name))
    return rows, problems
