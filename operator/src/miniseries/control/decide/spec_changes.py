"""Which spec the operator reconciles: the given one, or the accepted one when a change is refused.

The accepted spec is kept in the store (accepted.py). A change that would make a started run
a different experiment is refused: the operator keeps reconciling the accepted spec (only
`suspend` is taken from the new one) and says why on the sweep. Pure: the handler reads the
stored spec and writes the new one when `Accepted.save` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from miniseries.api.errors import SpecError
from miniseries.api.spec import PlanStatus, RunState, ScalingSweepSpec, ScalingSweepStatus
from miniseries.control.decide.observations import ObservedJob
from miniseries.plan.planner import make_plan

# runs would mix incomparable points in one fit. spec.trainer too: another program's runs are another
# experiment (its image may change, as resources.image may: a fixed build of the same trainer).
FROZEN_FIELDS = ("model", "training", "data", "trainer")
#: Keys under the frozen sections that say what the operator does, not what a run trains.
MUTABLE_KEYS = ("spec.training.forecast.", "spec.trainer.image")

# What a started run trains, as planned: a change to any of these (through any spec field,
# e.g. resources.gpusPerRun moving the automatic batch) makes its checkpoints and results
# a different experiment.
PLANNED_RUN_FIELDS = (
    "n_layer", "n_embd", "n_head", "training_tokens", "total_batch_tokens", "grad_accum_steps", "steps", "gpus",
)  # fmt: skip


def _flat(prefix: str, obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(f"{prefix}.{k}", v))
        return out
    return {prefix: obj}


def refused_changes(
    old: ScalingSweepSpec,
    new: ScalingSweepSpec,
    started: set[str],
    new_runs: set[str],
    old_plan: PlanStatus | None = None,
    new_plan: PlanStatus | None = None,
) -> list[str]:
    """Why `new` may not replace `old` once the runs in `started` exist (empty: allowed).

    Depths may be added; depths that started may not be removed; the model,
    training and data dials are frozen once any run started; and no other change
    (resources.gpusPerRun, say) may alter what a started run trains per the plans.
    """
    if not started:
        return []
    problems = []
    if old_plan is not None and new_plan is not None:
        before = {r.name: r for r in old_plan.runs}
        for r in new_plan.runs:
            if r.name in started and r.name in before:
                b = before[r.name]
                diffs = [f"{f} {getattr(b, f)} -> {getattr(r, f)}" for f in PLANNED_RUN_FIELDS
                         if getattr(b, f) != getattr(r, f)]  # fmt: skip
                if diffs:
                    problems.append(
                        f"spec: run {r.name} already started and would train differently ({', '.join(diffs)}); "
                        "revert the change (resources.gpusPerRun and training fields shape each run) "
                        "or create a new sweep"
                    )
    a, b = old.wire(), new.wire()
    for section in FROZEN_FIELDS:
        fa, fb = _flat(f"spec.{section}", a.get(section, {})), _flat(f"spec.{section}", b.get(section, {}))
        for key in sorted(set(fa) | set(fb)):
            if fa.get(key) != fb.get(key) and not key.startswith(MUTABLE_KEYS):
                problems.append(
                    f"{key} changed from {fa.get(key)!r} to {fb.get(key)!r} after runs started "
                    f"({', '.join(sorted(started))}); create a new sweep instead"
                )
    removed = sorted(started - new_runs)
    if removed:
        problems.append(f"spec.depths: runs already started cannot be removed: {', '.join(removed)}")
    return problems


@dataclass(frozen=True)
class Accepted:
    """The spec to reconcile, its plan, why the given spec was refused (empty: accepted), and
    whether the given spec is new to the store (write it there)."""

    spec: ScalingSweepSpec
    plan: PlanStatus
    refused: list[str]
    save: bool


def accept(
    stored: ScalingSweepSpec | None,
    given: ScalingSweepSpec,
    given_plan: PlanStatus,
    jobs: list[ObservedJob],
    previous: ScalingSweepStatus,
) -> Accepted:
    """Decide between the stored (accepted) spec and the given one. The given spec's plan is made
    once by the caller; the stored spec's plan only when the two differ (to compare what the
    started runs would train)."""
    if stored is None:
        return Accepted(given, given_plan, [], save=True)
    if stored.wire() == given.wire():
        return Accepted(given, given_plan, [], save=False)
    # Started: a job exists for it, or status saw one (its job may be gone since).
    started = {j.run for j in jobs}
    started |= {r.name for r in previous.runs if r.attempts > 0 or r.state is RunState.Succeeded}
    try:
        stored_plan: PlanStatus | None = make_plan(stored, max_gpu_hours_without_budget=float("inf"))
    except SpecError:
        stored_plan = None
    problems = refused_changes(stored, given, started, {r.name for r in given_plan.runs}, stored_plan, given_plan)
    if not problems:
        return Accepted(given, given_plan, [], save=True)
    if stored_plan is None:  # the accepted spec no longer plans (this operator's rules changed): say so
        make_plan(stored, max_gpu_hours_without_budget=float("inf"))
    assert stored_plan is not None
    return Accepted(stored.model_copy(update={"suspend": given.suspend}), stored_plan, problems, save=False)
