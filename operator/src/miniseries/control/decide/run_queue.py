"""A queued run under Kueue (spec.resources.queueName): where Kueue has its job, read from the job's
Workload, and the Workload activations spec.suspend calls for. Used by the in-flight transition of
run_transitions.py for a queued job."""

from __future__ import annotations

from miniseries.api.spec import RunState, RunStatus, ScalingSweepSpec
from miniseries.control.decide.observations import JobPhase, ObservedJob, ObservedWorkload, QueueState
from miniseries.control.decide.run_decision import Event, RunDecision

#: The run states that say where Kueue has a run's job.
QUEUE_STATES = frozenset({RunState.Queued, RunState.Admitted, RunState.Preempted})


def kueue_state(
    name: str,
    rs: RunStatus,
    old: RunStatus | None,
    job: ObservedJob,
    wl: ObservedWorkload | None,
    spec: ScalingSweepSpec,
    d: RunDecision,
) -> None:
    """An unfinished job under Kueue: the run shows where Kueue has it, with Kueue's reason.

    Kueue owns runPolicy.suspend of a queued job: it unsuspends the job when it admits its
    Workload and suspends it when it evicts it (and unsuspends again a job someone else
    suspended while its Workload is admitted), so the operator never patches it. spec.suspend
    deactivates the job's Workload instead (Kueue then evicts it and suspends the job), marked as
    the operator's; unsetting it reactivates only those, and Kueue admits them again. A preempted
    run keeps its job and its attempt: Kueue admits it again and it resumes from its checkpoint."""
    if wl is not None and not job.deleting:
        if spec.suspend and wl.active:
            d.activate[wl.name] = False
        elif not spec.suspend and not wl.active and wl.deactivated_by_operator:
            d.activate[wl.name] = True
    if spec.suspend:
        return  # shown Suspended by the caller
    queue = spec.resources.queue_name
    if wl is None:
        if not job.suspended:
            return
        state, reason, message = RunState.Queued, "Pending", f"submitted to LocalQueue {queue}; no Workload yet"
    elif wl.state is QueueState.Admitted and (job.suspended or job.phase in (JobPhase.Created, JobPhase.Suspended)):
        state, reason, message = RunState.Admitted, wl.reason or "Admitted", wl.message
    elif wl.state in (QueueState.Admitted, QueueState.Finished):
        if old is not None and old.state in QUEUE_STATES and rs.state is RunState.Running:
            rs.reason = rs.message = None  # it runs: Kueue's last word no longer applies
        return
    elif wl.state is QueueState.Preempted:
        state, reason, message = RunState.Preempted, wl.reason, wl.message
    elif wl.state is QueueState.Deactivated:
        state, reason, message = RunState.Suspended, wl.reason, wl.message
    else:
        state, reason, message = RunState.Queued, wl.reason, wl.message
    if wl is not None and wl.position is not None and state is RunState.Queued:
        message = f"{message} (position {wl.position} in LocalQueue {queue})"
    rs.state, rs.reason, rs.message = state, reason, message[:500]
    if old is None or old.state is not state:
        where = f"LocalQueue {queue}"
        text = {
            RunState.Queued: f"{name} queued in {where}: {rs.message}",
            RunState.Admitted: f"{name} admitted by Kueue ({where})",
            RunState.Preempted: f"{name} preempted ({reason}): {rs.message}; it resumes from its newest checkpoint "
            "when admitted again (no attempt spent)",
            RunState.Suspended: f"{name}: its Workload is not active ({reason}): {rs.message}",
        }[state]
        kind = "Warning" if state is RunState.Preempted else "Normal"
        d.events.append(Event(f"Run{state.value}", text, kind))
