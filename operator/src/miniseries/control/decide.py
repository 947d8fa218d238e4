"""What the operator should do next: pure functions of plain data, no I/O.

`decide` takes the accepted spec, its plan, the PyTorchJobs that exist, what the
store says about each run, the previous status and the time, and returns the
runs' new status and the actions to take. The kopf handlers only gather inputs
and carry out actions, so every rule below is unit-tested without a cluster, and
a restarted operator reaches the same decisions from what exists.

Rules:
- results.json in the store is the truth that a run finished.
- Never more GPUs in flight than nodeGpus, never more runs than parallelism;
  runs start in plan order as soon as a slot frees. What holds a slot is counted
  from the cluster, level-triggered (`slots_held`): every PyTorchJob of the sweep
  that is unfinished or being deleted (a failed one that is retried holds its slot
  until its foreground deletion has removed its pods), plus every launch recorded in status
  whose job is not visible yet (the handler records a launch under an optimistic
  lock on the sweep *before* creating the job, so two deciders can never both
  spend the same slot). The slot count never comes from a run's state in status.
- A failed attempt is retried while attempts <= retryLimit, after an exponential
  backoff; the failed job is deleted first (its name is reused, see jobs.py) and
  the retry resumes from the newest checkpoint (`--resume=auto`). Checkpoints
  are never deleted here.
- No run starts before the tokenizer exists when the sweep trains its own.
- A results.json that exists but cannot be read (`RunObservation.results_error`) is not a
  training failure: the run is evaluated again from its final checkpoint (the same attempt,
  outside retryLimit), once; if that one is unreadable too, or there is no checkpoint, the
  run fails with reason ResultsCorrupt and the message naming the object and the parse error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from miniseries.api.spec import (
    Condition,
    FitStatus,
    PlannedRun,
    PlanStatus,
    RunState,
    RunStatus,
    ScalingSweepSpec,
    ScalingSweepStatus,
    Totals,
)
from miniseries.contract.results import Progress, RunResults
from miniseries.control.jobs import job_name

RETRY_BASE_SECONDS = 30.0
RETRY_CAP_SECONDS = 600.0
RESULTS_CORRUPT = "ResultsCorrupt"


class JobPhase(StrEnum):
    Created = "Created"
    Running = "Running"
    Restarting = "Restarting"
    Suspended = "Suspended"
    Succeeded = "Succeeded"
    Failed = "Failed"


# The training-operator keeps old conditions in the list; the strongest True one wins.
_PHASE_ORDER = [
    JobPhase.Succeeded,
    JobPhase.Failed,
    JobPhase.Suspended,
    JobPhase.Restarting,
    JobPhase.Running,
    JobPhase.Created,
]


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str | None) -> datetime | None:
    if not s:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


@dataclass(frozen=True)
class ObservedJob:
    """A PyTorchJob as read from the API server, reduced to what decisions need."""

    name: str
    run: str
    attempt: int
    phase: JobPhase
    suspended: bool = False
    deleting: bool = False
    since: datetime | None = None
    reason: str = ""
    message: str = ""

    @property
    def active(self) -> bool:
        """Not finished: running, about to run, or suspended (so resuming never overcommits)."""
        return self.phase not in (JobPhase.Succeeded, JobPhase.Failed)


def job_phase(conditions: list[dict[str, Any]] | None) -> tuple[JobPhase, dict[str, Any] | None]:
    """A PyTorchJob's phase from its status.conditions (Created if it has none yet)."""
    true = {c.get("type"): c for c in conditions or [] if c.get("status") == "True"}
    for phase in _PHASE_ORDER:
        if phase.value in true:
            return phase, true[phase.value]
    return JobPhase.Created, None


