"""A run's next state from its previous state and what this reconcile sees of it: one named
transition per case, in TRANSITIONS, the first that applies wins.

Each transition is a guard (`when`: does it apply to what is seen?) and an effect (`then`: write
the run's new state, reason and message, add the actions and Events it calls for, and say whether
the run then waits for a launch). The guards are read in table order, so each one may assume that
every earlier one did not apply (the in-flight cases after the results', the ended job's after the
preempted trainer's), exactly as an if/elif chain would, but each case has a name and a test
(tests/unit/test_run_transitions.py, one per name). Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from miniseries.api.spec import RunState, RunStatus
from miniseries.contract.preemption import EXIT_PREEMPTED
from miniseries.control.decide.observations import JobPhase, ObservedJob, rfc3339
from miniseries.control.decide.run_decision import RESULTS_CORRUPT, Event, RunDecision
from miniseries.control.decide.run_queue import kueue_state
from miniseries.control.decide.run_reasons import (
    mark_preempted,
    mark_store_denied,
    preempted_exit,
    show_pod_trouble,
    store_denied,
    why_ended,
)
from miniseries.control.decide.run_seen import Seen


class After(Enum):
    """What becomes of the run once its transition is done."""

    STAYS = "stays"  # nothing to launch now
    MAY_LAUNCH = "may launch"  # a candidate: launched in plan order when slots are free (launches.py)
    CREATE_AGAIN = "create again"  # its launch is recorded: it holds a slot and its job is created again


@dataclass(frozen=True)
class Transition:
    name: str
    when: Callable[[Seen], bool]
    then: Callable[[Seen, RunDecision], After]


def launch_recorded(old: RunStatus | None) -> bool:
    """Status says this attempt was launched and no job has been seen for it since."""
    return old is not None and old.state is RunState.Pending and old.attempts > 0 and bool(old.job_name)


def _delete_job(s: Seen, d: RunDecision) -> None:
    """Delete the run's job unless it is already going: its name is reused by the next attempt."""
    if s.job is not None and not s.job.deleting:
        d.delete.append(s.job.name)


# -- results in the store -------------------------------------------------------------------------


def _has_results(s: Seen) -> bool:
    return s.obs.results is not None


def _succeed(s: Seen, d: RunDecision) -> After:
    rs = s.rs
    rs.state, rs.retry_at = RunState.Succeeded, None
    rs.reason = rs.message = None  # an earlier attempt's failure no longer describes the run
    if s.newly(RunState.Succeeded):
        d.events.append(Event("RunSucceeded", f"{s.run.name} finished: {rs.tokens} tokens, val bpb {rs.val_bpb}"))
    return After.STAYS


def _results_unreadable(s: Seen) -> bool:
    """results.json is written last, so the run trained to the end, but its results cannot be read
    (and no job of it is at work, which would write them again, or failing, which is a failure)."""
    return (
        s.obs.results_error is not None
        and not (s.job is not None and (s.job.active or s.job.phase is JobPhase.Failed))
        and not (s.job is None and launch_recorded(s.old))
    )


def _evaluated_again_in_vain(s: Seen) -> bool:
    """The re-evaluation launched for unreadable results (Pending/Running with that reason) finished
    and wrote an unreadable results.json again: do not loop."""
    return (
        s.job_in(JobPhase.Succeeded)
        and s.old is not None
        and s.old.reason == RESULTS_CORRUPT
        and s.old.state in (RunState.Pending, RunState.Running)
    )


def _results_past_mending(s: Seen) -> bool:
    """No checkpoint to evaluate again from, or evaluating again did not help."""
    return _results_unreadable(s) and (_evaluated_again_in_vain(s) or not s.rs.checkpoint_uri)


def _fail_unreadable(s: Seen, d: RunDecision) -> After:
    rs = s.rs
    again = _evaluated_again_in_vain(s)
    why = "its re-evaluation wrote an unreadable results.json again" if again else "no checkpoint to evaluate from"
    rs.state, rs.retry_at, rs.reason = RunState.Failed, None, RESULTS_CORRUPT
    rs.message = f"{s.obs.results_error}; {why}"[:500]
    if s.newly(RunState.Failed):
        d.events.append(Event("RunFailed", f"{s.run.name} failed: {rs.message}", "Warning"))
    return After.STAYS


def _evaluate_again(s: Seen, d: RunDecision) -> After:
    """The same attempt evaluates again from its checkpoint, at once and outside retryLimit."""
    rs = s.rs
    rs.state, rs.reason = RunState.Retrying, RESULTS_CORRUPT
    rs.message = (
        f"{s.obs.results_error}; evaluating again from checkpoint {rs.checkpoint_uri} (the same attempt, not "
        "counted against retryLimit)"
    )[:500]
    if s.newly(RunState.Retrying) or s.old is None or s.old.reason != RESULTS_CORRUPT:
        rs.retry_at = rfc3339(s.now)
        d.events.append(Event("RunResultsCorrupt", f"{s.run.name}: {rs.message}", "Warning"))
    if s.job is None:
        return After.MAY_LAUNCH
    _delete_job(s, d)
    return After.STAYS


