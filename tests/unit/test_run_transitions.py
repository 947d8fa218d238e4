"""One test per transition of a run (control/decide/run_transitions.TRANSITIONS) and per launch step
(control/decide/launches.LAUNCH_STEPS), each named `test_<the transition's name>` and driven through
`decide_runs`, the public entry, which records the transitions a run took (RunDecision.transitions).
The last test holds the two sets equal: a new transition without its test fails here."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from miniseries.api.spec import PlanStatus, RunState, RunStatus, ScalingSweepSpec
from miniseries.contract.exits import EXIT_STORE_DENIED, STORE_DENIED_MARKER
from miniseries.contract.preemption import EXIT_PREEMPTED
from miniseries.control.decide.launches import LAUNCH_STEPS
from miniseries.control.decide.observations import (
    JobPhase,
    ObservedJob,
    ObservedWorkload,
    QueueState,
    RunObservation,
    TokenizerState,
    rfc3339,
)
from miniseries.control.decide.pod_troubles import PodTrouble
from miniseries.control.decide.run_transitions import TRANSITIONS
from miniseries.control.decide.runs import (
    PREEMPTED,
    RESULTS_CORRUPT,
    STORE_ACCESS_DENIED,
    TRUNK_CHECKPOINT_MISSING,
    WAITING_FOR_TRUNK,
    RunDecision,
    Slots,
    decide_runs,
)
from miniseries.plan.planner import make_plan
from tests.unit.test_decide import results, spec
from tests.unit.test_no_silent_waits import wsd_plan

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
RUN = "d4"  # the one run of ONE
ONE = spec(depths=[4], retryLimit=2)


def decide(s: ScalingSweepSpec = ONE, jobs: list[ObservedJob] | None = None,
           store: dict[str, RunObservation] | None = None, previous: list[RunStatus] | None = None,
           plan: PlanStatus | None = None, **kw: Any) -> RunDecision:  # fmt: skip
    kw.setdefault("tokenizer", TokenizerState.NotNeeded)
    tokenizer = kw.pop("tokenizer")
    return decide_runs(s, "s", plan or make_plan(s), jobs or [], store or {}, previous or [], tokenizer, NOW, **kw)


def job(phase: JobPhase, attempt: int = 1, **kw: Any) -> ObservedJob:
    return ObservedJob(name=f"s-{RUN}", run=RUN, attempt=attempt, phase=phase, **kw)


def was(state: RunState, s: ScalingSweepSpec = ONE, **kw: Any) -> RunStatus:
    """The run's status as the previous reconcile recorded it."""
    p = make_plan(s).runs[0]
    return RunStatus(name=p.name, depth=p.depth, budget_flops=p.budget_flops, steps=p.steps, state=state, **kw)


def status(d: RunDecision, run: str = RUN) -> RunStatus:
    return next(r for r in d.runs if r.name == run)


def events(d: RunDecision) -> list[str]:
    return [e.reason for e in d.events]


def created(d: RunDecision) -> list[tuple[str, int]]:
    return [(r.name, a) for r, a in d.create]


# ---------------------------------------------------------------- results in the store


def test_results_written_succeeds() -> None:
    d = decide(jobs=[job(JobPhase.Succeeded)], store={RUN: RunObservation(results=results(RUN, 4))},
               previous=[was(RunState.Running, attempts=1, reason="Failed", message="an earlier attempt")])  # fmt: skip
    assert d.transitions[RUN] == ["results_written_succeeds"]
    rs = status(d)
    assert rs.state is RunState.Succeeded and rs.reason is None and rs.message is None
    assert events(d) == ["RunSucceeded"] and d.create == [] and d.delete == []


def test_unreadable_results_past_mending_fail() -> None:
    d = decide(jobs=[job(JobPhase.Succeeded)], store={RUN: RunObservation(results_error="results.json: not JSON")})
    assert d.transitions[RUN] == ["unreadable_results_past_mending_fail"]
    rs = status(d)
    assert rs.state is RunState.Failed and rs.reason == RESULTS_CORRUPT
    assert "no checkpoint to evaluate from" in (rs.message or "")
    assert events(d) == ["RunFailed"] and d.create == [] and d.delete == []