def observe_job(obj: dict[str, Any]) -> ObservedJob:
    """Reduce a PyTorchJob object (a dict from the API) to an ObservedJob."""
    meta = obj.get("metadata", {})
    labels = meta.get("labels") or {}
    phase, cond = job_phase((obj.get("status") or {}).get("conditions"))
    try:
        attempt = int(labels.get("miniseries.dev/attempt", "1"))
    except ValueError:
        attempt = 1
    return ObservedJob(
        name=meta.get("name", ""),
        run=labels.get("miniseries.dev/run", ""),
        attempt=attempt,
        phase=phase,
        suspended=bool(((obj.get("spec") or {}).get("runPolicy") or {}).get("suspend")),
        deleting=bool(meta.get("deletionTimestamp")),
        since=parse_time((cond or {}).get("lastTransitionTime")),
        reason=(cond or {}).get("reason", "") or "",
        message=(cond or {}).get("message", "") or "",
    )


@dataclass(frozen=True)
class RunObservation:
    """What the store says about a run."""

    results: RunResults | None = None
    progress: Progress | None = None
    checkpoint_uri: str | None = None
    results_uri: str | None = None
    results_error: str | None = None  # results.json exists but does not parse: which object, what error


class TokenizerState(StrEnum):
    NotNeeded = "NotNeeded"  # spec.data.tokenizerUri given
    Ready = "Ready"  # manifest in the store
    Missing = "Missing"  # no job, no tokenizer: create the job
    Running = "Running"
    Failed = "Failed"


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: str = "Normal"


@dataclass
class Decision:
    runs: list[RunStatus]
    create: list[tuple[PlannedRun, int]] = field(default_factory=list)  # (run, attempt)
    delete: list[str] = field(default_factory=list)  # failed jobs, deleted before their retry
    suspend: dict[str, bool] = field(default_factory=dict)  # job -> runPolicy.suspend
    create_tokenizer: bool = False
    events: list[Event] = field(default_factory=list)


def backoff_seconds(attempts: int) -> float:
    """Wait before attempt `attempts + 1`: 30 s, 60 s, 120 s, ... capped at 10 min."""
    return min(RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0), RETRY_CAP_SECONDS)


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


def launch_recorded(old: RunStatus | None) -> bool:
    """Status says this attempt was launched and no job has been seen for it since."""
    return old is not None and old.state is RunState.Pending and old.attempts > 0 and bool(old.job_name)


def slots_held(
    plan: PlanStatus, jobs: list[ObservedJob], launching: list[RunStatus], retiring: frozenset[str] = frozenset()
) -> tuple[int, int]:
    """(runs in flight, GPUs in flight), counted from what exists in the cluster: every job
    that is not finished or is being deleted, every failed job about to be deleted for a
    retry (`retiring`: it holds its slot until its foreground deletion has removed its pods),
    and every launch recorded in status whose job is not visible yet. Whichever attempt or
    run a job belongs to (even one no longer in the plan), it counts: what exists holds GPUs."""
    gpus_of = {p.name: p.gpus for p in plan.runs}
    default = plan.runs[0].gpus if plan.runs else 0
    holding = [j for j in jobs if j.active or j.deleting or j.name in retiring]
    seen = {j.run for j in holding}
    pending = [r for r in launching if r.name not in seen]
    runs = len(holding) + len(pending)
    gpus = sum(gpus_of.get(j.run, default) for j in holding) + sum(gpus_of.get(r.name, default) for r in pending)
    return runs, gpus


