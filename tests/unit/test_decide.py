"""The operator's decisions, status aggregation and conditions: pure functions, no cluster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from miniseries.api.spec import FitStatus, RunState, RunStatus, ScalingSweepSpec, ScalingSweepStatus
from miniseries.contract.results import CoreResult, LossSummary, Progress, RunResults
from miniseries.control.backends.pytorchjob import job_phase
from miniseries.control.decide import observations as observed
from miniseries.control.decide import runs, spec_changes, sweep_status
from miniseries.control.decide.observations import JobPhase, ObservedJob, RunObservation, TokenizerState
from miniseries.plan.planner import make_plan

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def spec(**over: Any) -> ScalingSweepSpec:
    base: dict[str, Any] = {
        "depths": [4, 6, 8, 10],
        "resources": {"gpusPerRun": 2, "nodeGpus": 8},
        "store": {"uri": "file:///tmp/s"},
        "data": {"shardsUri": "file:///tmp/d", "tokenizerUri": "file:///tmp/t"},
        "retryLimit": 2,
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return ScalingSweepSpec.model_validate(base)


def results(run: str, depth: int, core: float | None = None) -> RunResults:
    return RunResults(
        sweep="s", run=run, depth=depth, shape={}, params={}, target_tokens=100, tokens=100, steps=10,
        total_batch_tokens=10, flops_per_token=1, flops=100.0, wall_seconds=60, gpu_seconds=7200.0,
        world_size=2, device="cpu", loss=LossSummary(final=3.0), val_bpb=1.2,
        core=CoreResult(core=core) if core is not None else None,
    )  # fmt: skip


def job(run: str, phase: JobPhase, attempt: int = 1, **kw: Any) -> ObservedJob:
    return ObservedJob(name=f"s-{run}", run=run, attempt=attempt, phase=phase, **kw)


def run_decide(s: ScalingSweepSpec, jobs: list[ObservedJob] = [], store: dict[str, RunObservation] | None = None,  # noqa: B006
               previous: list[RunStatus] = [], tokenizer: TokenizerState = TokenizerState.NotNeeded,  # noqa: B006
               now: datetime = NOW) -> runs.RunDecision:  # fmt: skip
    return runs.decide_runs(s, "s", make_plan(s), jobs, store or {}, previous, tokenizer, now)


def created(d: runs.RunDecision) -> list[tuple[str, int]]:
    return [(r.name, a) for r, a in d.create]


# ---------------------------------------------------------------- job phase


def test_job_phase_from_conditions() -> None:
    def c(t: str, s: str = "True") -> dict[str, str]:
        return {"type": t, "status": s, "lastTransitionTime": "2026-01-01T00:00:00Z", "reason": t + "R"}

    assert job_phase(None)[0] is JobPhase.Created
    assert job_phase([c("Created")])[0] is JobPhase.Created
    assert job_phase([c("Created"), c("Running")])[0] is JobPhase.Running
    assert job_phase([c("Created"), c("Running", "False"), c("Restarting")])[0] is JobPhase.Restarting
    assert job_phase([c("Created"), c("Running", "False"), c("Succeeded")])[0] is JobPhase.Succeeded
    phase, cond = job_phase([c("Created"), c("Running", "False"), c("Failed")])
    assert phase is JobPhase.Failed and cond is not None and cond["reason"] == "FailedR"
    assert job_phase([c("Created"), c("Suspended")])[0] is JobPhase.Suspended


def test_observe_job_reads_labels_suspend_and_failure_time() -> None:
    obj = {
        "metadata": {"name": "s-d4", "labels": {"miniseries.dev/run": "d4", "miniseries.dev/attempt": "3"},
                     "deletionTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"runPolicy": {"suspend": True}},
        "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "OOM", "message": "killed",
                                   "lastTransitionTime": "2026-01-01T11:59:00Z"}]},
    }  # fmt: skip
    j = observed.observe_job(obj)
    assert (j.name, j.run, j.attempt, j.phase, j.suspended, j.deleting) == (
        "s-d4",
        "d4",
        3,
        JobPhase.Failed,
        True,
        True,
    )
    assert j.since == datetime(2026, 1, 1, 11, 59, tzinfo=UTC) and j.reason == "OOM" and j.message == "killed"
    assert not j.active


# ---------------------------------------------------------------- scheduling


def test_first_wave_fills_the_node_in_plan_order() -> None:
    s = spec()  # 4 runs x 2 GPUs on an 8-GPU node: all at once
    d = run_decide(s)
    # plan order is the plan's: longest runs first, so the wave ends together
    assert created(d) == [("d10", 1), ("d8", 1), ("d6", 1), ("d4", 1)]
    assert all(r.state is RunState.Pending and r.attempts == 1 for r in d.runs)


def test_parallelism_caps_runs_in_flight() -> None:
    d = run_decide(spec(resources={"parallelism": 1}))
    assert created(d) == [("d10", 1)]


def test_gpu_limit_caps_runs_in_flight() -> None:
    s = spec(resources={"gpusPerRun": 3})  # 8 // 3 = 2 runs
    d = run_decide(s)
    assert created(d) == [("d10", 1), ("d8", 1)]
    gpus = sum(r.gpus for r, _ in d.create)
    assert gpus <= s.resources.node_gpus


def test_next_run_starts_when_one_finishes() -> None:
    s = spec(resources={"parallelism": 2})
    running = [job("d10", JobPhase.Running), job("d8", JobPhase.Running)]
    assert created(run_decide(s, running)) == []
    done = [job("d10", JobPhase.Succeeded), job("d8", JobPhase.Running)]
    d = run_decide(s, done, {"d10": RunObservation(results=results("d10", 10))})
    assert created(d) == [("d6", 1)]
    states = {r.name: r.state for r in d.runs}
    assert states == {"d10": RunState.Succeeded, "d8": RunState.Running, "d6": RunState.Pending, "d4": RunState.Pending}


def test_nothing_is_created_twice() -> None:
    """A restart reconciles from what exists: existing jobs are never recreated."""
    s = spec()
    jobs = [job(n, JobPhase.Created) for n in ("d4", "d6", "d8", "d10")]
    d = run_decide(s, jobs)
    assert d.create == [] and d.delete == []
    assert all(r.job_name == f"s-{r.name}" and r.attempts == 1 for r in d.runs)


def test_runs_wait_for_the_tokenizer() -> None:
    s = spec(data={"tokenizerUri": None})
    d = run_decide(s, tokenizer=TokenizerState.Missing)
    assert d.create_tokenizer and d.create == []
    d = run_decide(s, tokenizer=TokenizerState.Running)
    assert not d.create_tokenizer and d.create == []
    assert len(run_decide(s, tokenizer=TokenizerState.Ready).create) == 4


def test_suspend_stops_launches_and_patches_running_jobs() -> None:
    s = spec(suspend=True)
    d = run_decide(s, [job("d4", JobPhase.Running)])
    assert d.create == [] and d.suspend == {"s-d4": True}
    assert {r.name: r.state for r in d.runs}["d4"] is RunState.Suspended
    # unsuspending flips the job back; suspended jobs keep their slot so resuming never overcommits
    d = run_decide(spec(resources={"parallelism": 1}), [job("d4", JobPhase.Suspended, suspended=True)])
    assert d.suspend == {"s-d4": False} and d.create == []


def test_slots_are_counted_from_jobs_in_the_cluster_not_from_status() -> None:
    """The parallelism bug: status lagging behind the cluster (a decider that ran before the
    last status write landed) must not free a slot. A job that exists holds its slot whatever
    status says about its run."""
    s = spec(resources={"parallelism": 1})
    stale = [RunStatus(name=n, depth=int(n[1:])) for n in ("d10", "d8", "d6", "d4")]  # all Pending, attempts 0
    d = run_decide(s, [job("d10", JobPhase.Created)], previous=stale)
    assert d.create == []
    # a job of a run the plan no longer has (or any other attempt) still holds GPUs
    d = run_decide(s, [ObservedJob(name="s-d12", run="d12", attempt=1, phase=JobPhase.Running)])
    assert d.create == []


def test_a_recorded_launch_holds_its_slot_until_its_job_appears() -> None:
    """The handler records a launch (status, fenced by resourceVersion) before creating the job.
    A decider that reads that status before the job exists must not start another run, and
    re-creates the same attempt (a no-op 409 if the first creator got there)."""
    s = spec(resources={"parallelism": 1})
    first = run_decide(s)
    assert created(first) == [("d10", 1)]
    again = run_decide(s, [], previous=first.runs)
    assert created(again) == [("d10", 1)]
    assert {r.name: (r.state, r.attempts) for r in again.runs}["d10"] == (RunState.Pending, 1)
    # a retry due at that moment waits too
    prev = [*first.runs[:1], RunStatus(name="d8", depth=8, state=RunState.Retrying, attempts=1,
                                       retry_at=observed.rfc3339(NOW - timedelta(seconds=1)))]  # fmt: skip
    assert created(run_decide(s, [], previous=prev)) == [("d10", 1)]
    # once the job exists it is an ordinary job: nothing is created
    assert run_decide(s, [job("d10", JobPhase.Created)], previous=again.runs).create == []


def test_a_failed_job_holds_its_slot_until_it_is_deleted_for_its_retry() -> None:
    s = spec(depths=[4, 6], resources={"parallelism": 1})
    d = run_decide(s, [failed("d6")])
    assert d.delete == ["s-d6"] and d.create == []  # not d4 yet: d6's pods may still be going
    d = run_decide(s, [failed("d6", deleting=True)], previous=d.runs)
    assert d.create == []
    d = run_decide(s, [], previous=d.runs)  # gone, backing off: that holds no slot
    assert created(d) == [("d4", 1)]


def test_a_finally_failed_job_is_kept_and_holds_no_slot() -> None:
    s = spec(depths=[4, 6], resources={"parallelism": 1}, retryLimit=0)
    d = run_decide(s, [failed("d6")])
    assert d.delete == [] and created(d) == [("d4", 1)]
    assert {r.name: r.state for r in d.runs}["d6"] is RunState.Failed


# ---------------------------------------------------------------- retries


def failed(run: str, attempt: int = 1, at: datetime = NOW - timedelta(seconds=5), **kw: Any) -> ObservedJob:
    return job(run, JobPhase.Failed, attempt, since=at, reason="OOMKilled", message="boom", **kw)


def test_failed_run_is_recorded_then_deleted_then_retried_after_backoff() -> None:
    s = spec(depths=[4], resources={"parallelism": 1})
    ckpt = "file:///tmp/s/s/d4/ckpt/step_00000020/"
    d = run_decide(s, [failed("d4")], {"d4": RunObservation(checkpoint_uri=ckpt)})
    (r,) = d.runs
    assert r.state is RunState.Retrying and r.attempts == 1 and r.reason == "OOMKilled" and r.message == "boom"
    assert r.checkpoint_uri == ckpt
    assert r.retry_at == observed.rfc3339(NOW - timedelta(seconds=5) + timedelta(seconds=30))
    assert d.delete == ["s-d4"] and d.create == []
    assert [e.reason for e in d.events] == ["RunRetrying"] and ckpt in d.events[0].message
    # while the foreground deletion runs, nothing is recreated and no second event is posted
    d2 = run_decide(s, [failed("d4", deleting=True)], previous=d.runs)
    assert d2.delete == [] and d2.create == [] and d2.events == []
    # gone, but backoff not over
    d3 = run_decide(s, [], previous=d2.runs, now=NOW + timedelta(seconds=10))
    assert d3.create == [] and d3.runs[0].state is RunState.Retrying
    # backoff over: attempt 2, which resumes (the trainer's flags always carry --resume=auto)
    d4 = run_decide(s, [], previous=d3.runs, now=NOW + timedelta(seconds=40))
    assert created(d4) == [("d4", 2)] and d4.runs[0].attempts == 2


def test_backoff_grows_exponentially_and_is_capped() -> None:
    assert [runs.RetryTimings().backoff_seconds(a) for a in (1, 2, 3, 4)] == [30, 60, 120, 240]
    assert runs.RetryTimings().backoff_seconds(20) == runs.RetryTimings().cap_seconds


def test_retry_limit_then_failed() -> None:
    s = spec(depths=[4], retryLimit=2)
    d = run_decide(s, [failed("d4", attempt=3)])
    (r,) = d.runs
    assert r.state is RunState.Failed and r.attempts == 3 and d.delete == [] and d.create == []
    assert [e.reason for e in d.events] == ["RunFailed"]
    # stays failed once recorded, without a job
    assert run_decide(s, [], previous=d.runs).runs[0].state is RunState.Failed


def test_succeeded_job_without_results_counts_as_a_failure() -> None:
    d = run_decide(spec(depths=[4]), [job("d4", JobPhase.Succeeded)])
    assert d.runs[0].state is RunState.Retrying and d.runs[0].reason == "NoResults"
    # whatever reason the backend gives its success (the training-operator always sets one: issue 27)
    said = job(
        "d4", JobPhase.Succeeded, reason="PyTorchJobSucceeded", message="PyTorchJob s-d4 is successfully completed."
    )
    (r,) = run_decide(spec(depths=[4]), [said]).runs
    assert r.reason == "NoResults" and r.message is not None
    assert r.message.startswith("the trainer exited 0 without writing results.json (PyTorchJobSucceeded:")


CORRUPT = "file:///tmp/s/ns/s/d4/results.json (200 bytes) is not valid JSON: Unterminated string at line 9"
FINAL = "file:///tmp/s/ns/s/d4/ckpt/step_00000010/"


def test_unreadable_results_are_evaluated_again_outside_the_retry_budget() -> None:
    """The issue's case: a Succeeded run whose results.json is truncated. Retrying with reason
    ResultsCorrupt naming the object and the parse error, its finished job deleted, then the
    same attempt again (resumes at the final checkpoint: only evaluates), then Succeeded."""
    s = spec(depths=[4], retryLimit=0)  # no retry budget at all: a re-evaluation must not need one
    prev = [RunStatus(name="d4", depth=4, state=RunState.Succeeded, attempts=1, job_name="s-d4")]
    obs = {"d4": RunObservation(results_error=CORRUPT, checkpoint_uri=FINAL)}
    d = run_decide(s, [job("d4", JobPhase.Succeeded)], obs, previous=prev)
    (r,) = d.runs
    assert r.state is RunState.Retrying and r.reason == "ResultsCorrupt" and r.attempts == 1
    assert CORRUPT in (r.message or "") and FINAL in (r.message or "") and "not counted" in (r.message or "")
    assert d.delete == ["s-d4"] and d.create == []
    assert [e.reason for e in d.events] == ["RunResultsCorrupt"] and CORRUPT in d.events[0].message
    d2 = run_decide(s, [job("d4", JobPhase.Succeeded, deleting=True)], obs, previous=d.runs)
    assert d2.create == [] and d2.delete == [] and d2.events == []
    d3 = run_decide(s, [], obs, previous=d2.runs)  # gone: relaunched at once, the same attempt
    assert created(d3) == [("d4", 1)] and d3.runs[0].state is RunState.Pending
    d4 = run_decide(s, [], obs, previous=d3.runs)  # launch recorded, job not visible yet: wait
    assert d4.runs[0].state is RunState.Pending and created(d4) == [("d4", 1)] and d4.events == []
    d5 = run_decide(s, [job("d4", JobPhase.Running)], obs, previous=d4.runs)
    assert d5.runs[0].state is RunState.Running
    d6 = run_decide(s, [job("d4", JobPhase.Succeeded)], {"d4": RunObservation(results=results("d4", 4))},
                    previous=d5.runs)  # fmt: skip
    assert d6.runs[0].state is RunState.Succeeded and d6.runs[0].attempts == 1


def test_unreadable_results_twice_or_without_checkpoint_fail_with_the_reason() -> None:
    s = spec(depths=[4])
    obs = {"d4": RunObservation(results_error=CORRUPT, checkpoint_uri=FINAL)}
    running = [RunStatus(name="d4", depth=4, state=RunState.Running, attempts=1, reason="ResultsCorrupt")]
    d = run_decide(s, [job("d4", JobPhase.Succeeded)], obs, previous=running)
    (r,) = d.runs
    assert r.state is RunState.Failed and r.reason == "ResultsCorrupt" and "again" in (r.message or "")
    assert [e.reason for e in d.events] == ["RunFailed"] and d.create == [] and d.delete == []
    d = run_decide(s, [job("d4", JobPhase.Succeeded)], {"d4": RunObservation(results_error=CORRUPT)})
    assert d.runs[0].state is RunState.Failed and "no checkpoint" in (d.runs[0].message or "")


def test_a_failed_job_with_unreadable_results_is_an_ordinary_failure() -> None:
    obs = {"d4": RunObservation(results_error=CORRUPT, checkpoint_uri=FINAL)}
    d = run_decide(spec(depths=[4]), [failed("d4")], obs)
    assert d.runs[0].state is RunState.Retrying and d.runs[0].reason == "OOMKilled"


def test_a_failed_job_shows_while_the_store_is_unreachable() -> None:
    """reflect_failed_jobs: no store, but the job's failure is not hidden behind Running."""
    st = ScalingSweepStatus(phase="Running", runs=[
        RunStatus(name="d4", depth=4, state=RunState.Running, attempts=1),
        RunStatus(name="d6", depth=6, state=RunState.Running, attempts=3),
        RunStatus(name="d8", depth=8, state=RunState.Running, attempts=1)])  # fmt: skip
    jobs = [failed("d4"), failed("d6", attempt=3), job("d8", JobPhase.Running)]
    out = sweep_status.reflect_failed_jobs(st, jobs, retry_limit=2, now=NOW, generation=1)
    assert [r.state for r in out.runs] == [RunState.Retrying, RunState.Failed, RunState.Running]
    assert out.runs[0].reason == "OOMKilled" and out.runs[0].retry_at is None  # decided once the store answers
    degraded = next(c for c in out.conditions if c.type == "Degraded")
    assert degraded.status == "True" and "d6" in degraded.message
    # and the next full decision, with the store back, takes it from there (retry time, event)
    d = run_decide(spec(depths=[4]), [failed("d4")], previous=out.runs[:1])
    assert d.runs[0].retry_at is not None and [e.reason for e in d.events] == ["RunRetrying"]