def test_unreadable_results_are_evaluated_again() -> None:
    store = {RUN: RunObservation(results_error="results.json: not JSON", checkpoint_uri="s3://b/ck/100")}
    d = decide(jobs=[job(JobPhase.Succeeded)], store=store, previous=[was(RunState.Running, attempts=1)])
    assert d.transitions[RUN] == ["unreadable_results_are_evaluated_again"]
    rs = status(d)
    assert rs.state is RunState.Retrying and rs.reason == RESULTS_CORRUPT and rs.retry_at == rfc3339(NOW)
    assert d.delete == [f"s-{RUN}"] and events(d) == ["RunResultsCorrupt"] and rs.attempts == 1


# ---------------------------------------------------------------- a job the operator is deleting


def test_job_being_deleted_keeps_the_recorded_decision() -> None:
    """A deleted TrainJob reads as starting again once its JobSet is gone: the recorded Retrying stands."""
    retry_at = rfc3339(NOW - timedelta(seconds=1))
    d = decide(jobs=[job(JobPhase.Created, deleting=True)],
               previous=[was(RunState.Retrying, attempts=1, retry_at=retry_at, reason="Failed")])  # fmt: skip
    assert d.transitions[RUN] == ["job_being_deleted_keeps_the_recorded_decision"]
    rs = status(d)
    assert rs.state is RunState.Retrying and rs.reason == "Failed"
    assert d.create == [] and d.delete == [] and d.suspend == {} and d.events == []


# ---------------------------------------------------------------- a job in flight


def test_queued_job_in_flight_shows_where_kueue_has_it() -> None:
    s = spec(depths=[4], resources={"queueName": "team-a"})
    wl = ObservedWorkload(name="w", job=f"s-{RUN}", job_uid="u", state=QueueState.Queued, reason="Pending",
                          message="insufficient quota", position=3)  # fmt: skip
    d = decide(s, jobs=[job(JobPhase.Suspended, suspended=True)], workloads={RUN: wl})
    assert d.transitions[RUN] == ["queued_job_in_flight_shows_where_kueue_has_it"]
    rs = status(d)
    assert rs.state is RunState.Queued and rs.reason == "Pending"
    assert rs.message == "insufficient quota (position 3 in LocalQueue team-a)"
    assert events(d) == ["RunQueued"] and d.suspend == {}  # Kueue owns the job's suspend


def test_job_in_flight_of_a_suspended_sweep_is_suspended() -> None:
    d = decide(spec(depths=[4], suspend=True), jobs=[job(JobPhase.Running)], previous=[was(RunState.Running)])
    assert d.transitions[RUN] == ["job_in_flight_of_a_suspended_sweep_is_suspended"]
    assert status(d).state is RunState.Suspended
    assert d.suspend == {f"s-{RUN}": True} and d.create == []


def test_job_suspended_from_outside_is_preempted() -> None:
    d = decide(jobs=[job(JobPhase.Suspended, suspended=True)], previous=[was(RunState.Running, attempts=1)])
    assert d.transitions[RUN] == ["job_suspended_from_outside_is_preempted"]
    rs = status(d)
    assert rs.state is RunState.Preempted and rs.reason == PREEMPTED and rs.preemptions == 1
    assert d.suspend == {f"s-{RUN}": False}  # unsuspended: it resumes from its checkpoint
    assert events(d) == ["RunPreempted"] and rs.attempts == 1


def test_job_in_flight_is_pending_or_running() -> None:
    for phase, state in [(JobPhase.Created, RunState.Pending), (JobPhase.Running, RunState.Running)]:
        d = decide(jobs=[job(phase)], previous=[was(RunState.Pending, attempts=1, job_name=f"s-{RUN}")])
        assert d.transitions[RUN] == ["job_in_flight_is_pending_or_running"]
        assert status(d).state is state
        assert d.create == [] and d.delete == [] and d.suspend == {}


# ---------------------------------------------------------------- a job that ended without results


def test_trainer_that_exited_for_a_preemption_is_preempted() -> None:
    trouble = PodTrouble(pod=f"s-{RUN}-master-0", reason="Error", message="", exit_code=EXIT_PREEMPTED)
    d = decide(jobs=[job(JobPhase.Failed)], pods={RUN: trouble}, previous=[was(RunState.Running, attempts=1)])
    assert d.transitions[RUN] == ["trainer_that_exited_for_a_preemption_is_preempted"]
    rs = status(d)
    assert rs.state is RunState.Preempted and rs.attempts == 1 and rs.preemptions == 1
    assert d.delete == [f"s-{RUN}"] and events(d) == ["RunPreempted"]


