"""The plan of a warmup-stable-decay sweep (spec.training.mode wsd): trunks, branches, twins.

Per depth, one trunk trains at constant learning rate (after the warmup) up to the largest
budget's cooldown start; one branch per budget starts from the trunk's checkpoint at its own
cooldown start and cools down ((1-sqrt), contract.schedule) to its end. A branch is the point
(N, D = budget x N) of the sweep, bought for its cooldown steps only. Optional twins train one
depth's points from scratch with the same batch and schedule, to validate the branches.
A twin draws its own initial weights (seed `training.seed + TWIN_SEED_OFFSET`): with the
trunk's seed it would repeat its branch's arithmetic exactly (a branch resumes bit for bit,
tests/trainer/test_wsd.py), so the comparison could only ever read 0 and validate nothing.

What a normal run derives from its length is fixed per trunk, so that every branch of a depth
is the same run up to its cooldown start: the batch (nanochat's rule at the largest budget,
or spec.training.totalBatchTokens), the warmup (spec.training.warmupSteps) and the weight
decay (the trainer's, constant). Pure arithmetic, like plan.py; the plan schedules a branch
no earlier than its trunk is estimated to reach the branch's start step.
"""

from __future__ import annotations

from dataclasses import dataclass

from miniseries.api.errors import SpecError
from miniseries.api.spec import PlannedRun, ScalingSweepSpec
from miniseries.contract import shapes
from miniseries.contract.schedule import Shape, cooldown_steps
from miniseries.plan.run_shape import batch_tokens, run_hours, run_shape_fields, shape_for

TRUNK, BRANCH, TWIN = "trunk", "branch", "twin"
#: A twin's seed is the sweep's plus this: an independent run, not a replay of its branch.
TWIN_SEED_OFFSET = 1
#: Run ids become `<sweep>-<run>` job names: 50 characters of sweep name leave 12.
MAX_RUN_NAME = 12


def run_seed(seed: int, role: str | None) -> int:
    """The trainer's --seed for a run of this role: the sweep's, except a twin's own."""
    return seed + TWIN_SEED_OFFSET if role == TWIN else seed


def warmdown_of(role: str | None, cooldown_steps: int | None) -> tuple[Shape, int | None]:
    """(shape, steps) of a planned run's warmdown: a wsd run's (1-sqrt) cooldown over its cooldown steps
    (a trunk: none), else the spec's linear warmdownRatio (None). The trainer's flags and the forecast's
    schedule both come from here."""
    return ("sqrt", cooldown_steps or 0) if role is not None else ("linear", None)


def _budget_id(budget: float) -> str:
    return f"{budget:g}".replace(".", "p").replace("+", "")


def trunk_name(depth: int) -> str:
    return f"d{depth}-trunk"


def branch_name(depth: int, budget: float) -> str:
    return f"d{depth}-b{_budget_id(budget)}"


def twin_name(depth: int, budget: float) -> str:
    return f"d{depth}-i{_budget_id(budget)}"


@dataclass(frozen=True)
class WsdDraft:
    name: str
    depth: int
    role: str
    budget: float | None  # tokens per scaling parameter (None: the trunk)
    shape: shapes.ModelShape
    horizon: shapes.Horizon  # the whole point: steps from 0 to its end
    start_step: int  # where this run's own training starts (a branch: the trunk's step)
    cooldown: int  # (1-sqrt) cooldown steps at the end (the trunk: 0)
    trunk: str | None = None
    keep_steps: tuple[int, ...] = ()

    @property
    def own_steps(self) -> int:
        return self.horizon.steps - self.start_step

    @property
    def flops(self) -> float:
        """FLOPs this run spends itself (a branch: its cooldown only)."""
        return shapes.training_flops(self.shape, self.own_steps * self.horizon.total_batch_tokens)

    @property
    def point_flops(self) -> float:
        """FLOPs of the same point trained as one independent run."""
        return shapes.training_flops(self.shape, self.horizon.training_tokens)


def _horizon(spec: ScalingSweepSpec, target: int, batch: int) -> shapes.Horizon:
    return shapes.horizon(
        target,
        batch,
        device_batch_size=spec.training.device_batch_size,
        sequence_len=spec.model.sequence_length,
        world_size=spec.resources.gpus_per_run,
    )