# -- a job the operator is deleting ---------------------------------------------------------------


def _deleting_after_decision(s: Seen) -> bool:
    return s.job is not None and s.job.deleting and s.was(RunState.Retrying, RunState.Failed, RunState.Preempted)


def _keep_decision(s: Seen, d: RunDecision) -> After:
    """The operator deleted this job after recording why (a retry, a preemption). While it goes its
    status says nothing more, and may say the opposite: Trainer v2 drops a TrainJob's Failed condition
    once its JobSet is deleted, so it reads as starting again. The recorded decision stands; nothing is
    launched until the job is gone."""
    assert s.old is not None
    s.rs.state = s.old.state
    return After.STAYS


# -- a job in flight (created, running, suspended) ------------------------------------------------


def _in_flight_state(job: ObservedJob) -> RunState:
    return {JobPhase.Created: RunState.Pending, JobPhase.Suspended: RunState.Suspended}.get(job.phase, RunState.Running)


def _match_suspend(s: Seen, d: RunDecision) -> None:
    """Outside Kueue, the job's runPolicy.suspend follows spec.suspend."""
    assert s.job is not None
    if s.job.suspended != s.spec.suspend and not s.job.deleting:
        d.suspend[s.job.name] = s.spec.suspend


def _queued_in_flight(s: Seen) -> bool:
    return s.job_active() and s.kueue


def _show_where_kueue_has_it(s: Seen, d: RunDecision) -> After:
    assert s.job is not None
    s.rs.state = _in_flight_state(s.job)
    kueue_state(s.run.name, s.rs, s.old, s.job, s.workload, s.spec, d)
    if s.spec.suspend:
        s.rs.state = RunState.Suspended
    show_pod_trouble(s, d)
    return After.STAYS


def _in_flight_while_sweep_suspended(s: Seen) -> bool:
    return s.job_active() and s.spec.suspend


def _suspend_job(s: Seen, d: RunDecision) -> After:
    _match_suspend(s, d)
    s.rs.state = RunState.Suspended
    show_pod_trouble(s, d)
    return After.STAYS


def _suspended_from_outside(s: Seen) -> bool:
    """Someone else suspended the job of a run that ran (under Kueue, the Workload says so instead)."""
    return s.job_active() and s.job is not None and s.job.suspended and s.was(RunState.Running, RunState.Preempted)


def _preempt_suspended(s: Seen, d: RunDecision) -> After:
    _match_suspend(s, d)  # unsuspended again: it resumes from its checkpoint
    mark_preempted(s, "its job was suspended from outside the sweep", d)
    show_pod_trouble(s, d)
    return After.STAYS


def _in_flight(s: Seen) -> bool:
    return s.job_active()


def _show_in_flight(s: Seen, d: RunDecision) -> After:
    assert s.job is not None
    s.rs.state = _in_flight_state(s.job)
    _match_suspend(s, d)
    show_pod_trouble(s, d)
    return After.STAYS


# -- a job that ended without results -------------------------------------------------------------


def _trainer_exited_for_preemption(s: Seen) -> bool:
    return s.job_in(JobPhase.Failed) and preempted_exit(s.trouble, s.obs, s.job)


def _preempt_exited(s: Seen, d: RunDecision) -> After:
    mark_preempted(s, f"its trainer checkpointed and exited {EXIT_PREEMPTED}", d)
    _delete_job(s, d)  # the same name and attempt is created again once it is gone
    return After.STAYS


def _store_refused(s: Seen) -> bool:
    return s.job_in(JobPhase.Failed) and store_denied(s.trouble)


def _retry_store_denied(s: Seen, d: RunDecision) -> After:
    mark_store_denied(s, d)
    _delete_job(s, d)  # the same attempt is created again after the wait
    return After.STAYS


def _ended_with_retries_left(s: Seen) -> bool:
    return s.job_in(JobPhase.Failed, JobPhase.Succeeded) and s.rs.attempts <= s.spec.retry_limit


def _retry(s: Seen, d: RunDecision) -> After:
    """Retry after a backoff counted from when the job failed, from the newest checkpoint."""
    assert s.job is not None
    rs, limit = s.rs, s.spec.retry_limit
    rs.reason, rs.message = why_ended(s.job, s.trouble)
    rs.state = RunState.Retrying
    if rs.retry_at is None or s.newly(RunState.Retrying):
        failed_at = s.job.since or s.now
        rs.retry_at = rfc3339(failed_at + timedelta(seconds=s.retry.backoff_seconds(rs.attempts)))
        d.events.append(
            Event(
                "RunRetrying",
                f"{s.run.name} attempt {rs.attempts} failed ({rs.reason}: {rs.message}); retry {rs.attempts}/{limit} "
                f"from checkpoint {rs.checkpoint_uri or '(none yet)'} at {rs.retry_at}",
                "Warning",
            )
        )
    _delete_job(s, d)
    return After.STAYS


