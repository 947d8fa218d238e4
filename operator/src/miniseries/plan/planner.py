"""Sweep spec -> an ordered list of runs, packed onto the nodes' GPUs, with time and cost.

The plan is pure arithmetic on top of `shapes`: no cluster, no torch. The
operator writes it to `status.plan` before anything runs, `miniseries plan`
prints it, and the local runner executes it, so all three agree by construction.

Packing: runs are started longest first (LPT list scheduling, within 4/3 of the
optimal makespan) on the lowest free GPU indices of the first node they fit on,
never more than `parallelism` at once and never more GPUs than the nodes have
(`resources.nodes` of `nodeGpus` each). A run of more than `nodeGpus` GPUs holds
`gpusPerRun / nodeGpus` whole nodes. Time per run is
FLOPs / (GPUs x peak FLOP/s x MFU), the MFU per depth from `contract.mfu` (or the spec's
`resources.assumedMfu` for all depths): an estimate, replaced by measured
GPU-seconds in `status.runs` as runs finish. A run's GPU-hours and cost count every GPU
it holds, on all its nodes; the plan's total cost counts whole nodes for as long as the
sweep holds them (node_use.py), idle GPUs included.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any

from miniseries.api.errors import FieldProblem, SpecError
from miniseries.api.grammar import MAX_INT64  # status numbers are JSON; integers are int64 on the API server
from miniseries.api.policy import DEFAULT_MAX_GPU_HOURS_WITHOUT_BUDGET  # the limit without spec.cost.budgetUsd
from miniseries.api.spec import Mode, PlannedRun, PlanStatus, ScalingSweepSpec
from miniseries.contract import shapes
from miniseries.plan import wsd_branches as wsd
from miniseries.plan.node_use import node_use
from miniseries.plan.run_shape import (
    assumed_mfu_fields,
    batch_tokens,
    run_hours,
    run_name,
    run_shape_fields,
    shape_for,
)


@dataclass(frozen=True)
class _RunDraft:
    name: str
    depth: int
    budget_flops: float | None
    shape: shapes.ModelShape
    horizon: shapes.Horizon

    @property
    def flops(self) -> float:
        return shapes.training_flops(self.shape, self.horizon.training_tokens)


def _draft(spec: ScalingSweepSpec, depth: int, budget: float | None) -> _RunDraft:
    shape = shape_for(spec, depth)
    if budget is None:
        target = shapes.tokens_for_ratio(shape, spec.training.tokens_per_param)
    else:
        target = shapes.tokens_for_budget(shape, budget)
    batch = batch_tokens(spec, target)
    h = shapes.horizon(
        target,
        batch,
        device_batch_size=spec.training.device_batch_size,
        sequence_len=spec.model.sequence_length,
        world_size=spec.resources.gpus_per_run,
    )
    if h.steps < 1:
        where = "spec.training.tokensPerParam" if budget is None else "spec.training.isoflopBudgets"
        what = f"ratio {spec.training.tokens_per_param}" if budget is None else f"budget {budget:.3g} FLOPs"
        raise SpecError.one(
            where,
            f"d{depth} at {what} gives {target} tokens, less than one step of {batch} tokens; "
            "raise it, lower the batch (training.totalBatchTokens/deviceBatchSize) or drop the depth",
        )
    return _RunDraft(run_name(depth, budget), depth, budget, shape, h)


def _drafts(spec: ScalingSweepSpec) -> list[_RunDraft]:
    depths = spec.depth_list()
    if spec.training.mode is Mode.ratio:
        return [_draft(spec, d, None) for d in depths]
    budgets = spec.training.isoflop_budgets or []
    return [_draft(spec, d, b) for b in budgets for d in depths]


def _place(spec: ScalingSweepSpec, free: list[list[int]]) -> list[tuple[int, int]] | None:
    """(node, GPU) pairs for the next run, or None when it does not fit now: a run of up to nodeGpus
    GPUs takes the lowest free GPUs of the first node that has enough; a larger one takes the
    lowest whole free nodes."""
    r = spec.resources
    if r.nodes_per_run > 1:
        whole = [k for k, gpus in enumerate(free) if len(gpus) == r.node_gpus]
        if len(whole) < r.nodes_per_run:
            return None
        return [(k, g) for k in whole[: r.nodes_per_run] for g in free[k]]
    for k, gpus in enumerate(free):
        if len(gpus) >= r.gpus_per_run:
            return [(k, g) for g in gpus[: r.gpus_per_run]]
    return None


def _schedule(spec: ScalingSweepSpec, drafts: list[_RunDraft]) -> list[PlannedRun]:
    """Longest-first list scheduling onto the nodes' GPU indices, within parallelism."""
    r = spec.resources
    gpus = r.gpus_per_run
    price = spec.cost.price_per_gpu_hour
    order = sorted(drafts, key=lambda d: (-d.flops, d.depth, d.budget_flops or 0.0))
    free = [list(range(r.node_gpus)) for _ in range(r.nodes)]  # per node, its free GPU indices
    running: list[tuple[float, int, list[tuple[int, int]]]] = []  # (end time, seq, (node, GPU) pairs)
    now, wave, last_start = 0.0, -1, None
    planned: list[PlannedRun] = []
    for seq, d in enumerate(order):
        while True:
            held = _place(spec, free) if len(running) < r.max_runs_in_flight else None
            if held is not None:
                break
            # the spec's validators make one run fit the empty nodes, so something is running here
            end, _, done = heapq.heappop(running)
            now = max(now, end)
            for k, g in done:
                free[k].append(g)
            free = [sorted(gs) for gs in free]
        for k, g in held:
            free[k].remove(g)
        slots = [k * r.node_gpus + g for k, g in held]
        hours = run_hours(spec, d.flops, d.depth, gpus)
        heapq.heappush(running, (now + hours, seq, held))
        if now != last_start:
            wave, last_start = wave + 1, now
        planned.append(
            PlannedRun(
                **run_shape_fields(d),
                **assumed_mfu_fields(spec, d.depth),
                budget_flops=d.budget_flops,
                gpus=gpus,
                gpu_slots=slots,
                nodes=r.nodes_per_run,
                wave=wave,
                est_start_hours=now,
                est_hours=hours,
                est_gpu_hours=hours * gpus,
                est_cost_usd=hours * gpus * price,
            )
        )
    return planned