def depth_drafts(spec: ScalingSweepSpec, depth: int) -> list[WsdDraft]:
    """One depth's trunk, branches (and twins), or a SpecError naming the budget that cannot be one."""

    t = spec.training
    assert t.wsd is not None
    wsd = t.wsd
    field = "spec.training.wsd.budgets"
    shape = shape_for(spec, depth)
    batch = batch_tokens(spec, shapes.tokens_for_ratio(shape, wsd.budgets[-1]))
    points: list[tuple[float, shapes.Horizon, int]] = []
    for b in wsd.budgets:
        h = _horizon(spec, shapes.tokens_for_ratio(shape, b), batch)
        cool = cooldown_steps(h.steps, wsd.cooldown_fraction) if h.steps else 0
        start = h.steps - cool
        if start < max(t.warmup_steps, 1):
            raise SpecError.one(
                field,
                f"budget {b:g} tokens/param gives d{depth} {h.steps} steps of {batch} tokens, whose cooldown "
                f"(cooldownFraction {wsd.cooldown_fraction:g}: {cool} steps) starts at step {start}, before the "
                f"warmup ends (warmupSteps {t.warmup_steps}, and a branch needs at least one trunk step); raise "
                "the budget, lower the batch (training.totalBatchTokens/deviceBatchSize) or warmupSteps, or drop "
                "the depth",
            )
        if points and points[-1][1].steps == h.steps:
            raise SpecError.one(
                field,
                f"budgets {points[-1][0]:g} and {b:g} give d{depth} the same {h.steps} steps of {batch} tokens "
                "(the same point twice); space the budgets further apart or lower the batch",
            )
        points.append((b, h, start))
    trunk_steps = points[-1][2]
    keep = tuple(sorted({s for _, _, s in points}))
    trunk_h = _horizon(spec, trunk_steps * batch, batch)
    drafts = [WsdDraft(trunk_name(depth), depth, TRUNK, None, shape, trunk_h, 0, 0, keep_steps=keep)]
    for b, h, start in points:
        drafts.append(WsdDraft(branch_name(depth, b), depth, BRANCH, b, shape, h, start, h.steps - start,
                               trunk=trunk_name(depth)))  # fmt: skip
    if wsd.twin_depth == depth:
        for b, h, start in points:
            if b in (wsd.twin_budgets or []):
                drafts.append(WsdDraft(twin_name(depth, b), depth, TWIN, b, shape, h, 0, h.steps - start))
    for d in drafts:
        if len(d.name) > MAX_RUN_NAME:
            raise SpecError.one(field, f"budget {d.budget:g} makes the run id {d.name!r} longer than "
                                f"{MAX_RUN_NAME} characters (job names); use fewer digits")  # fmt: skip
    return drafts


def drafts(spec: ScalingSweepSpec) -> list[WsdDraft]:
    return [d for depth in spec.depth_list() for d in depth_drafts(spec, depth)]


def _hours(spec: ScalingSweepSpec, d: WsdDraft, flops: float) -> float:

    return run_hours(spec, flops, d.depth, spec.resources.gpus_per_run)


def schedule(spec: ScalingSweepSpec, runs: list[WsdDraft]) -> list[PlannedRun]:
    """List scheduling with release times, as the operator launches: in priority order (longest
    first), a run that is ready and fits starts, one that is ready and does not fit holds the
    queue, a branch whose trunk has not reached its start step yet is passed over."""
    r = spec.resources
    gpus, price = r.gpus_per_run, spec.cost.price_per_gpu_hour
    order = sorted(runs, key=lambda d: (-d.flops, d.depth, d.name))
    started: dict[str, tuple[float, float]] = {}  # name -> (start, hours)
    by_name = {d.name: d for d in runs}
    free = list(range(r.node_gpus))
    running: list[tuple[float, list[int]]] = []
    now, wave, last_start = 0.0, -1, None
    planned: list[PlannedRun] = []

    def release(d: WsdDraft) -> float | None:
        if d.trunk is None:
            return 0.0
        if d.trunk not in started:
            return None
        t0, hours = started[d.trunk]
        return t0 + hours * d.start_step / by_name[d.trunk].horizon.steps

    while len(started) < len(runs):
        for d in order:
            if d.name in started:
                continue
            at = release(d)
            if at is None or at > now:
                continue
            if len(running) >= r.max_runs_in_flight or len(free) < gpus:
                break
            slots, free = free[:gpus], free[gpus:]
            hours = _hours(spec, d, d.flops)
            started[d.name] = (now, hours)
            running.append((now + hours, slots))
            if now != last_start:
                wave, last_start = wave + 1, now
            planned.append(_planned(d, slots, wave, now, hours, gpus, price, spec.resources.mfu_for(d.depth)))
        pending = [x for x in (release(d) for d in runs if d.name not in started) if x is not None and x > now]
        ends = [end for end, _ in running]
        if not pending and not ends:
            break
        now = min([*pending, *ends])
        for item in [x for x in running if x[0] <= now]:
            running.remove(item)
            free = sorted(free + item[1])
    return planned


def _planned(
    d: WsdDraft, slots: list[int], wave: int, start: float, hours: float, gpus: int, price: float, mfu: float
) -> PlannedRun:

    return PlannedRun(
        **run_shape_fields(d),
        assumed_mfu=mfu,
        gpus=gpus,
        gpu_slots=slots,
        wave=wave,
        est_start_hours=start,
        est_hours=hours,
        est_gpu_hours=hours * gpus,
        est_cost_usd=hours * gpus * price,
        role=d.role,
        wsd_budget=d.budget,
        trunk=d.trunk,
        start_step=d.start_step if d.role == BRANCH else None,
        cooldown_steps=d.cooldown,
        keep_steps=list(d.keep_steps) if d.role == TRUNK else None,
    )


def independent_gpu_hours(spec: ScalingSweepSpec, runs: list[WsdDraft]) -> float:
    """GPU-hours of the branches' points trained as independent runs (the twins are extra either way)."""
    return sum(_hours(spec, d, d.point_flops) * spec.resources.gpus_per_run for d in runs if d.role == BRANCH)