def test_trainer_the_store_refused_retries_without_spending_an_attempt() -> None:
    tail = f"step 3\n{STORE_DENIED_MARKER} PutObject s3://b/r/progress.json: AccessDenied"
    trouble = PodTrouble(pod=f"s-{RUN}-master-0", reason="Error", message="", exit_code=EXIT_STORE_DENIED,
                         log_tail=tail)  # fmt: skip
    d = decide(jobs=[job(JobPhase.Failed)], pods={RUN: trouble}, previous=[was(RunState.Running, attempts=1)])
    assert d.transitions[RUN] == ["trainer_the_store_refused_retries_without_spending_an_attempt"]
    rs = status(d)
    assert rs.state is RunState.Retrying and rs.reason == STORE_ACCESS_DENIED and rs.attempts == 1
    assert "PutObject s3://b/r/progress.json: AccessDenied" in (rs.message or "")
    assert rs.retry_at == rfc3339(NOW + timedelta(seconds=60))
    assert d.delete == [f"s-{RUN}"] and events(d) == ["RunStoreAccessDenied"]


def test_ended_job_with_retries_left_retries() -> None:
    d = decide(jobs=[job(JobPhase.Failed, since=NOW, reason="BackoffLimitExceeded", message="replica failed")],
               previous=[was(RunState.Running, attempts=1)])  # fmt: skip
    assert d.transitions[RUN] == ["ended_job_with_retries_left_retries"]
    rs = status(d)
    assert rs.state is RunState.Retrying and rs.reason == "BackoffLimitExceeded" and rs.message == "replica failed"
    assert rs.retry_at == rfc3339(NOW + timedelta(seconds=30))  # the first backoff, from when it failed
    assert d.delete == [f"s-{RUN}"] and events(d) == ["RunRetrying"] and d.create == []


def test_ended_job_out_of_retries_fails() -> None:
    d = decide(jobs=[job(JobPhase.Failed, attempt=3, reason="BackoffLimitExceeded")],
               previous=[was(RunState.Running, attempts=3)])  # fmt: skip
    assert d.transitions[RUN] == ["ended_job_out_of_retries_fails"]
    rs = status(d)
    assert rs.state is RunState.Failed and rs.reason == "BackoffLimitExceeded"
    assert d.delete == [] and events(d) == ["RunFailed"] and d.create == []


# ---------------------------------------------------------------- no job: what status recorded decides


def test_retrying_run_without_a_job_waits_to_launch() -> None:
    d = decide(previous=[was(RunState.Retrying, attempts=1, retry_at=rfc3339(NOW - timedelta(seconds=1)))])
    assert d.transitions[RUN] == ["retrying_run_without_a_job_waits_to_launch", "run_launches_a_new_attempt"]
    assert created(d) == [(RUN, 2)] and status(d).state is RunState.Pending


def test_failed_run_without_a_job_stays_failed() -> None:
    d = decide(previous=[was(RunState.Failed, attempts=3, reason="BackoffLimitExceeded")])
    assert d.transitions[RUN] == ["failed_run_without_a_job_stays_failed"]
    assert status(d).state is RunState.Failed and d.create == [] and d.events == []


def test_preempted_run_without_a_job_resumes() -> None:
    d = decide(previous=[was(RunState.Preempted, attempts=1, preemptions=1, reason=PREEMPTED)])
    assert d.transitions[RUN] == ["preempted_run_without_a_job_resumes", "resumed_run_launches_the_same_attempt"]
    assert created(d) == [(RUN, 1)] and status(d).preemptions == 1


def test_recorded_launch_without_a_job_is_created_again() -> None:
    d = decide(previous=[was(RunState.Pending, attempts=2, job_name=f"s-{RUN}")])
    assert d.transitions[RUN] == ["recorded_launch_without_a_job_is_created_again"]
    rs = status(d)
    assert rs.state is RunState.Pending and rs.attempts == 2 and created(d) == [(RUN, 2)]