def test_backing_off_run_does_not_block_others() -> None:
    s = spec(depths=[4, 6], resources={"parallelism": 1})
    prev = [
        RunStatus(
            name="d4", depth=4, state=RunState.Retrying, attempts=1, retry_at=observed.rfc3339(NOW + timedelta(60))
        )
    ]
    d = run_decide(s, [], previous=prev)
    assert created(d) == [("d6", 1)]


# ---------------------------------------------------------------- status


def test_store_progress_and_results_fill_run_status() -> None:
    s = spec(depths=[4, 6])
    prog = Progress(sweep="s", run="d6", depth=6, step=5, steps=10, tokens=50, loss=4.0, elapsed_seconds=1800,
                    world_size=2)  # fmt: skip
    store = {"d4": RunObservation(results=results("d4", 4, core=0.1), results_uri="file:///x"),
             "d6": RunObservation(progress=prog)}  # fmt: skip
    d = run_decide(s, [job("d4", JobPhase.Succeeded), job("d6", JobPhase.Running)], store)
    r6, r4 = d.runs
    assert (r4.state, r4.core, r4.val_bpb, r4.gpu_seconds, r4.cost_usd) == (RunState.Succeeded, 0.1, 1.2, 7200.0, 6.0)
    assert (r6.state, r6.step, r6.tokens, r6.loss, r6.gpu_seconds) == (RunState.Running, 5, 50, 4.0, 3600.0)
    st = sweep_status.sweep_status(ScalingSweepStatus(), d.runs, suspended=False, tokenizer=TokenizerState.NotNeeded, now=NOW,
                       generation=3)  # fmt: skip
    assert st.progress == "1/2" and st.cost == "$9.00" and st.best_core == 0.1
    assert st.totals.gpu_hours == 3.0 and st.totals.tokens == 150 and st.phase == "Running"
    assert st.observed_generation == 3
    conds = {c.type: c for c in st.conditions}
    assert conds["Ready"].status == "True" and conds["Progressing"].status == "True"
    assert conds["Degraded"].status == "False" and conds["Ready"].observed_generation == 3


