"""Kueue wiring (spec.resources.queueName): the fields, the manifests, the Workload reduction and
the decisions under a queue. Pure functions; tests/e2e/test_kueue_operator.py runs the same
against the real Kueue. Workload conditions below are the ones Kueue v0.19.2 writes
(tests/e2e/README.md, "How Kueue is wired")."""

from __future__ import annotations

from typing import Any

import pytest

from miniseries.api.errors import SpecError
from miniseries.api.spec import RunState, RunStatus, ScalingSweepSpec, ScalingSweepStatus
from miniseries.api.sweepfile import parse_sweep
from miniseries.control.backends import manifests as jobs
from miniseries.control.backends.pytorchjob import pytorchjob
from miniseries.control.decide import runs
from miniseries.control.decide import sweep_status as st
from miniseries.control.decide.observations import (
    SUSPENDED_BY,
    JobPhase,
    Observations,
    ObservedJob,
    ObservedWorkload,
    QueueState,
    TokenizerState,
    observe_workload,
)
from miniseries.control.decide.reconcile import decide
from miniseries.plan.planner import make_plan
from tests.unit.test_decide import NOW, spec

PENDING_MSG = (
    "couldn't assign flavors to pod set master: insufficient unused quota for nvidia.com/gpu in flavor h100, "
    "4 more needed"
)
PREEMPTED_MSG = (
    "Preempted to accommodate a workload (UID: 1234, JobUID: 5678) due to prioritization in the ClusterQueue"
)


def queued_spec(**resources: Any) -> ScalingSweepSpec:
    return spec(resources={"gpusPerRun": 2, "nodeGpus": 8, "queueName": "team", **resources})


# ---------------------------------------------------------------- the fields


def sweep_doc(**resources: Any) -> dict[str, Any]:
    return {"apiVersion": "miniseries.dev/v1alpha1", "kind": "ScalingSweep", "metadata": {"name": "s"},
            "spec": {"depths": [4], "store": {"uri": "file:///tmp/s"}, "data": {"shardsUri": "file:///tmp/d"},
                     "resources": resources}}  # fmt: skip


@pytest.mark.parametrize(
    ("resources", "field", "says"),
    [
        ({"queueName": "Team_A"}, "spec.resources.queueName", "'Team_A' is not a valid name; allowed: at most 63"),
        ({"queueName": "a" * 64}, "spec.resources.queueName", "allowed: at most 63 lower-case"),
        ({"queueName": "-team"}, "spec.resources.queueName", "starting and ending with a letter or digit"),
        ({"queueName": "team", "priorityClassName": "High Prio"}, "spec.resources.priorityClassName",
         "'High Prio' is not a valid object name"),
        ({"priorityClassName": "high"}, "spec.resources.priorityClassName", "needs resources.queueName"),
    ],
)  # fmt: skip
def test_queue_fields_are_refused_naming_the_field(resources: dict[str, Any], field: str, says: str) -> None:
    with pytest.raises(SpecError) as e:
        parse_sweep(sweep_doc(**resources))
    assert e.value.fields == [field], str(e.value)
    assert says in str(e.value)


def test_queue_fields_accepted() -> None:
    sw = parse_sweep(sweep_doc(queueName="team-a", priorityClassName="deadline.high"))
    assert (sw.spec.resources.queue_name, sw.spec.resources.priority_class_name) == ("team-a", "deadline.high")
    assert sw.spec.wire()["resources"]["queueName"] == "team-a"


# ---------------------------------------------------------------- the manifests


def test_queued_jobs_carry_the_queue_labels_and_are_created_suspended() -> None:
    s = queued_spec(priorityClassName="high")
    run = make_plan(s).runs[0]
    job = pytorchjob(s, "s", "uid-1", "ns", run)
    labels = job["metadata"]["labels"]
    assert labels[jobs.LABEL_KUEUE_QUEUE] == "team" and labels[jobs.LABEL_KUEUE_PRIORITY] == "high"
    assert labels[jobs.LABEL_SWEEP] == "s" and labels[jobs.LABEL_RUN] == run.name  # the operator's own stay
    assert job["spec"]["runPolicy"]["suspend"] is True
    # Kueue reads the job's labels; the pods carry only the operator's
    pod_labels = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]["labels"]
    assert jobs.LABEL_KUEUE_QUEUE not in pod_labels
    tok = jobs.tokenizer_job(s, "s", "uid-1", "ns")
    assert tok["metadata"]["labels"][jobs.LABEL_KUEUE_QUEUE] == "team"
    assert tok["metadata"]["labels"][jobs.LABEL_KUEUE_PRIORITY] == "high"
    assert tok["spec"]["suspend"] is True