def _ended_out_of_retries(s: Seen) -> bool:
    return s.job_in(JobPhase.Failed, JobPhase.Succeeded)


def _fail(s: Seen, d: RunDecision) -> After:
    assert s.job is not None
    rs = s.rs
    rs.reason, rs.message = why_ended(s.job, s.trouble)
    rs.state = RunState.Failed
    if s.newly(RunState.Failed):
        d.events.append(
            Event("RunFailed", f"{s.run.name} failed after {rs.attempts} attempts: {rs.message}", "Warning")
        )
    return After.STAYS


# -- no job: what status recorded decides ---------------------------------------------------------


def _was_retrying(s: Seen) -> bool:
    return s.was(RunState.Retrying)


def _wait_to_retry(s: Seen, d: RunDecision) -> After:
    """The failed job is gone; the decision to retry was recorded in status (its retry_at with it)."""
    s.rs.state = RunState.Retrying
    return After.MAY_LAUNCH


def _was_failed(s: Seen) -> bool:
    return s.was(RunState.Failed)


def _stay_failed(s: Seen, d: RunDecision) -> After:
    s.rs.state = RunState.Failed
    return After.STAYS


def _was_preempted(s: Seen) -> bool:
    return s.was(RunState.Preempted)


def _resume(s: Seen, d: RunDecision) -> After:
    """The preempted job is gone: relaunched at once (no backoff) from its checkpoint."""
    s.rs.state = RunState.Preempted
    return After.MAY_LAUNCH


def _launch_was_recorded(s: Seen) -> bool:
    return launch_recorded(s.old)


def _create_again(s: Seen, d: RunDecision) -> After:
    """Recorded as launched, job not created yet (or the creator died in between): it holds its slot,
    and the same attempt is created again (409 if it exists)."""
    assert s.old is not None
    s.rs.state, s.rs.attempts, s.rs.job_name = RunState.Pending, s.old.attempts, s.old.job_name
    return After.CREATE_AGAIN


def _always(s: Seen) -> bool:
    return True


def _wait_to_launch(s: Seen, d: RunDecision) -> After:
    s.rs.state = RunState.Pending
    return After.MAY_LAUNCH


#: Every transition of a run, in the order their guards are read: the first that applies wins.
TRANSITIONS: tuple[Transition, ...] = (
    # results.json in the store decides first: Succeeded; or, unreadable, Failed or evaluated again (Retrying)
    Transition("results_written_succeeds", _has_results, _succeed),
    Transition("unreadable_results_past_mending_fail", _results_past_mending, _fail_unreadable),
    Transition("unreadable_results_are_evaluated_again", _results_unreadable, _evaluate_again),
    # a job the operator is deleting after recording why: that record stands (Retrying, Failed, Preempted)
    Transition("job_being_deleted_keeps_the_recorded_decision", _deleting_after_decision, _keep_decision),
    # a job in flight: where Kueue has it; Suspended; Preempted (suspended from outside); Pending or Running
    Transition("queued_job_in_flight_shows_where_kueue_has_it", _queued_in_flight, _show_where_kueue_has_it),
    Transition("job_in_flight_of_a_suspended_sweep_is_suspended", _in_flight_while_sweep_suspended, _suspend_job),
    Transition("job_suspended_from_outside_is_preempted", _suspended_from_outside, _preempt_suspended),
    Transition("job_in_flight_is_pending_or_running", _in_flight, _show_in_flight),
    # a job that ended without results: Preempted; Retrying (no attempt spent, or one); Failed
    Transition("trainer_that_exited_for_a_preemption_is_preempted", _trainer_exited_for_preemption, _preempt_exited),
    Transition("trainer_the_store_refused_retries_without_spending_an_attempt", _store_refused, _retry_store_denied),
    Transition("ended_job_with_retries_left_retries", _ended_with_retries_left, _retry),
    Transition("ended_job_out_of_retries_fails", _ended_out_of_retries, _fail),
    # no job (or one in no phase above): what status recorded, else a run never launched (Pending)
    Transition("retrying_run_without_a_job_waits_to_launch", _was_retrying, _wait_to_retry),
    Transition("failed_run_without_a_job_stays_failed", _was_failed, _stay_failed),
    Transition("preempted_run_without_a_job_resumes", _was_preempted, _resume),
    Transition("recorded_launch_without_a_job_is_created_again", _launch_was_recorded, _create_again),
    Transition("new_run_waits_to_launch", _always, _wait_to_launch),
)


def step(s: Seen, d: RunDecision) -> After:
    """Take the first transition that applies to what is seen of the run, and record its name."""
    t = next(t for t in TRANSITIONS if t.when(s))
    d.transitions[s.run.name] = [t.name]
    return t.then(s, d)