def test_phases() -> None:
    ok = RunStatus(name="a", depth=1, state=RunState.Succeeded)
    bad = RunStatus(name="b", depth=2, state=RunState.Failed)
    fit = FitStatus()
    assert sweep_status.phase_of([ok, ok], False, None) == "Fitting"
    assert sweep_status.phase_of([ok, ok], False, fit) == "Succeeded"
    assert sweep_status.phase_of([ok, bad], False, fit) == "Degraded"
    assert sweep_status.phase_of([bad], False, None) == "Failed"
    assert sweep_status.phase_of([RunStatus(name="a", depth=1)], True, None) == "Suspended"
    assert sweep_status.phase_of([RunStatus(name="a", depth=1)], False, None) == "Pending"
    st = sweep_status.sweep_status(ScalingSweepStatus(), [ok, bad], suspended=False, tokenizer=TokenizerState.Ready, now=NOW,
                       generation=1)  # fmt: skip
    conds = {c.type: c for c in st.conditions}
    assert conds["Degraded"].status == "True" and "b" in conds["Degraded"].message
    assert conds["Progressing"].status == "False" and conds["Progressing"].reason == "AllRunsFinished"


def test_condition_transition_time_moves_only_on_flip() -> None:
    c = sweep_status.set_condition([], "Ready", True, "A", "a", NOW, 1)
    later = NOW + timedelta(minutes=5)
    c2 = sweep_status.set_condition(c, "Ready", True, "B", "b", later, 2)
    assert (
        c2[0].last_transition_time == observed.rfc3339(NOW) and c2[0].reason == "B" and c2[0].observed_generation == 2
    )
    c3 = sweep_status.set_condition(c2, "Ready", False, "C", "c", later, 2)
    assert c3[0].last_transition_time == observed.rfc3339(later) and c3[0].status == "False"
    assert len(sweep_status.set_condition(c3, "Degraded", False, "D", "", later, 2)) == 2