def decide(
    spec: ScalingSweepSpec,
    sweep: str,
    plan: PlanStatus,
    jobs: list[ObservedJob],
    store: dict[str, RunObservation],
    previous: list[RunStatus],
    tokenizer: TokenizerState,
    now: datetime,
) -> Decision:
    by_run: dict[str, ObservedJob] = {}
    for j in jobs:
        # One name per run, so at most one job per run; keep the newest attempt if an
        # older, still-terminating one is listed alongside.
        if j.run not in by_run or j.attempt > by_run[j.run].attempt:
            by_run[j.run] = j
    prev = {r.name: r for r in previous}
    price = spec.cost.price_per_gpu_hour
    d = Decision(runs=[])
    candidates: list[tuple[PlannedRun, RunStatus]] = []
    launching: list[tuple[PlannedRun, RunStatus]] = []

    for run in plan.runs:
        old = prev.get(run.name)
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
        )
        obs = store.get(run.name, RunObservation())
        _from_store(rs, obs, price)
        job = by_run.get(run.name)
        if job is not None:
            rs.job_name = job.name
            rs.attempts = max(rs.attempts, job.attempt)

        if obs.results is not None:
            rs.state = RunState.Succeeded
            rs.retry_at = None
            if old is None or old.state is not RunState.Succeeded:
                d.events.append(Event("RunSucceeded", f"{run.name} finished: {rs.tokens} tokens, val bpb {rs.val_bpb}"))
        elif (
            obs.results_error is not None
            and not (job is not None and (job.active or job.phase is JobPhase.Failed))  # a failure is a failure
            and not (job is None and launch_recorded(old))
        ):
            _results_corrupt(run, rs, old, job, obs.results_error, d, candidates, now)
        elif job is not None and job.active:
            rs.state = {
                JobPhase.Created: RunState.Pending,
                JobPhase.Suspended: RunState.Suspended,
            }.get(job.phase, RunState.Running)
            if job.suspended != spec.suspend and not job.deleting:
                d.suspend[job.name] = spec.suspend
            if spec.suspend:
                rs.state = RunState.Suspended
        elif job is not None and (job.phase is JobPhase.Failed or job.phase is JobPhase.Succeeded):
            # Failed, or "succeeded" without a results.json (then the trainer did not finish its contract).
            reason = job.reason or ("NoResults" if job.phase is JobPhase.Succeeded else "Failed")
            message = job.message or (
                "job succeeded but wrote no results.json" if job.phase is JobPhase.Succeeded else "job failed"
            )
            if rs.attempts <= spec.retry_limit:
                rs.state = RunState.Retrying
                failed_at = job.since or now
                if rs.retry_at is None or old is None or old.state is not RunState.Retrying:
                    rs.retry_at = rfc3339(failed_at + timedelta(seconds=backoff_seconds(rs.attempts)))
                    d.events.append(
                        Event(
                            "RunRetrying",
                            f"{run.name} attempt {rs.attempts} failed ({reason}: {message}); retry "
                            f"{rs.attempts}/{spec.retry_limit} from checkpoint {rs.checkpoint_uri or '(none yet)'} "
                            f"at {rs.retry_at}",
                            "Warning",
                        )
                    )
                if not job.deleting:
                    d.delete.append(job.name)
            else:
                rs.state = RunState.Failed
                if old is None or old.state is not RunState.Failed:
                    d.events.append(
                        Event("RunFailed", f"{run.name} failed after {rs.attempts} attempts: {message}", "Warning")
                    )
            rs.reason, rs.message = reason, message[:500]
        elif old is not None and old.state in (RunState.Retrying, RunState.Failed):
            # The failed job is gone; the decision to retry (or not) was recorded in status.
            rs.state = old.state
            if rs.state is RunState.Retrying:
                candidates.append((run, rs))
        elif launch_recorded(old):
            # Recorded as launched, job not created yet (or the creator died in between):
            # it holds its slot, and the same attempt is created again (409 if it exists).
            assert old is not None
            rs.state, rs.attempts, rs.job_name = RunState.Pending, old.attempts, old.job_name
            launching.append((run, rs))
        else:
            rs.state = RunState.Pending
            candidates.append((run, rs))
        d.runs.append(rs)

    if tokenizer is TokenizerState.Missing:
        d.create_tokenizer = True
    if spec.suspend or tokenizer not in (TokenizerState.NotNeeded, TokenizerState.Ready):
        return d

    in_flight, gpus = slots_held(plan, jobs, [rs for _, rs in launching], frozenset(d.delete))
    for run, rs in launching:
        d.create.append((run, rs.attempts))
    limit = spec.resources.max_runs_in_flight
    for run, rs in candidates:
        if in_flight >= limit or gpus + run.gpus > spec.resources.node_gpus:
            break  # plan order: a later, smaller run never jumps the queue
        if rs.state is RunState.Retrying:
            retry_at = parse_time(rs.retry_at)
            if retry_at is not None and now < retry_at:
                continue  # backing off holds no slot
        if rs.state is RunState.Retrying and rs.reason == RESULTS_CORRUPT:
            rs.attempts = max(rs.attempts, 1)  # a re-evaluation: the same attempt, outside retryLimit
        else:
            rs.attempts += 1
        rs.state = RunState.Pending
        rs.retry_at = None
        rs.job_name = job_name(sweep, run.name)
        d.create.append((run, rs.attempts))
        in_flight += 1
        gpus += run.gpus
    return d


