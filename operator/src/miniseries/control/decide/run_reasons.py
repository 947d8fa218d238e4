"""What a run's status says when its trainer stopped or its pod is held: the reason, the message and
the Event of a preemption, a store refusal, a job that ended without results, a pod that cannot start.
The transitions of run_transitions.py decide which applies; this says it. Pure."""

from __future__ import annotations

from datetime import timedelta

from miniseries.api.spec import RunState
from miniseries.contract.exits import EXIT_STORE_DENIED, STORE_DENIED_MARKER
from miniseries.contract.preemption import EXIT_PREEMPTED, PROGRESS_PREEMPTED
from miniseries.control.decide.observations import JobPhase, ObservedJob, RunObservation, rfc3339
from miniseries.control.decide.pod_troubles import POD_REASONS, PodTrouble
from miniseries.control.decide.run_decision import NO_RESULTS, PREEMPTED, STORE_ACCESS_DENIED, Event, RunDecision
from miniseries.control.decide.run_seen import Seen


def preempted_exit(
    trouble: PodTrouble | None, obs: RunObservation | None = None, job: ObservedJob | None = None
) -> bool:
    """The run's trainer caught SIGTERM and wrote a checkpoint before it exited: its container exited
    EXIT_PREEMPTED, or (a pod of several GPUs runs torchrun, which turns every worker's exit into 1)
    this attempt's own progress.json says `preempted`, written after its job was created."""
    if trouble is not None and trouble.exit_code == EXIT_PREEMPTED:
        return True
    progress = obs.progress if obs is not None else None
    if progress is None or progress.state != PROGRESS_PREEMPTED or job is None or job.created is None:
        return False
    return progress.updated_at >= job.created.timestamp()  # not a stale one from an earlier attempt


def store_denied(trouble: PodTrouble | None) -> bool:
    """The run's trainer stopped because the store refused its credentials: it exited EXIT_STORE_DENIED,
    or (several ranks under torchrun, which exits 1) its log ends with STORE_DENIED_MARKER."""
    if trouble is None or trouble.waiting:
        return False
    return trouble.exit_code == EXIT_STORE_DENIED or STORE_DENIED_MARKER in (trouble.log_tail or "")


def mark_preempted(s: Seen, how: str, d: RunDecision) -> None:
    """A run stopped from outside after checkpointing (Kueue's preemption, a node drain, a deleted pod):
    Preempted, not Failed. It spends no retry (the attempt is not counted) and resumes from its newest
    checkpoint as soon as it may run again, without backoff; one RunPreempted Event per preemption."""
    rs, new = s.rs, s.newly(RunState.Preempted)
    rs.state, rs.reason, rs.retry_at = RunState.Preempted, PREEMPTED, None
    if new:
        rs.preemptions += 1
    at = f"step {s.obs.checkpoint_step}" if s.obs.checkpoint_step is not None else "no checkpoint yet"
    rs.message = (
        f"preempted ({how}) at {at}; resumes from {rs.checkpoint_uri or 'the start'} "
        f"(preemption {rs.preemptions}, not counted against retryLimit)"
    )
    if new:
        d.events.append(Event("RunPreempted", f"{s.run.name} {rs.message}"))


def mark_store_denied(s: Seen, d: RunDecision) -> None:
    """Not a training failure (issue 27): a wrong or rotated key failed every retry within a minute and
    the run stayed Failed after the Secret was fixed. No retry is spent; the same attempt is tried again
    every `retry.store_denied_seconds`, so the run resumes by itself once the Secret works; the message
    names the Secret and the operation the store refused (the trainer's last line)."""
    rs, trouble = s.rs, s.trouble
    assert trouble is not None
    secret = s.spec.store.credentials_secret
    creds = f"the Secret {secret!r} (spec.store.credentialsSecret)" if secret else "the trainer's environment"
    said = next((ln for ln in reversed((trouble.log_tail or "").splitlines()) if STORE_DENIED_MARKER in ln), "")
    refused = said.split(STORE_DENIED_MARKER, 1)[1].strip() if said else f"exit code {trouble.exit_code}"
    rs.state, rs.reason = RunState.Retrying, STORE_ACCESS_DENIED
    rs.message = (
        f"the store refused the credentials from {creds}: {refused}; not counted against retryLimit, tried "
        f"again every {s.retry.store_denied_seconds:g} s: fix the Secret and the run resumes from its checkpoint"
    )[:500]
    if s.newly(RunState.Retrying) or s.old is None or s.old.reason != STORE_ACCESS_DENIED or rs.retry_at is None:
        rs.retry_at = rfc3339(s.now + timedelta(seconds=s.retry.store_denied_seconds))
        d.events.append(Event("RunStoreAccessDenied", f"{s.run.name}: {rs.message}", "Warning"))


def why_ended(job: ObservedJob, trouble: PodTrouble | None) -> tuple[str, str]:
    """(reason, message) of a job that failed, or "succeeded" without a results.json."""
    if job.phase is JobPhase.Succeeded:
        # whatever the backend calls it (the training-operator's PyTorchJobSucceeded, JobSet's), the trainer
        # exited 0 and broke its contract: it wrote no results.json (issue 27)
        said = f" ({job.reason}: {job.message})" if job.reason or job.message else ""
        return NO_RESULTS, f"the trainer exited 0 without writing results.json{said}"[:500]
    if trouble is None or trouble.waiting:
        # the training-operator only says that a replica failed: add what the container said, if kept
        return job.reason or "Failed", (job.message or "job failed")[:500]
    return job.reason or "Failed", f"{(job.message or 'job failed')[:300]}; {trouble.summary()}"


def show_pod_trouble(s: Seen, d: RunDecision) -> None:
    """An in-flight run whose pod cannot start (an image that cannot be pulled, a missing Secret,
    no node that fits): the kubelet's or scheduler's reason in its status, and an Event when it
    changes. The job stays: pushing the image or freeing a node lets it start as it is."""
    rs, trouble = s.rs, s.trouble
    if trouble is None or not trouble.waiting:
        if rs.reason in POD_REASONS:  # it started after all
            rs.reason = rs.message = None
        return
    rs.reason, rs.message = trouble.reason, trouble.summary()
    d.stuck[s.run.name] = trouble
    if s.old is None or (s.old.reason, s.old.message) != (rs.reason, rs.message):
        d.events.append(Event(trouble.reason, f"{s.run.name}: {rs.message}", "Warning"))