def test_without_a_queue_nothing_changes() -> None:
    s = spec()
    job = pytorchjob(s, "s", "uid-1", "ns", make_plan(s).runs[0])
    assert not any(k.startswith("kueue.x-k8s.io/") for k in job["metadata"]["labels"])
    assert job["spec"]["runPolicy"]["suspend"] is False
    assert pytorchjob(spec(suspend=True), "s", "u", "ns", make_plan(s).runs[0])["spec"]["runPolicy"]["suspend"]
    tok = jobs.tokenizer_job(s, "s", "uid-1", "ns")
    assert "suspend" not in tok["spec"] and jobs.LABEL_KUEUE_QUEUE not in tok["metadata"]["labels"]
    # a queue without a priority class: only the queue label
    q = pytorchjob(queued_spec(), "s", "u", "ns", make_plan(s).runs[0])["metadata"]["labels"]
    assert q[jobs.LABEL_KUEUE_QUEUE] == "team" and jobs.LABEL_KUEUE_PRIORITY not in q


# ---------------------------------------------------------------- the Workload, reduced


def cond(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-01-01T11:00:00Z"}  # fmt: skip


def workload(job: str = "s-d4", uid: str = "job-uid", conds: list[dict[str, Any]] | None = None,
             active: bool | None = None, ours: bool = False) -> dict[str, Any]:  # fmt: skip
    meta: dict[str, Any] = {"name": f"pytorchjob-{job}-abcde", "namespace": "ns",
                            "ownerReferences": [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                                                 "name": job, "uid": uid, "controller": True}]}  # fmt: skip
    if ours:
        meta["annotations"] = {SUSPENDED_BY: "spec.suspend"}
    wl_spec: dict[str, Any] = {"queueName": "team"}
    if active is not None:
        wl_spec["active"] = active
    return {"metadata": meta, "spec": wl_spec, "status": {"conditions": conds or []}}


def test_workload_states_from_kueues_conditions() -> None:
    assert observe_workload({"metadata": {"name": "w", "ownerReferences": [{"kind": "Pod", "name": "p"}]}}) is None

    behind = observe_workload(workload())  # not tried yet: no QuotaReserved condition at all
    assert behind is not None and behind.state is QueueState.Queued and behind.reason == "Pending"
    assert (behind.job, behind.job_uid, behind.active) == ("s-d4", "job-uid", True)

    head = observe_workload(workload(conds=[cond("QuotaReserved", "False", "Pending", PENDING_MSG)]))
    assert head is not None and (head.state, head.reason, head.message) == (QueueState.Queued, "Pending", PENDING_MSG)

    admitted = observe_workload(workload(conds=[cond("QuotaReserved", "True", "QuotaReserved"),
                                                cond("Admitted", "True", "Admitted", "The workload is admitted")]))  # fmt: skip
    assert admitted is not None and (admitted.state, admitted.reason) == (QueueState.Admitted, "Admitted")

    # preempted: Evicted while still Admitted (its job stopping), then requeued and waiting again
    stopping = observe_workload(workload(conds=[
        cond("QuotaReserved", "True", "QuotaReserved"), cond("Admitted", "True", "Admitted"),
        cond("Evicted", "True", "Preempted", PREEMPTED_MSG), cond("Preempted", "True", "InClusterQueue", PREEMPTED_MSG),
    ]))  # fmt: skip
    assert stopping is not None and (stopping.state, stopping.reason) == (QueueState.Preempted, "Preempted")
    waiting = observe_workload(workload(conds=[
        cond("QuotaReserved", "False", "Pending", PENDING_MSG), cond("Admitted", "False", "NoReservation"),
        cond("Evicted", "True", "Preempted", PREEMPTED_MSG), cond("Preempted", "True", "InClusterQueue", PREEMPTED_MSG),
        cond("Requeued", "True", "Preempted", PREEMPTED_MSG),
    ]))  # fmt: skip
    assert waiting is not None and waiting.state is QueueState.Preempted
    assert waiting.message == f"{PREEMPTED_MSG}; {PENDING_MSG}"
    # readmitted: Kueue resets Evicted and Preempted when it reserves quota again
    back = observe_workload(workload(conds=[
        cond("QuotaReserved", "True", "QuotaReserved"), cond("Admitted", "True", "Admitted"),
        cond("Evicted", "False", "QuotaReserved"), cond("Preempted", "False", "QuotaReserved"),
    ]))  # fmt: skip
    assert back is not None and back.state is QueueState.Admitted

    off = observe_workload(workload(active=False, ours=True,
                                    conds=[cond("Evicted", "True", "Deactivated", "The workload is deactivated")]))  # fmt: skip
    assert off is not None and off.state is QueueState.Deactivated and not off.active and off.deactivated_by_operator
    done = observe_workload(
        workload(conds=[cond("Admitted", "True", "Admitted"), cond("Finished", "True", "Succeeded")])
    )
    assert done is not None and done.state is QueueState.Finished