def _results_corrupt(
    run: PlannedRun,
    rs: RunStatus,
    old: RunStatus | None,
    job: ObservedJob | None,
    error: str,
    d: Decision,
    candidates: list[tuple[PlannedRun, RunStatus]],
    now: datetime,
) -> None:
    """The run trained to the end (results.json is written last) but its results cannot be read."""
    # The re-evaluation launched for this (Pending/Running with this reason) finished and
    # wrote an unreadable results.json again: do not loop.
    again = (
        job is not None
        and job.phase is JobPhase.Succeeded
        and old is not None
        and old.reason == RESULTS_CORRUPT
        and old.state in (RunState.Pending, RunState.Running)
    )
    rs.reason = RESULTS_CORRUPT
    if again or not rs.checkpoint_uri:
        why = "its re-evaluation wrote an unreadable results.json again" if again else "no checkpoint to evaluate from"
        rs.state, rs.retry_at = RunState.Failed, None
        rs.message = f"{error}; {why}"[:500]
        if old is None or old.state is not RunState.Failed:
            d.events.append(Event("RunFailed", f"{run.name} failed: {rs.message}", "Warning"))
        return
    rs.state = RunState.Retrying
    rs.message = (
        f"{error}; evaluating again from checkpoint {rs.checkpoint_uri} (the same attempt, not counted "
        "against retryLimit)"
    )[:500]
    if old is None or old.state is not RunState.Retrying or old.reason != RESULTS_CORRUPT:
        rs.retry_at = rfc3339(now)
        d.events.append(Event("RunResultsCorrupt", f"{run.name}: {rs.message}", "Warning"))
    if job is not None:
        if not job.deleting:
            d.delete.append(job.name)  # its name is reused by the re-evaluation
    else:
        candidates.append((run, rs))


def reflect_failed_jobs(
    status: ScalingSweepStatus, jobs: list[ObservedJob], retry_limit: int, now: datetime, generation: int | None
) -> ScalingSweepStatus:
    """What the jobs alone say, for a reconcile that cannot read the store: a run whose job
    failed is no longer shown Running, and Degraded says so. Nothing is decided here (no
    retry time, no launch): the next reconcile that reaches the store does that."""
    newest: dict[str, ObservedJob] = {}
    for j in jobs:
        if j.run not in newest or j.attempt > newest[j.run].attempt:
            newest[j.run] = j
    s = status.model_copy(deep=True)
    for rs in s.runs:
        job = newest.get(rs.name)
        if job is None or job.phase is not JobPhase.Failed or rs.state not in (RunState.Pending, RunState.Running):
            continue
        rs.attempts = max(rs.attempts, job.attempt)
        rs.state = RunState.Retrying if rs.attempts <= retry_limit else RunState.Failed
        rs.reason, rs.message = job.reason or "Failed", (job.message or "job failed")[:500]
    s.totals = totals(s.runs)
    s.phase = phase_of(s.runs, False, s.fit) if s.phase not in ("Suspended", "Invalid") else s.phase
    failed = [r.name for r in s.runs if r.state is RunState.Failed]
    retrying = [r.name for r in s.runs if r.state is RunState.Retrying]
    if failed or retrying:
        reason, names = ("RunsFailed", failed) if failed else ("RunsRetrying", retrying)
        what = "failed after retries" if failed else "retrying"
        s.conditions = set_condition(s.conditions, "Degraded", True, reason, f"{what}: {', '.join(names)}", now,
                                     generation)  # fmt: skip
    return s