# ---------------------------------------------------------------- spec changes


def test_adding_depths_is_allowed_changing_the_model_is_not() -> None:
    old = spec()
    assert (
        spec_changes.refused_changes(old, spec(depths=[4, 6, 8, 10, 12]), {"d4"}, {"d4", "d6", "d8", "d10", "d12"})
        == []
    )
    assert spec_changes.refused_changes(old, spec(suspend=True, retryLimit=5), {"d4"}, {"d4", "d6", "d8", "d10"}) == []
    problems = spec_changes.refused_changes(
        old, spec(model={"sequenceLength": 1024}), {"d4"}, {"d4", "d6", "d8", "d10"}
    )
    assert len(problems) == 1 and "spec.model.sequenceLength" in problems[0] and "1024" in problems[0]
    problems = spec_changes.refused_changes(old, spec(training={"tokensPerParam": 20}), {"d4"}, {"d4"})
    assert any("spec.training.tokensPerParam" in p for p in problems)
    problems = spec_changes.refused_changes(old, spec(data={"shardsUri": "file:///other"}), {"d4"}, {"d4"})
    assert any("spec.data.shardsUri" in p for p in problems)
    problems = spec_changes.refused_changes(old, spec(depths=[6, 8]), {"d4"}, {"d6", "d8"})
    assert problems == ["spec.depths: runs already started cannot be removed: d4"]
    # nothing started yet: anything goes
    assert spec_changes.refused_changes(old, spec(model={"sequenceLength": 1024}), set(), set()) == []


def test_a_change_that_retrains_a_started_run_differently_is_refused() -> None:
    """gpusPerRun is not a frozen section, but it moves the batch split: caught via the plans."""
    old = spec(training={"totalBatchTokens": None})
    new = spec(training={"totalBatchTokens": None}, resources={"gpusPerRun": 4})
    problems = spec_changes.refused_changes(
        old, new, {"d10"}, {"d4", "d6", "d8", "d10"}, make_plan(old), make_plan(new)
    )
    assert len(problems) == 1 and "run d10" in problems[0] and "gpus 2 -> 4" in problems[0]
    # packing changes that leave every started run as it was are fine
    more = spec(training={"totalBatchTokens": None}, resources={"parallelism": 1, "nodeGpus": 4})
    assert (
        spec_changes.refused_changes(old, more, {"d10"}, {"d4", "d6", "d8", "d10"}, make_plan(old), make_plan(more))
        == []
    )