# ---------------------------------------------------------------- decisions under a queue


def wl(state: QueueState, reason: str = "", message: str = "", *, active: bool = True, ours: bool = False,
       job: str = "s-d4") -> ObservedWorkload:  # fmt: skip
    return ObservedWorkload(name=f"pytorchjob-{job}-x", job=job, job_uid="u", state=state, reason=reason,
                            message=message, active=active, deactivated_by_operator=ours)  # fmt: skip


def qjob(run: str, phase: JobPhase, suspended: bool, attempt: int = 1) -> ObservedJob:
    return ObservedJob(name=f"s-{run}", run=run, attempt=attempt, phase=phase, suspended=suspended, uid=f"uid-{run}")


def decide_q(s: ScalingSweepSpec, js: list[ObservedJob], wls: dict[str, ObservedWorkload],
             previous: list[RunStatus] | None = None) -> runs.RunDecision:  # fmt: skip
    return runs.decide_runs(s, "s", make_plan(s), js, {}, previous or [], TokenizerState.NotNeeded, NOW,
                            workloads=wls)  # fmt: skip


def by_name(d: runs.RunDecision) -> dict[str, RunStatus]:
    return {r.name: r for r in d.runs}


def test_the_operator_launches_up_to_its_bound_and_kueue_decides_which_run() -> None:
    s = queued_spec()  # 4 runs of 2 GPUs on an 8-GPU node: all four may be in flight
    d = decide_q(s, [], {})
    assert [r.name for r, _ in d.create] == [r.name for r in make_plan(s).runs]  # plan order, all four
    s2 = queued_spec(parallelism=2)  # parallelism still bounds the jobs the operator creates
    assert len(decide_q(s2, [], {}).create) == 2
    # queued jobs hold their slots: nothing more is launched while two wait in the queue
    js = [qjob("d4", JobPhase.Suspended, True), qjob("d6", JobPhase.Suspended, True)]
    assert decide_q(s2, js, {}).create == []


def test_queued_admitted_running_states_with_kueues_reason_and_events() -> None:
    s = queued_spec(parallelism=3)
    js = [qjob("d4", JobPhase.Suspended, True), qjob("d6", JobPhase.Suspended, True),
          qjob("d8", JobPhase.Suspended, True)]  # fmt: skip
    wls = {"d4": wl(QueueState.Queued, "Pending", PENDING_MSG, job="s-d4"),
           "d6": wl(QueueState.Admitted, "Admitted", "The workload is admitted", job="s-d6")}  # fmt: skip
    d = decide_q(s, js, wls)
    r = by_name(d)
    assert (r["d4"].state, r["d4"].reason, r["d4"].message) == (RunState.Queued, "Pending", PENDING_MSG)
    assert r["d6"].state is RunState.Admitted and r["d6"].reason == "Admitted"
    assert r["d8"].state is RunState.Queued and "no Workload yet" in (r["d8"].message or "")  # Kueue has not seen it
    assert d.suspend == {} and d.activate == {}  # Kueue owns runPolicy.suspend
    assert {(e.reason, e.type) for e in d.events} == {("RunQueued", "Normal"), ("RunAdmitted", "Normal")}
    assert any(PENDING_MSG in e.message for e in d.events if e.reason == "RunQueued")

    # the same again: no new events; a new Kueue message on a run still queued: shown, no event
    again = decide_q(s, js, {**wls, "d4": wl(QueueState.Queued, "Pending", "2 more needed")}, d.runs)
    assert again.events == [] and by_name(again)["d4"].message == "2 more needed"

    # Kueue unsuspended d6 and its pods run: Running, Kueue's words cleared
    js2 = [js[0], qjob("d6", JobPhase.Running, False), js[2]]
    r2 = by_name(decide_q(s, js2, wls, d.runs))
    assert r2["d6"].state is RunState.Running and r2["d6"].reason is None and r2["d6"].message is None