# Which spec field to name when a planned number is out of range: what scales it.
# None: the field that sets the runs' tokens in the sweep's mode (_TOKENS_FIELD).
_DRIVERS = {
    "flops": None,
    "tokens": None,
    "steps": None,
    "hours": "spec.resources.peakFlopsPerGpu",
    "cost": "spec.cost.pricePerGpuHour",
}
_TOKENS_FIELD = {
    Mode.ratio: "spec.training.tokensPerParam",
    Mode.isoflop: "spec.training.isoflopBudgets",
    Mode.wsd: "spec.training.wsd.budgets",
}


def _out_of_range(doc: Any, path: str = "status.plan") -> list[tuple[str, Any]]:
    """(path, value) of every number status could not hold: not finite, or an int beyond int64."""
    if isinstance(doc, dict):
        return [bad for k, v in doc.items() for bad in _out_of_range(v, f"{path}.{k}")]
    if isinstance(doc, list):
        return [bad for i, v in enumerate(doc) for bad in _out_of_range(v, f"{path}[{i}]")]
    if isinstance(doc, float) and not math.isfinite(doc):
        return [(path, doc)]
    if isinstance(doc, int) and not isinstance(doc, bool) and abs(doc) > MAX_INT64:
        return [(path, doc)]
    return []


def _check_writable(spec: ScalingSweepSpec, plan: PlanStatus) -> None:
    bad = _out_of_range(plan.model_dump(by_alias=True, mode="python"))
    if not bad:
        return
    values = {
        "spec.training.isoflopBudgets": spec.training.isoflop_budgets,
        "spec.training.tokensPerParam": spec.training.tokens_per_param,
        "spec.training.wsd.budgets": spec.training.wsd.budgets if spec.training.wsd else None,
        "spec.resources.peakFlopsPerGpu": spec.resources.peak_flops_per_gpu,
        "spec.cost.pricePerGpuHour": spec.cost.price_per_gpu_hour,
    }
    by_field: dict[str, list[tuple[str, Any]]] = {}
    for path, value in bad:
        leaf = path.rsplit(".", 1)[-1].lower()
        driver = next((d for k, d in _DRIVERS.items() if k in leaf), None)
        by_field.setdefault(driver or _TOKENS_FIELD[spec.training.mode], []).append((path, value))
    raise SpecError(
        [
            FieldProblem(
                field,
                f"{values[field]!r} makes {paths[0][0]} {paths[0][1]:.3g}"
                + (f" (and {len(paths) - 1} more numbers)" if len(paths) > 1 else "")
                + f", more than status can hold (finite numbers, integers up to {MAX_INT64:.3g}); "
                "lower it or drop depths",
            )
            for field, paths in by_field.items()
        ]
    )


