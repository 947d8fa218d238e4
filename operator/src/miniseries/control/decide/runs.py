"""Each run's next state, and the actions it calls for: the rules of reconcile.py, per run.

`decide_runs` is pure: the accepted spec, its plan, the jobs that exist, the store's word on
each run, the runs' previous status and the time in; every run's new RunStatus and the
actions (create, delete, suspend, events) out. The operator calls it through `decide`; the
local runner calls it directly, with its own trainer process as the only job.

It reads as two steps. Each run takes one transition from its previous state and what is seen of
it (run_transitions.TRANSITIONS, one named function per case); then the runs that wait for a launch
start in plan order while slots are free (launches.py). What it produces is in run_decision.py.
"""

from __future__ import annotations

from datetime import datetime

from miniseries.api.spec import PlannedRun, PlanStatus, RunStatus, ScalingSweepSpec
from miniseries.control.decide.launches import Slots, launch, slots_held, trunk_checkpoint_gone, trunk_checkpoint_ready
from miniseries.control.decide.observations import (
    DEFAULT_RETRY,
    ObservedJob,
    ObservedWorkload,
    RetryTimings,
    RunObservation,
    TokenizerState,
)
from miniseries.control.decide.pod_troubles import PodTrouble
from miniseries.control.decide.run_decision import (
    NO_RESULTS,
    PREEMPTED,
    RESULTS_CORRUPT,
    STORE_ACCESS_DENIED,
    TRUNK_CHECKPOINT_MISSING,
    WAITING_FOR_TRUNK,
    Actions,
    Event,
    RunDecision,
)
from miniseries.control.decide.run_queue import QUEUE_STATES
from miniseries.control.decide.run_reasons import preempted_exit, store_denied
from miniseries.control.decide.run_seen import Seen
from miniseries.control.decide.run_transitions import After, launch_recorded, step

__all__ = [  # the names callers import from here, wherever they live now
    "NO_RESULTS",
    "PREEMPTED",
    "QUEUE_STATES",
    "RESULTS_CORRUPT",
    "STORE_ACCESS_DENIED",
    "TRUNK_CHECKPOINT_MISSING",
    "WAITING_FOR_TRUNK",
    "Actions",
    "Event",
    "RunDecision",
    "Slots",
    "decide_runs",
    "launch_recorded",
    "preempted_exit",
    "slots_held",
    "store_denied",
    "trunk_checkpoint_gone",
    "trunk_checkpoint_ready",
]


def decide_runs(
    spec: ScalingSweepSpec,
    sweep: str,
    plan: PlanStatus,
    jobs: list[ObservedJob],
    store: dict[str, RunObservation],
    previous: list[RunStatus],
    tokenizer: TokenizerState,
    now: datetime,
    slots: Slots | None = None,
    pods: dict[str, PodTrouble] | None = None,
    workloads: dict[str, ObservedWorkload] | None = None,
    retry: RetryTimings = DEFAULT_RETRY,
) -> RunDecision:
    """Each run's state from what exists, then the launches that fit the free slots, in plan order.

    `pods` (observations.Observations.pods) says why a run's pod cannot start or how its container
    failed; the local runner has no pods and passes none. `workloads` (Observations.workloads) is
    Kueue's word on each queued run's job when spec.resources.queueName is set (see run_queue.py);
    the local runner passes none and queues nothing."""
    kueue = spec.resources.queue_name is not None and workloads is not None
    by_run = _newest_job_per_run(jobs)
    prev = {r.name: r for r in previous}
    d = RunDecision()
    waiting: dict[After, list[Seen]] = {after: [] for after in After}
    for run in plan.runs:
        job, obs = by_run.get(run.name), store.get(run.name, RunObservation())
        rs = _status_from_what_exists(run, prev.get(run.name), obs, job, spec.cost.price_per_gpu_hour)
        trouble, workload = (pods or {}).get(run.name), (workloads or {}).get(run.name)
        seen = Seen(run, rs, prev.get(run.name), obs, job, trouble, workload, spec, kueue, now, retry)
        waiting[step(seen, d)].append(seen)
        d.runs.append(rs)

    d.create_tokenizer = tokenizer is TokenizerState.Missing
    if spec.suspend or tokenizer not in (TokenizerState.NotNeeded, TokenizerState.Ready):
        return d  # nothing launches while the sweep is suspended or its tokenizer is not ready
    recreate = waiting[After.CREATE_AGAIN]
    held = slots_held(plan, jobs, [s.rs for s in recreate], frozenset(d.delete))
    d.create.extend((s.run, s.rs.attempts) for s in recreate)
    launch(waiting[After.MAY_LAUNCH], held, slots or Slots.of(spec), sweep, store, d)
    return d


def _newest_job_per_run(jobs: list[ObservedJob]) -> dict[str, ObservedJob]:
    """One name per run, so at most one job per run; keep the newest attempt if an older, still
    terminating one is listed alongside."""
    by_run: dict[str, ObservedJob] = {}
    for j in jobs:
        if j.run not in by_run or j.attempt > by_run[j.run].attempt:
            by_run[j.run] = j
    return by_run


def _status_from_what_exists(
    run: PlannedRun, old: RunStatus | None, obs: RunObservation, job: ObservedJob | None, price: float
) -> RunStatus:
    """The run's new status before its transition: the plan's figures, what status recorded (attempts,
    checkpoint, reason, retry time, preemptions), the store's progress and results, its job's name."""
    rs = RunStatus(
        name=run.name,
        depth=run.depth,
        budget_flops=run.budget_flops,
        steps=run.steps,
        attempts=old.attempts if old else 0,
        checkpoint_uri=old.checkpoint_uri if old else None,
        reason=old.reason if old else None,
        retry_at=old.retry_at if old else None,
        message=old.message if old else None,
        preemptions=old.preemptions if old else 0,
    )
    _from_store(rs, obs, price)
    if job is not None:
        rs.job_name = job.name
        rs.attempts = max(rs.attempts, job.attempt)
    return rs


def _from_store(rs: RunStatus, obs: RunObservation, price: float) -> None:
    if obs.checkpoint_uri:
        rs.checkpoint_uri = obs.checkpoint_uri
    if obs.progress is not None:
        p = obs.progress
        rs.step, rs.steps, rs.tokens, rs.loss = p.step, p.steps, p.tokens, p.loss
        rs.gpu_seconds = p.elapsed_seconds * p.world_size
    if obs.results is not None:
        r = obs.results
        rs.step, rs.steps, rs.tokens = r.steps, r.steps, r.tokens
        rs.loss = r.loss.final
        rs.val_bpb = r.val_bpb
        rs.core = r.core.core if r.core is not None else None
        rs.gpu_seconds = r.gpu_seconds
        rs.results_uri = obs.results_uri
        if r.checkpoint_uri:
            rs.checkpoint_uri = r.checkpoint_uri
    rs.cost_usd = round(rs.gpu_seconds / 3600.0 * price, 4)