def test_the_operator_never_unsuspends_a_queued_job_and_suspends_through_the_workload() -> None:
    s = queued_spec()
    js = [qjob("d4", JobPhase.Suspended, True), qjob("d6", JobPhase.Running, False)]
    wls = {"d4": wl(QueueState.Queued, "Pending", PENDING_MSG, job="s-d4"),
           "d6": wl(QueueState.Admitted, "Admitted", job="s-d6")}  # fmt: skip
    # Without a queue this sweep's suspended d4 would be unsuspended (spec.suspend is false):
    plain = runs.decide_runs(spec(), "s", make_plan(spec()), js, {}, [], TokenizerState.NotNeeded, NOW)
    assert plain.suspend == {"s-d4": False}
    # under a queue: never
    assert decide_q(s, js, wls).suspend == {}

    # spec.suspend: the workloads are deactivated (Kueue would unsuspend an admitted job the
    # operator suspended), not the jobs patched
    sus = queued_spec().model_copy(update={"suspend": True})
    d = decide_q(sus, js, wls)
    assert d.suspend == {}
    assert d.activate == {"pytorchjob-s-d4-x": False, "pytorchjob-s-d6-x": False}
    assert {r.state for r in d.runs if r.name in ("d4", "d6")} == {RunState.Suspended}
    assert d.touch_the_cluster()

    # deactivated: stays so while suspended
    off = {k: wl(QueueState.Deactivated, "Deactivated", active=False, ours=True, job=f"s-{k}") for k in ("d4", "d6")}
    js_off = [qjob("d4", JobPhase.Suspended, True), qjob("d6", JobPhase.Suspended, True)]
    assert decide_q(sus, js_off, off).activate == {}
    # unsuspended: the operator's deactivations are undone, and only those
    off["d6"] = wl(QueueState.Deactivated, "Deactivated", active=False, ours=False, job="s-d6")  # an admin's
    d = decide_q(s, js_off, off)
    assert d.activate == {"pytorchjob-s-d4-x": True} and d.suspend == {}
    r = by_name(d)
    assert r["d6"].state is RunState.Suspended and r["d6"].reason == "Deactivated"


def test_a_preempted_run_is_not_a_failure_and_spends_no_attempt() -> None:
    s = queued_spec()
    prev = [RunStatus(name="d4", depth=4, state=RunState.Running, attempts=1, job_name="s-d4")]
    # Kueue evicted the workload; the job is being suspended (still Running) or already is
    for j in (qjob("d4", JobPhase.Running, False), qjob("d4", JobPhase.Suspended, True)):
        d = decide_q(s, [j], {"d4": wl(QueueState.Preempted, "Preempted", PREEMPTED_MSG)}, prev)
        r = by_name(d)["d4"]
        assert (r.state, r.attempts, r.reason, r.message) == (RunState.Preempted, 1, "Preempted", PREEMPTED_MSG)
        assert d.delete == [] and d.create[:1] != [("d4", 2)] and d.suspend == {}
        assert [(e.reason, e.type) for e in d.events] == [("RunPreempted", "Warning")]
        assert "no attempt spent" in d.events[0].message
        # the preempted job still holds its slot: with parallelism 1 nothing else starts
        one = queued_spec(parallelism=1)
        assert decide_q(one, [j], {"d4": wl(QueueState.Preempted, "Preempted", PREEMPTED_MSG)}, prev).create == []
    # readmitted: Admitted, then Running, same attempt
    d2 = decide_q(s, [qjob("d4", JobPhase.Suspended, True)], {"d4": wl(QueueState.Admitted, "Admitted")}, d.runs)
    assert by_name(d2)["d4"].state is RunState.Admitted and by_name(d2)["d4"].attempts == 1
    assert [e.reason for e in d2.events] == ["RunAdmitted"]


def test_the_local_runner_queues_nothing() -> None:
    # decide_runs without workloads (the local runner): a queue name changes no decision
    s = queued_spec()
    j = qjob("d4", JobPhase.Running, False)
    d = runs.decide_runs(s, "s", make_plan(s), [j], {}, [], TokenizerState.NotNeeded, NOW)
    assert by_name(d)["d4"].state is RunState.Running and d.activate == {}


def test_sweep_phase_queued_and_progressing_say_what_waits() -> None:
    s = queued_spec(parallelism=2)
    plan = make_plan(s)
    js = [qjob("d4", JobPhase.Suspended, True), qjob("d6", JobPhase.Suspended, True)]
    wls = {"d4": wl(QueueState.Queued, "Pending", PENDING_MSG, job="s-d4"),
           "d6": wl(QueueState.Preempted, "Preempted", PREEMPTED_MSG, job="s-d6")}  # fmt: skip
    o = Observations(sweep="s", spec=s, plan=plan, previous=ScalingSweepStatus(), jobs=js, store={},
                     tokenizer=TokenizerState.NotNeeded, now=NOW, workloads=wls)  # fmt: skip
    status = decide(o).status
    assert status.phase == "Queued"
    progressing = st.condition(status, "Progressing")
    assert progressing is not None and progressing.reason == "RunsQueued"
    assert "d4 Queued" in progressing.message and "d6 Preempted" in progressing.message
    degraded = st.condition(status, "Degraded")
    assert degraded is not None and degraded.status == "False"  # waiting in a queue is not a failure
    assert status.totals.runs_failed == 0
    # one admitted: the sweep runs
    o2 = Observations(sweep="s", spec=s, plan=plan, previous=status, jobs=js, store={},
                      tokenizer=TokenizerState.NotNeeded, now=NOW,
                      workloads={**wls, "d4": wl(QueueState.Admitted, "Admitted", job="s-d4")})  # fmt: skip
    assert decide(o2).status.phase == "Running"
