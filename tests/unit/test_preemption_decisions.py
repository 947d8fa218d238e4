"""Preempted runs (control/decide/runs.py): a trainer that exited EXIT_PREEMPTED after checkpointing, or a
job suspended from outside (Kueue), is Preempted, not Failed: no retry spent, one RunPreempted
Event with the checkpoint step, and a relaunch from that checkpoint without backoff."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from miniseries.api.spec import RunState, RunStatus, ScalingSweepSpec
from miniseries.contract.preemption import EXIT_PREEMPTED
from miniseries.control.decide import runs, sweep_status
from miniseries.control.decide.observations import JobPhase, ObservedJob, RunObservation, TokenizerState
from miniseries.control.decide.pod_troubles import PodTrouble, trouble_of
from miniseries.control.decide.reconcile import decide
from miniseries.plan.planner import make_plan
from tests.unit.test_decide import NOW, spec
from tests.unit.test_decide_sweep import observations
from tests.unit.test_pod_trouble import pod

pytestmark = pytest.mark.preemption
CKPT = "file:///tmp/s/ns/s/d4/ckpt/step_00000137/"
AT_137 = {"d4": RunObservation(checkpoint_uri=CKPT, checkpoint_step=137)}


def exited(code: int, reason: str = "Error") -> PodTrouble:
    """What pods.py makes of the run's pod whose container terminated with `code`."""
    trouble = trouble_of(pod("s-d4-master-0", "d4", container={"state": {"terminated": {
        "exitCode": code, "reason": reason, "message": "preempted by SIGTERM after step 137/500"}}}))  # fmt: skip
    assert trouble is not None
    return trouble


def failed_job(attempt: int = 1, **kw: Any) -> ObservedJob:
    return ObservedJob("s-d4", "d4", attempt, JobPhase.Failed, since=NOW - timedelta(seconds=5),
                       reason="Failed", message="1 Master replica(s) failed", **kw)  # fmt: skip


def step(s: ScalingSweepSpec, jobs: list[ObservedJob], previous: list[RunStatus], *, code: int | None = None,
         now: datetime = NOW, store: dict[str, RunObservation] | None = None) -> runs.RunDecision:  # fmt: skip
    pods = {"d4": exited(code)} if code is not None else {}
    return runs.decide_runs(s, "s", make_plan(s), jobs, AT_137 if store is None else store, previous,
                            TokenizerState.NotNeeded, now, pods=pods)  # fmt: skip


def test_the_preempted_exit_code_is_distinct_from_every_failure_and_signal_death() -> None:
    # 1: an exception, 2: a usage error, 126/127: the shell, 128+N: killed by signal N (143: SIGTERM unhandled)
    assert EXIT_PREEMPTED not in {0, 1, 2, 126, 127} and not 128 < EXIT_PREEMPTED < 160


def test_a_preempted_exit_is_recorded_deleted_and_relaunched_at_once_without_spending_a_retry() -> None:
    s = spec(depths=[4], retryLimit=0)  # no retry at all: a failure would be final
    running = [RunStatus(name="d4", depth=4, state=RunState.Running, attempts=1, job_name="s-d4")]
    d = step(s, [failed_job()], running, code=EXIT_PREEMPTED)
    (r,) = d.runs
    assert (r.state, r.reason, r.attempts, r.preemptions, r.retry_at) == (RunState.Preempted, "Preempted", 1, 1, None)
    assert r.checkpoint_uri == CKPT and "step 137" in (r.message or "")
    assert [(e.reason, e.type) for e in d.events] == [("RunPreempted", "Normal")]
    assert "step 137" in d.events[0].message and CKPT in d.events[0].message
    assert d.delete == ["s-d4"] and d.create == []
    # while its foreground deletion runs: no second Event, no second count, no relaunch
    d2 = step(s, [failed_job(deleting=True)], d.runs, code=EXIT_PREEMPTED, now=NOW + timedelta(seconds=1))
    assert (d2.events, d2.delete, d2.create, d2.runs[0].preemptions) == ([], [], [], 1)
    # gone: relaunched in the same reconcile, no backoff, the same attempt (outside retryLimit)
    d3 = step(s, [], d2.runs, now=NOW + timedelta(seconds=2))
    assert [(r.name, a) for r, a in d3.create] == [("d4", 1)]
    assert (d3.runs[0].state, d3.runs[0].attempts) == (RunState.Pending, 1)
    # it runs again, and is preempted again: counted again, still no retry spent
    d4 = step(s, [ObservedJob("s-d4", "d4", 1, JobPhase.Running)], d3.runs, now=NOW + timedelta(seconds=60))
    assert d4.runs[0].state is RunState.Running
    d5 = step(s, [failed_job()], d4.runs, code=EXIT_PREEMPTED, now=NOW + timedelta(seconds=90))
    assert (d5.runs[0].state, d5.runs[0].preemptions, d5.runs[0].attempts) == (RunState.Preempted, 2, 1)
    assert [e.reason for e in d5.events] == ["RunPreempted"]