def test_new_run_waits_to_launch() -> None:
    d = decide(tokenizer=TokenizerState.Running)  # nothing launches before the tokenizer is ready
    assert d.transitions[RUN] == ["new_run_waits_to_launch"]
    assert status(d).state is RunState.Pending and d.create == [] and status(d).attempts == 0


# ---------------------------------------------------------------- launch steps (launches.py)


def test_branch_waits_for_its_trunk_checkpoint() -> None:
    s, plan, _ = wsd_plan()
    trunk = ObservedJob("s-d2-trunk", "d2-trunk", 1, JobPhase.Running)
    d = decide(s, jobs=[trunk], plan=plan)
    assert d.transitions["d2-b2"] == ["new_run_waits_to_launch", "branch_waits_for_its_trunk_checkpoint"]
    rs = status(d, "d2-b2")
    assert rs.state is RunState.Pending and rs.reason == WAITING_FOR_TRUNK and created(d) == []


def test_branch_whose_trunk_checkpoint_is_gone_fails() -> None:
    s, plan, by = wsd_plan()
    past = (by["d2-b8"].start_step or 0) + 1  # the trunk checkpointed past every branch start, keeping none
    d = decide(s, store={"d2-trunk": RunObservation(checkpoint_steps=(past,))}, plan=plan)
    assert d.transitions["d2-b2"] == ["new_run_waits_to_launch", "branch_whose_trunk_checkpoint_is_gone_fails"]
    rs = status(d, "d2-b2")
    assert rs.state is RunState.Failed and rs.reason == TRUNK_CHECKPOINT_MISSING and "RunFailed" in events(d)


def test_no_free_slot_holds_the_queue() -> None:
    s = spec(depths=[4, 6, 8])
    first, second, third = (r.name for r in make_plan(s).runs)  # plan order
    d = decide(s, slots=Slots(runs=1, gpus=8))
    assert created(d) == [(first, 1)]
    assert d.transitions[second] == ["new_run_waits_to_launch", "no_free_slot_holds_the_queue"]
    assert d.transitions[third] == ["new_run_waits_to_launch"]  # a later run never jumps the queue
    assert status(d, second).state is RunState.Pending and status(d, second).attempts == 0


def test_retry_backs_off_until_its_time() -> None:
    retry_at = rfc3339(NOW + timedelta(seconds=30))
    d = decide(previous=[was(RunState.Retrying, attempts=1, retry_at=retry_at)])
    assert d.transitions[RUN] == ["retrying_run_without_a_job_waits_to_launch", "retry_backs_off_until_its_time"]
    rs = status(d)
    assert rs.state is RunState.Retrying and rs.retry_at == retry_at and d.create == []


def test_resumed_run_launches_the_same_attempt() -> None:
    """A run the store refused comes back on the same attempt once its wait is over (outside retryLimit)."""
    d = decide(previous=[was(RunState.Retrying, attempts=1, reason=STORE_ACCESS_DENIED,
                             retry_at=rfc3339(NOW - timedelta(seconds=1)))])  # fmt: skip
    assert d.transitions[RUN] == ["retrying_run_without_a_job_waits_to_launch", "resumed_run_launches_the_same_attempt"]
    rs = status(d)
    assert created(d) == [(RUN, 1)] and rs.state is RunState.Pending and rs.retry_at is None


def test_run_launches_a_new_attempt() -> None:
    d = decide()
    assert d.transitions[RUN] == ["new_run_waits_to_launch", "run_launches_a_new_attempt"]
    rs = status(d)
    assert created(d) == [(RUN, 1)] and rs.state is RunState.Pending and rs.job_name == f"s-{RUN}"


# ---------------------------------------------------------------- every transition has its test


def test_every_transition_has_its_test() -> None:
    """The transitions the module declares are exactly those this file tests, by name."""
    here = sys.modules[__name__]
    tested = {n.removeprefix("test_") for n in dir(here) if n.startswith("test_") and callable(getattr(here, n))}
    tested.discard("every_transition_has_its_test")
    declared = {t.name for t in TRANSITIONS} | set(LAUNCH_STEPS)
    assert len(declared) == len(TRANSITIONS) + len(LAUNCH_STEPS)  # no name given twice
    assert tested == declared, f"untested: {sorted(declared - tested)}; no such transition: {sorted(tested - declared)}"