# ---------------------------------------------------------------- status


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: bool,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """Upsert a condition; lastTransitionTime only moves when the status flips."""
    value = "True" if status else "False"
    out = []
    found = False
    for c in conditions:
        if c.type == type_:
            found = True
            ltt = c.last_transition_time if c.status == value else rfc3339(now)
            c = Condition(
                type=type_,
                status=value,
                reason=reason,
                message=message,
                last_transition_time=ltt,
                observed_generation=generation,
            )
        out.append(c)
    if not found:
        out.append(
            Condition(
                type=type_,
                status=value,
                reason=reason,
                message=message,
                last_transition_time=rfc3339(now),
                observed_generation=generation,
            )
        )
    return out


def totals(runs: list[RunStatus]) -> Totals:
    gpu_seconds = sum(r.gpu_seconds for r in runs)
    return Totals(
        runs=len(runs),
        runs_done=sum(r.state is RunState.Succeeded for r in runs),
        runs_failed=sum(r.state is RunState.Failed for r in runs),
        tokens=sum(r.tokens for r in runs),
        gpu_hours=round(gpu_seconds / 3600.0, 4),
        cost_usd=round(sum(r.cost_usd for r in runs), 2),
    )


def finished(runs: list[RunStatus]) -> bool:
    """Every run reached a final state (nothing will run again)."""
    return bool(runs) and all(r.state in (RunState.Succeeded, RunState.Failed) for r in runs)


#: Phases in which nothing moves without a spec change or a job event: no polling.
QUIET_PHASES = frozenset({"Succeeded", "Failed", "Degraded", "Invalid", "Suspended"})


# Ready=False reasons that a change outside the sweep's spec fixes (an annotation or a Secret's
# label is no spec update, so no on_update handler fires for it): keep polling those sweeps.
FIXED_OUTSIDE_THE_SWEEP = frozenset({
    "AdmissionDenied",
    "StoreOwnedByAnotherSweep",
    "StorePrefixNotEmpty",
    "StoreInsideAnotherSweep",
    "StoreLayoutOutdated",
    "StoreManifestUnreadable",
    "StoreClaimRaced",
})  # fmt: skip


def needs_polling(status: dict[str, Any]) -> bool:
    """Whether the store-polling timer should run for a sweep with this (wire) status.

    Runs in flight write progress and results only to the store, the tokenizer Job is seen
    through the store, a retry waits for its backoff time and a failed fit is tried again:
    all of those need the timer. A finished sweep (Succeeded, Failed, or Degraded with its fit),
    an invalid or suspended one does not: a spec change reconciles it (on_update), and so does
    an event of one of its jobs. A sweep refused by the admission policy or refused its store
    key is polled, because what fixes it happens outside the sweep (labelling a Secret, running
    `miniseries store migrate`, deleting the other sweep, annotating this one to adopt).
    """
    phase = status.get("phase")
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    if ready.get("reason") in FIXED_OUTSIDE_THE_SWEEP:
        return True
    if phase == "Degraded":  # finished with failures: only a missing fit is still to do
        return status.get("fit") is None and bool((status.get("totals") or {}).get("runsDone"))
    return phase not in QUIET_PHASES


