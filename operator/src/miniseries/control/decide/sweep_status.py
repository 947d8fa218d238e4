"""The sweep's status from its runs: totals, printer columns, phase and conditions. Pure.

Status is assembled here and nowhere else: `sweep_status` for a reconcile that reached the
store (through decide.py), `refused` for a sweep that may not run (an invalid spec, an
admission refusal, a store key it may not use), `store_unreachable` for one whose store does
not answer, and `with_fit` once the fit that decide asked for has run. `wire_doc` is what is
patched, and what is compared to decide whether anything needs patching at all.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from miniseries.api.spec import Condition, FitStatus, RunState, RunStatus, ScalingSweepStatus, Totals, writable
from miniseries.control.decide.observations import JobPhase, ObservedJob, TokenizerState, rfc3339
from miniseries.control.decide.pod_troubles import TOKENIZER, PodTrouble

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


def condition(status: ScalingSweepStatus, type_: str) -> Condition | None:
    return next((c for c in status.conditions if c.type == type_), None)


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


def fit_due(status: ScalingSweepStatus) -> bool:
    """Every run finished, at least one succeeded, and no fit is recorded yet."""
    return finished(status.runs) and status.fit is None and bool(status.totals.runs_done)


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
    if any(r.state in (RunState.Running, RunState.Retrying, RunState.Admitted) for r in runs):
        return "Running"
    if any(r.state is RunState.Queued for r in runs):
        return "Queued"  # every run in flight waits for Kueue (spec.resources.queueName)
    if any(r.state is RunState.Preempted for r in runs) or t.runs_done:
        return "Running"
    return "Pending"


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


def _degraded(conds: list[Condition], runs: list[RunStatus], now: datetime, gen: int | None) -> list[Condition] | None:
    """Degraded=True naming the failed (else retrying) runs; None when none is."""
    # A run stopped for its forecast (reason OffTrend or NonFiniteLoss, forecasts.py) did not fail after
    # retries: Degraded says RunOffTrend, with the numbers or the step whose loss was not finite.
    failed = [r.name for r in runs if r.state is RunState.Failed and r.reason not in ("OffTrend", "NonFiniteLoss")]
    retrying = [r.name for r in runs if r.state is RunState.Retrying]
    if failed:
        return set_condition(conds, "Degraded", True, "RunsFailed", f"failed after retries: {', '.join(failed)}", now,
                             gen)  # fmt: skip
    if retrying:
        return set_condition(conds, "Degraded", True, "RunsRetrying", f"retrying: {', '.join(retrying)}", now, gen)
    return None


def sweep_status(
    status: ScalingSweepStatus,
    runs: list[RunStatus],
    *,
    suspended: bool,
    tokenizer: TokenizerState,
    now: datetime,
    generation: int | None,
    stuck: dict[str, PodTrouble] | None = None,
    off_trend: str | None = None,
) -> ScalingSweepStatus:
    """The sweep's status from its runs: totals, printer columns, phase, conditions.

    `stuck`: pods that cannot start or a tokenizer pod that failed (pods.py), by run (or
    pods.TOKENIZER); Degraded names them when no run has failed. `off_trend`: the runs whose
    forecast lies off the sweep's trend, with the numbers (forecasts.off_trend); Degraded says it
    when nothing above does."""
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
    gen = generation
    conds = set_condition(s.conditions, "Ready", True, "SpecValid", "spec accepted and planned", now, gen)
    degraded = _degraded(conds, runs, now, gen)
    tokenizer_pod = (stuck or {}).get(TOKENIZER)
    pods_stuck = {name: t for name, t in (stuck or {}).items() if t.waiting}
    if degraded is not None:
        conds = degraded
    elif tokenizer is TokenizerState.Failed:
        why = f": {tokenizer_pod.summary()}" if tokenizer_pod is not None else ""
        conds = set_condition(conds, "Degraded", True, "TokenizerFailed", f"the tokenizer job failed{why}", now, gen)
    elif pods_stuck:
        reason = next(iter(pods_stuck.values())).reason
        msg = "; ".join(f"{name}: {t.summary().splitlines()[0]}" for name, t in pods_stuck.items())
        conds = set_condition(conds, "Degraded", True, reason, msg[:1000], now, gen)
    elif off_trend:
        conds = set_condition(conds, "Degraded", True, "RunOffTrend", off_trend[:1000], now, gen)
    else:
        conds = set_condition(conds, "Degraded", False, "AllHealthy", "no failed runs", now, gen)
    if finished(runs):
        conds = set_condition(conds, "Progressing", False, "AllRunsFinished", s.progress, now, gen)
    elif suspended:
        conds = set_condition(conds, "Progressing", False, "Suspended", "spec.suspend is true", now, gen)
    elif tokenizer in (TokenizerState.Missing, TokenizerState.Running):
        conds = set_condition(conds, "Progressing", True, "TrainingTokenizer", "runs wait for the tokenizer", now, gen)
    elif s.phase == "Queued":
        waiting = [f"{r.name} {r.state.value}" for r in runs if r.state in (RunState.Queued, RunState.Preempted)]
        msg = f"{s.progress} runs done; waiting for Kueue: {', '.join(waiting)}"
        conds = set_condition(conds, "Progressing", True, "RunsQueued", msg[:1000], now, gen)
    else:
        conds = set_condition(conds, "Progressing", True, "RunsInFlight", f"{s.progress} runs done", now, gen)
    s.conditions = conds
    return s


def idle_gpus_condition(status: ScalingSweepStatus, now: datetime, gen: int | None) -> list[Condition]:
    """IdleGpus: True while the plan leaves GPUs of a node it holds idle, saying how many per node,
    what they cost and the packing that would use them (plan/node_use.py)."""
    plan = status.plan
    if plan is None or plan.idle_gpus_per_node is None:
        return status.conditions
    if not plan.idle_gpus:
        return set_condition(status.conditions, "IdleGpus", False, "NodesFullyUsed",
                             "every GPU of the nodes the plan holds runs a run at its fullest", now, gen)  # fmt: skip
    per_node = ", ".join(f"n{k}: {idle}" for k, idle in enumerate(plan.idle_gpus_per_node))
    msg = (
        f"idle GPUs per node ({per_node}), {plan.idle_gpu_hours or 0:,.1f} GPU-hours idle of "
        f"{plan.node_gpu_hours or 0:,.1f} held (the plan's ${plan.total_cost_usd:,.2f} counts whole nodes; the runs' "
        f"own GPUs: ${plan.used_gpu_cost_usd or 0:,.2f}): {plan.idle_gpus}"
    )
    return set_condition(status.conditions, "IdleGpus", True, "IdleGpusPerNode", msg[:1000], now, gen)


def with_fit(
    status: ScalingSweepStatus, fit: FitStatus | None, report_uri: str | None, error: str | None, now: datetime
) -> ScalingSweepStatus:
    """The status once the fit decide asked for has run: the fit and its report, or Degraded=FitFailed
    (tried again at the next reconcile). A fit over a sweep with failed runs is partial."""
    s = status.model_copy(deep=True)
    if error is not None or fit is None:
        s.conditions = set_condition(s.conditions, "Degraded", True, "FitFailed", (error or "no fit")[:500], now,
                                     s.observed_generation)  # fmt: skip
    else:
        s.fit = fit.model_copy(update={"partial": True}) if s.totals.runs_failed else fit
        s.report_uri = report_uri
    s.phase = phase_of(s.runs, False, s.fit)  # finished runs: suspension no longer shows
    return s


def refused(
    status: ScalingSweepStatus, reason: str, message: str, now: datetime, generation: int | None, *, stops: bool
) -> ScalingSweepStatus:
    """Ready=False for a sweep that may not run as it is (`stops`: Progressing=False too, for the
    same reason); Invalid while it never had a plan, else the phase it had."""
    s = status.model_copy(deep=True)
    s.conditions = set_condition(s.conditions, "Ready", False, reason, message, now, generation)
    if stops:
        s.conditions = set_condition(s.conditions, "Progressing", False, reason, message, now, generation)
    s.phase = "Invalid" if s.plan is None else s.phase
    s.observed_generation = generation
    return s


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
    s.conditions = _degraded(s.conditions, s.runs, now, generation) or s.conditions
    return s


def store_unreachable(
    status: ScalingSweepStatus, jobs: list[ObservedJob] | None, retry_limit: int, message: str, now: datetime,
    generation: int | None,
) -> ScalingSweepStatus:  # fmt: skip
    """StoreReachable=False and Progressing=False naming the store; runs whose jobs failed are shown so."""
    s = reflect_failed_jobs(status, jobs, retry_limit, now, generation) if jobs is not None else status
    s = s.model_copy(deep=True)
    s.conditions = set_condition(s.conditions, "StoreReachable", False, "StoreUnreachable", message, now, generation)
    s.conditions = set_condition(s.conditions, "Progressing", False, "StoreUnreachable", message, now, generation)
    return s


def _drop_none(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _drop_none(v) for k, v in doc.items() if v is not None}
    if isinstance(doc, list):
        return [_drop_none(v) for v in doc]
    return doc


def wire_doc(status: ScalingSweepStatus) -> tuple[dict[str, Any], list[str]]:
    """The status as patched (non-finite numbers as None, which a merge patch writes as absent),
    and the paths of those numbers."""
    doc, bad = writable(status.wire())
    return doc, bad


def changed(new: ScalingSweepStatus, old: ScalingSweepStatus) -> bool:
    """Whether patching `new` over `old` would change what the API server holds."""
    return bool(_drop_none(wire_doc(new)[0]) != _drop_none(wire_doc(old)[0]))