def _check_warmup(spec: ScalingSweepSpec, runs: list[PlannedRun]) -> None:
    """A warmup longer than a run keeps its learning rate below its target for the whole run (100000
    warmup steps on a run of 951 peak at 1%): refused naming the runs. (A warmdown is a fraction of
    each run's steps, or in wsd mode each branch's own cooldown, so it never outlasts its run.)"""
    warmup = spec.training.warmup_steps
    short = sorted((r for r in runs if r.steps < warmup), key=lambda r: r.steps)
    if not short:
        return
    named = ", ".join(f"{r.name} ({r.steps:,} steps)" for r in short[:6]) + (" ..." if len(short) > 6 else "")
    raise SpecError.one(
        "spec.training.warmupSteps",
        f"{warmup:,} is longer than run{'s' if len(short) > 1 else ''} {named}: the learning rate would peak at "
        f"{short[0].steps / warmup:.0%} of its target; allowed: at most {short[0].steps:,} (the shortest run's steps)",
    )


def make_plan(spec: ScalingSweepSpec, *, max_gpu_hours_without_budget: float | None = None) -> PlanStatus:
    """The whole plan, or a SpecError naming every field that makes it impossible.

    A spec without cost.budgetUsd may plan at most `max_gpu_hours_without_budget` GPU-hours
    (default DEFAULT_MAX_GPU_HOURS_WITHOUT_BUDGET; the operator passes its own setting).
    """
    if max_gpu_hours_without_budget is None:
        max_gpu_hours_without_budget = DEFAULT_MAX_GPU_HOURS_WITHOUT_BUDGET
    independent_gpu_hours = None
    if spec.training.mode is Mode.wsd:  # trunks and branches (plan/wsd_branches.py)
        wsd_drafts = wsd.drafts(spec)
        runs = wsd.schedule(spec, wsd_drafts)
        independent_gpu_hours = wsd.independent_gpu_hours(spec, wsd_drafts)
    else:
        runs = _schedule(spec, _drafts(spec))
    price = spec.cost.price_per_gpu_hour
    nodes = node_use(spec, runs)
    total_cost = nodes.held_gpu_hours * price
    plan = PlanStatus(
        runs=runs,
        scaling_params_convention=shapes.SCALING_PARAMS_CONVENTION,
        total_flops=sum(r.flops for r in runs),
        total_gpu_hours=sum(r.est_gpu_hours for r in runs),
        total_cost_usd=total_cost,
        est_wall_hours=max(r.est_start_hours + r.est_hours for r in runs),
        max_runs_in_flight=spec.resources.max_runs_in_flight,
        nodes=spec.resources.nodes,
        node_gpu_hours=nodes.held_gpu_hours,
        idle_gpu_hours=nodes.idle_gpu_hours,
        used_gpu_cost_usd=sum(r.est_cost_usd for r in runs),
        idle_gpus_per_node=nodes.idle_gpus_per_node,
        idle_gpus=nodes.note,
    )
    if independent_gpu_hours is not None:
        plan.independent_gpu_hours = independent_gpu_hours
        plan.independent_cost_usd = independent_gpu_hours * spec.cost.price_per_gpu_hour
    _check_writable(spec, plan)
    budget = spec.cost.budget_usd
    if budget is not None and total_cost > budget:
        raise SpecError.one(
            "spec.cost.budgetUsd",
            f"the plan is estimated at ${total_cost:,.2f} ({nodes.held_gpu_hours:,.1f} GPU-hours of whole nodes at "
            f"${price}/GPU-hour), over the budget cap of ${budget:,.2f}; "
            "raise budgetUsd, drop depths or lower tokensPerParam",
        )
    if budget is None and nodes.held_gpu_hours > max_gpu_hours_without_budget:
        raise SpecError.one(
            "spec.cost.budgetUsd",
            f"not set, and the plan needs {nodes.held_gpu_hours:,.1f} GPU-hours (${total_cost:,.2f} at "
            f"${price}/GPU-hour), over the {max_gpu_hours_without_budget:,.0f} GPU-hours this operator allows a "
            f"sweep without a budget; set spec.cost.budgetUsd (at least {max(total_cost, 0.01):,.2f}) to run it, "
            "or drop depths or lower tokensPerParam",
        )
    _check_warmup(spec, runs)
    return plan