def phase_of(runs: list[RunStatus], suspended: bool, fit: FitStatus | None) -> str:
    t = totals(runs)
    if finished(runs):
        if t.runs_done == 0:
            return "Failed"
        if t.runs_failed:
            return "Degraded"
        return "Succeeded" if fit is not None else "Fitting"
    if suspended:
        return "Suspended"
    if any(r.state in (RunState.Running, RunState.Retrying) for r in runs) or t.runs_done:
        return "Running"
    return "Pending"


def aggregate(
    status: ScalingSweepStatus,
    runs: list[RunStatus],
    *,
    suspended: bool,
    tokenizer: TokenizerState,
    now: datetime,
    generation: int | None,
) -> ScalingSweepStatus:
    """The sweep's status from its runs: totals, printer columns, phase, conditions."""
    s = status.model_copy(deep=True)
    s.runs = runs
    s.totals = totals(runs)
    s.progress = f"{s.totals.runs_done}/{s.totals.runs}"
    s.cost = f"${s.totals.cost_usd:,.2f}"
    if s.plan is not None:
        s.plan_summary = f"${s.plan.total_cost_usd:,.2f}/{s.plan.est_wall_hours:.1f}h"  # no space: one column for awk
    cores = [r.core for r in runs if r.core is not None]
    s.best_core = max(cores) if cores else None
    s.phase = phase_of(runs, suspended, s.fit)
    s.observed_generation = generation
    conds = s.conditions
    conds = set_condition(conds, "Ready", True, "SpecValid", "spec accepted and planned", now, generation)
    failed = [r.name for r in runs if r.state is RunState.Failed]
    retrying = [r.name for r in runs if r.state is RunState.Retrying]
    if failed:
        conds = set_condition(
            conds, "Degraded", True, "RunsFailed", f"failed after retries: {', '.join(failed)}", now, generation
        )
    elif retrying:
        conds = set_condition(
            conds, "Degraded", True, "RunsRetrying", f"retrying: {', '.join(retrying)}", now, generation
        )
    elif tokenizer is TokenizerState.Failed:
        conds = set_condition(conds, "Degraded", True, "TokenizerFailed", "the tokenizer job failed", now, generation)
    else:
        conds = set_condition(conds, "Degraded", False, "AllHealthy", "no failed runs", now, generation)
    if finished(runs):
        conds = set_condition(conds, "Progressing", False, "AllRunsFinished", s.progress, now, generation)
    elif suspended:
        conds = set_condition(conds, "Progressing", False, "Suspended", "spec.suspend is true", now, generation)
    elif tokenizer in (TokenizerState.Missing, TokenizerState.Running):
        conds = set_condition(
            conds, "Progressing", True, "TrainingTokenizer", "runs wait for the tokenizer", now, generation
        )
    else:
        conds = set_condition(conds, "Progressing", True, "RunsInFlight", f"{s.progress} runs done", now, generation)
    s.conditions = conds
    return s


# ---------------------------------------------------------------- spec changes

# Fields that define what a finished run trained: changing them under finished
# runs would mix incomparable points in one fit.
FROZEN_FIELDS = ("model", "training", "data")


def _flat(prefix: str, obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flat(f"{prefix}.{k}", v))
        return out
    return {prefix: obj}


# What a started run trains, as planned: a change to any of these (through any spec field,
# e.g. resources.gpusPerRun moving the automatic batch) makes its checkpoints and results
# a different experiment.
PLANNED_RUN_FIELDS = (
    "n_layer", "n_embd", "n_head", "training_tokens", "total_batch_tokens", "grad_accum_steps", "steps", "gpus",
)  # fmt: skip


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
            if fa.get(key) != fb.get(key):
                problems.append(
                    f"{key} changed from {fa.get(key)!r} to {fb.get(key)!r} after runs started "
                    f"({', '.join(sorted(started))}); create a new sweep instead"
                )
    removed = sorted(started - new_runs)
    if removed:
        problems.append(f"spec.depths: runs already started cannot be removed: {', '.join(removed)}")
    return problems