def test_the_retry_budget_is_intact_after_preemptions() -> None:
    s = spec(depths=[4], retryLimit=1)
    previous = [RunStatus(name="d4", depth=4, state=RunState.Running, attempts=1, preemptions=3, job_name="s-d4")]
    d = step(s, [failed_job()], previous, code=1)  # a real failure after three preemptions
    (r,) = d.runs
    assert r.state is RunState.Retrying and r.retry_at is not None and r.preemptions == 3
    assert [e.reason for e in d.events] == ["RunRetrying"]


@pytest.mark.parametrize("code", [1, 2, 137, 143])
def test_other_exits_are_failures(code: int) -> None:
    """143 is SIGTERM *not* handled (no checkpoint written), 137 SIGKILL (OOM, or the grace period ran out)."""
    s = spec(depths=[4], retryLimit=0)
    running = [RunStatus(name="d4", depth=4, state=RunState.Running, attempts=1, job_name="s-d4")]
    d = step(s, [failed_job()], running, code=code)
    assert d.runs[0].state is RunState.Failed and d.runs[0].preemptions == 0
    assert [e.reason for e in d.events] == ["RunFailed"]


def test_a_job_suspended_from_outside_is_preempted_and_resumed() -> None:
    """Kueue (or a person) suspends a running job: the training-operator deletes its pods, whose
    trainer checkpoints on SIGTERM. The run is Preempted, with its Event; without a queue the
    operator, whose spec says run, resumes the job at once."""
    s = spec(depths=[4])
    running = [RunStatus(name="d4", depth=4, state=RunState.Running, attempts=1, job_name="s-d4")]
    suspended = ObservedJob("s-d4", "d4", 1, JobPhase.Suspended, suspended=True)
    d = step(s, [suspended], running)
    (r,) = d.runs
    assert (r.state, r.attempts, r.preemptions) == (RunState.Preempted, 1, 1)
    assert [e.reason for e in d.events] == ["RunPreempted"] and "step 137" in d.events[0].message
    assert d.suspend == {"s-d4": False} and d.delete == [] and d.create == []
    # still suspended at the next reconcile: no second Event
    d2 = step(s, [suspended], d.runs, now=NOW + timedelta(seconds=5))
    assert d2.runs[0].state is RunState.Preempted and d2.events == [] and d2.runs[0].preemptions == 1
    # running again
    d3 = step(s, [ObservedJob("s-d4", "d4", 1, JobPhase.Running)], d2.runs, now=NOW + timedelta(seconds=9))
    assert d3.runs[0].state is RunState.Running and d3.events == []


def test_the_sweeps_own_suspension_is_not_a_preemption() -> None:
    suspended = ObservedJob("s-d4", "d4", 1, JobPhase.Suspended, suspended=True)
    was = [RunStatus(name="d4", depth=4, state=RunState.Suspended, attempts=1, job_name="s-d4")]
    d = step(spec(depths=[4], suspend=True), [suspended], was)
    assert d.runs[0].state is RunState.Suspended and d.events == []
    # spec.suspend lifted: the operator resumes it; the run was Suspended, not preempted
    d = step(spec(depths=[4]), [suspended], was)
    assert d.runs[0].state is not RunState.Preempted and d.events == [] and d.suspend == {"s-d4": False}


def test_a_sweep_with_a_preempted_run_is_running_and_not_degraded() -> None:
    s = spec(depths=[4, 6], retryLimit=0)
    first = decide(observations(s))
    jobs = [ObservedJob(f"s-{r.name}", r.name, 1, JobPhase.Running) for r, _ in first.actions.create]
    running = decide(observations(s, first.status, jobs=jobs, now=NOW + timedelta(seconds=10)))
    jobs[0] = replace(failed_job(), name="s-d4", run="d4")
    obs = observations(s, running.status, jobs=jobs, now=NOW + timedelta(seconds=20))
    d = decide(replace(obs, pods={"d4": exited(EXIT_PREEMPTED)}))
    assert next(r for r in d.status.runs if r.name == "d4").state is RunState.Preempted
    assert d.status.phase == "Running"
    degraded = sweep_status.condition(d.status, "Degraded")
    assert degraded is None or degraded.status == "False"
    assert [e.reason for e in d.actions.events if e.reason.startswith("Run")] == ["RunPreempted"]
    assert d.actions.delete == ["s-d4"]


# ---------------------------------------------------------------- the pod's grace period


def grace_spec(depths: list[int], gpus: int = 8, **model: Any) -> ScalingSweepSpec:
    return ScalingSweepSpec.model_validate({"depths": depths, "model": model,
                                            "resources": {"gpusPerRun": gpus, "nodeGpus": 8},
                                            "store": {"uri": "s3://bkt"},
                                            "data": {"shardsUri": "s3://bkt/d", "tokenizerUri": "s3://bkt/t"}})  # fmt: skip


def test_the_grace_period_covers_the_step_and_the_checkpoint_write_with_a_margin() -> None:
    from miniseries.contract.preemption import checkpoint_bytes
    from miniseries.control.backends.pod_template import (
        CHECKPOINT_WRITE_BYTES_PER_SECOND,
        GRACE_MARGIN,
        MIN_GRACE_SECONDS,
        termination_grace_seconds,
    )
    from miniseries.control.backends.pytorchjob import pytorchjob
    from miniseries.plan.run_shape import shape_for

    s = grace_spec([4, 12, 20, 26])
    plan = make_plan(s)
    graces = {r.depth: termination_grace_seconds(s, r) for r in plan.runs}
    for r in plan.runs:
        write = checkpoint_bytes(shape_for(s, r.depth)) / CHECKPOINT_WRITE_BYTES_PER_SECOND
        step_seconds = r.est_hours * 3600 / r.steps
        assert graces[r.depth] >= GRACE_MARGIN * (write + step_seconds) and graces[r.depth] >= MIN_GRACE_SECONDS
        pod = pytorchjob(s, "s", "u", "ns", r)["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] == graces[r.depth]
    assert graces[4] < graces[12] < graces[20] < graces[26]
    # a d20 with the default dials on one 8-GPU node: ~4.2 GB of checkpoint, minutes, not the default 30 s
    d20 = next(r for r in plan.runs if r.depth == 20)
    assert checkpoint_bytes(shape_for(s, 20)) == 4 * 477_102_080 + 2 * 4 * 2 * 32768 * 1280 + 4 * 12 * 20 * 1280**2
    assert 120 < graces[20] < 250
    # AdamW's moments are saved once and Muon's are sharded: the size, so the grace, is the same on 1 GPU as on 8
    one = make_plan(grace_spec([20], gpus=1)).runs[0]
    assert one.gpus == 1 and d20.gpus == 8
    assert checkpoint_bytes(shape_for(grace_spec([20], gpus=1), 20)) == checkpoint_bytes(shape_for(s, 20))


def test_torchruns_exit_1_is_a_preemption_when_this_attempts_progress_says_so() -> None:
    """torchrun (pods of several GPUs) exits 1 whatever its workers' codes, so the 75 is lost: the
    attempt's own progress.json, written after its job was created, says `preempted` instead. A
    stale one from an earlier attempt (before this job existed) does not count."""
    from datetime import UTC, datetime

    from miniseries.contract.preemption import PROGRESS_PREEMPTED
    from miniseries.contract.results import Progress
    from miniseries.control.decide.observations import JobPhase, ObservedJob, RunObservation
    from miniseries.control.decide.pod_troubles import PodTrouble
    from miniseries.control.decide.runs import preempted_exit

    created = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    job = ObservedJob("s-d12", "d12", 1, JobPhase.Failed, created=created)
    torchrun = PodTrouble("s-d12-master-0", "Error", "", exit_code=1)

    def progress(state: str, at: float) -> RunObservation:
        return RunObservation(progress=Progress(sweep="s", run="d12", depth=12, step=40, steps=100, tokens=0,
                                                state=state, updated_at=at))  # fmt: skip

    after, before = created.timestamp() + 300, created.timestamp() - 300
    assert preempted_exit(torchrun, progress(PROGRESS_PREEMPTED, after), job)
    assert not preempted_exit(torchrun, progress(PROGRESS_PREEMPTED, before), job)  # an earlier attempt's
    assert not preempted_exit(torchrun, progress("training", after), job)  # a crash mid-training
    assert not preempted_exit(torchrun, RunObservation(), job)
