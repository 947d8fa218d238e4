"""PyTorchJobs shaped exactly as the operator makes them (control/backends/manifests.py ``pytorchjob()``), queued
through the real Kueue (tests/harness/kueue.py) and run by the real training-operator on kwok 8-GPU
nodes: a ClusterQueue's GPU quota admits fewer jobs than are submitted, the rest wait suspended
with the reason Kueue gives, and are admitted as quota frees; a higher WorkloadPriorityClass
preempts a lower one, whose job is suspended again and readmitted later.

Each test prints one JSON line (``KUEUE ...``) with the admission timeline and Kueue's exact
condition reasons and messages: what the operator's status will show."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from miniseries.api.spec import ScalingSweepSpec
from miniseries.control.backends.pytorchjob import pytorchjob
from miniseries.plan.planner import make_plan
from tests.harness.binaries import REPO
from tests.harness.kueue import KUEUE_API, PRIORITY_LABEL, QUEUE_LABEL, KueueCluster, fresh_namespace
from tests.harness.processes import Unreachable, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.kueue, pytest.mark.slow]

DEADLINE = 120  # a safety net: every wait below ends on a state
GPU = "nvidia.com/gpu"
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}  # what gpu_node() labels; the flavor's nodeLabels


@pytest.fixture(scope="module")
def kq(kueue_shared: KueueCluster) -> KueueCluster:
    """The session's Kueue cluster (tests/e2e/conftest.py), shared with the other Kueue modules."""
    return kueue_shared


@pytest.fixture
def ns(kq: KueueCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace on this module's cluster (tests/conftest.py's ``namespace`` is the shared one's)."""
    with fresh_namespace(kq, request.node.name) as name:
        yield name


# ---- objects
def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:5]}"


def queues(kc: KueueCluster, gpus: int, namespaces: list[str], preemption: bool = False) -> tuple[str, str]:
    """A ResourceFlavor for the H100 nodes, a ClusterQueue with ``gpus`` of GPU quota (CPU and
    memory covered generously: Kueue's default quotaCheckStrategy, BlockUndeclared, refuses a
    workload requesting a resource its ClusterQueue does not cover), and a LocalQueue of that
    name in each namespace; all Active. Returns (ClusterQueue, LocalQueue) names."""
    flavor, cq, lq = unique("h100"), unique("gpus"), "team"
    cq_spec: dict[str, Any] = {
        "namespaceSelector": {},
        "resourceGroups": [{"coveredResources": ["cpu", "memory", GPU], "flavors": [{"name": flavor, "resources": [
            {"name": "cpu", "nominalQuota": "384"}, {"name": "memory", "nominalQuota": "4096Gi"},
            {"name": GPU, "nominalQuota": str(gpus)}]}]}],
    }  # fmt: skip
    if preemption:
        cq_spec["preemption"] = {"withinClusterQueue": "LowerPriority"}
    kc.apply([{"apiVersion": KUEUE_API, "kind": "ResourceFlavor", "metadata": {"name": flavor},
               "spec": {"nodeLabels": H100}},
              {"apiVersion": KUEUE_API, "kind": "ClusterQueue", "metadata": {"name": cq}, "spec": cq_spec}]
             + [{"apiVersion": KUEUE_API, "kind": "LocalQueue", "metadata": {"name": lq, "namespace": ns},
                 "spec": {"clusterQueue": cq}} for ns in namespaces])  # fmt: skip
    wait_for(f"ClusterQueue {cq} Active", lambda: condition(kueue_get(kc, "clusterqueues", cq), "Active")["status"]
             == "True", DEADLINE)  # fmt: skip
    for ns in namespaces:
        wait_for(f"LocalQueue {ns}/{lq} Active", lambda n=ns: condition(kueue_get(kc, "localqueues", lq, n), "Active")
                 ["status"] == "True", DEADLINE)  # fmt: skip
    return cq, lq


def sweep(kc: KueueCluster, ns: str, name: str, gpus_per_run: int = 4) -> tuple[ScalingSweepSpec, str]:
    """A real ScalingSweep (examples/miniseries.yaml, ``gpus_per_run`` GPUs a run) to own the jobs,
    as the operator's PyTorchJobs are owned: returns its spec and uid."""
    doc = yaml.safe_load((REPO / "examples" / "miniseries.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": ns}
    doc["spec"]["resources"].update(gpusPerRun=gpus_per_run, parallelism=8 // gpus_per_run)
    kc.apply(doc)
    uid = kc.kubectl("get", "scalingsweep", name, "-n", ns, "-o=jsonpath={.metadata.uid}").stdout
    return ScalingSweepSpec.model_validate(doc["spec"]), uid


def queued_job(
    spec: ScalingSweepSpec, sweep_name: str, uid: str, ns: str, run_index: int, queue: str, priority: str | None = None
) -> dict[str, Any]:
    """pytorchjob() of a planned run, plus what a queue name adds: the LocalQueue label (and
    the priority class label) and runPolicy.suspend=true, so that Kueue decides when it starts."""
    job = pytorchjob(spec, sweep_name, uid, ns, make_plan(spec).runs[run_index])
    job["metadata"]["labels"][QUEUE_LABEL] = queue
    if priority:
        job["metadata"]["labels"][PRIORITY_LABEL] = priority
    job["spec"]["runPolicy"]["suspend"] = True
    return job


# ---- reading state
def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    for c in obj.get("status", {}).get("conditions", []):
        if c["type"] == kind:
            return c  # type: ignore[no-any-return]
    return {"type": kind, "status": "Unknown"}


def kueue_get(kc: KueueCluster, plural: str, name: str, ns: str | None = None) -> dict[str, Any]:
    where = ["-n", ns] if ns else []
    return json.loads(kc.kubectl("get", f"{plural}.kueue.x-k8s.io", name, *where, "-o=json").stdout)  # type: ignore[no-any-return]


def pytorchjobs(kc: KueueCluster, ns: str) -> dict[str, dict[str, Any]]:
    items = json.loads(kc.kubectl("get", "pytorchjobs", "-n", ns, "-o=json").stdout)["items"]
    return {j["metadata"]["name"]: j for j in items}


def workloads(kc: KueueCluster, ns: str) -> dict[str, dict[str, Any]]:
    """The namespace's Workloads by the name of the PyTorchJob that owns each."""
    items = json.loads(kc.kubectl("get", "workloads.kueue.x-k8s.io", "-n", ns, "-o=json").stdout)["items"]
    return {o["name"]: w for w in items for o in w["metadata"].get("ownerReferences", []) if o["kind"] == "PyTorchJob"}


def pods(kc: KueueCluster, ns: str, job: str) -> list[dict[str, Any]]:
    sel = f"training.kubeflow.org/job-name={job}"
    return json.loads(kc.kubectl("get", "pods", "-n", ns, "-l", sel, "-o=json").stdout)["items"]  # type: ignore[no-any-return]


def owner(workload: dict[str, Any]) -> str:
    """The PyTorchJob a Workload (or a visibility API entry) stands for."""
    return next(o["name"] for o in workload["metadata"]["ownerReferences"] if o["kind"] == "PyTorchJob")


def suspended(job: dict[str, Any]) -> bool:
    return bool(job["spec"].get("runPolicy", {}).get("suspend", False))


def brief(c: dict[str, Any]) -> dict[str, Any]:
    return {k: c.get(k) for k in ("type", "status", "reason", "message")}


class Timeline:
    """When (seconds since ``t0``, by polling) each job was first seen unsuspended by Kueue."""

    def __init__(self, kc: KueueCluster, ns: str, t0: float) -> None:
        self.kc, self.ns, self.t0 = kc, ns, t0
        self.admitted: dict[str, float] = {}

    def poll(self) -> dict[str, dict[str, Any]]:
        now = round(time.monotonic() - self.t0, 2)
        current = pytorchjobs(self.kc, self.ns)
        for name, job in current.items():
            if not suspended(job):
                self.admitted.setdefault(name, now)
        return current

    def until(self, what: str, check: Any) -> Any:
        return wait_for(what, lambda: check(self.poll()), DEADLINE)


def finish(kc: KueueCluster, ns: str, job: str) -> None:
    """What the kubelet reports when the trainer exits 0: the master pod Succeeded."""
    (pod,) = pods(kc, ns, job)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    status = {"status": {"phase": "Succeeded", "conditions": [{"type": "Ready", "status": "False"}],
                         "containerStatuses": [{"name": "pytorch", "image": c["image"], "ready": False,
                                                "restartCount": 0, "imageID": "", "started": False,
                                                "state": {"terminated": {"exitCode": 0, "reason": "Completed",
                                                                         "startedAt": now, "finishedAt": now}}}
                                               for c in pod["spec"]["containers"]]}}  # fmt: skip
    kc.kubectl("patch", "pod", pod["metadata"]["name"], "-n", ns, "--subresource=status", "--type=merge",
               "-p", json.dumps(status))  # fmt: skip


def running_pods(kc: KueueCluster, ns: str, job: str) -> list[dict[str, Any]]:
    return [p for p in pods(kc, ns, job) if p["status"].get("phase") == "Running"]


# ---- the tests
def test_quota_admits_two_jobs_of_four_and_the_rest_as_quota_frees(kq: KueueCluster, ns: str) -> None:
    """Quota 8 GPUs, four 4-GPU jobs: two are admitted and run, two wait suspended with Kueue's
    reason and a queue position; one finishing admits the third, one deleted admits the fourth."""
    kc = kq
    cq, lq = queues(kc, 8, [ns])
    spec, uid = sweep(kc, ns, "miniseries")
    manifests = [queued_job(spec, "miniseries", uid, ns, i, lq) for i in range(4)]
    names = [m["metadata"]["name"] for m in manifests]
    t0 = time.monotonic()
    created: dict[str, float] = {}
    for m in manifests:  # one after another, as the operator creates a wave
        kc.apply(m)
        created[m["metadata"]["name"]] = round(time.monotonic() - t0, 2)
    tl = Timeline(kc, ns, t0)

    # Two admitted, running on H100 nodes. Which two is Kueue's order: priority, then creation
    # time in whole seconds, then Workload UID; a wave created within one second has no order.
    def two_admitted(js: dict[str, dict[str, Any]]) -> list[str] | None:
        admitted = sorted(n for n, j in js.items() if not suspended(j))
        if len(admitted) > 2:
            raise Unreachable(f"more jobs admitted than 8 GPUs of quota allow: {admitted}")
        return admitted if len(js) == 4 and len(admitted) == 2 else None

    first, second = tl.until("two jobs admitted", two_admitted)
    for name in (first, second):
        wait_for(f"{name} running", lambda n=name: len(running_pods(kc, ns, n)) == 1, DEADLINE)
        (pod,) = pods(kc, ns, name)
        assert pod["spec"]["nodeSelector"] == H100  # the flavor's nodeLabels, injected on admission
        assert pod["spec"]["containers"][0]["resources"]["limits"][GPU] == "4"

    # The other two wait, in the order of Kueue's visibility API (the only place a position is
    # given). Kueue's reason is carried by a workload its scheduler tried and could not fit; one
    # not tried while another waits may have no QuotaReserved condition at all. Which of the two
    # was tried depends on when the scheduler ran relative to the creates, so the test asks that
    # one of them carries the reason, not which.
    def queue_order(_: Any) -> tuple[list[str], list[dict[str, Any]]] | None:
        items = kc.visibility(f"/namespaces/{ns}/localqueues/{lq}/pendingworkloads")["items"]
        order = [owner(w) for w in items]
        if sorted(order) != sorted(set(names) - {first, second}):
            return None
        ws = workloads(kc, ns)
        tried = [n for n in order if (c := condition(ws[n], "QuotaReserved"))["status"] == "False" and c.get("message")]
        return (order, items) if tried else None

    (third, fourth), by_lq = tl.until("a queued workload pending with Kueue's reason", queue_order)
    jobs_now = pytorchjobs(kc, ns)
    ws = workloads(kc, ns)
    for n in (third, fourth):
        assert suspended(jobs_now[n]) and pods(kc, ns, n) == []
        assert condition(ws[n], "Admitted")["status"] != "True"
        assert condition(jobs_now[n], "Suspended")["status"] == "True"
        reserved = condition(ws[n], "QuotaReserved")
        assert reserved["status"] != "True", reserved
        if reserved.get("message"):
            assert reserved["reason"] == "Pending", reserved
            assert f"insufficient unused quota for {GPU}" in reserved["message"], reserved
            assert "4 more needed" in reserved["message"], reserved
    for n in (first, second):
        assert condition(ws[n], "Admitted")["status"] == "True"
        assert condition(ws[n], "QuotaReserved")["status"] == "True"
    positions = {owner(w): {k: w.get(k) for k in ("positionInLocalQueue", "positionInClusterQueue")} for w in by_lq}
    assert positions == {
        third: {"positionInLocalQueue": 0, "positionInClusterQueue": 0},
        fourth: {"positionInLocalQueue": 1, "positionInClusterQueue": 1},
    }, by_lq
    by_cq = kc.visibility(f"/clusterqueues/{cq}/pendingworkloads")["items"]
    assert [owner(w) for w in by_cq] == [third, fourth]
    cq_status = kueue_get(kc, "clusterqueues", cq)["status"]
    lq_status = kueue_get(kc, "localqueues", lq, ns)["status"]
    # Stored as v1beta2; read as v1beta1, the API server converts through Kueue's /convert webhook.
    old_api = json.loads(kc.kubectl("get", f"clusterqueues.v1beta1.kueue.x-k8s.io/{cq}", "-o=json").stdout)
    assert old_api["apiVersion"] == "kueue.x-k8s.io/v1beta1"
    assert old_api["status"]["admittedWorkloads"] == 2
    assert (cq_status["admittedWorkloads"], cq_status["pendingWorkloads"]) == (2, 2)

    # The first finishes (its pod Succeeded): the third is admitted, the fourth still waits.
    t_finish = time.monotonic()
    finish(kc, ns, first)
    tl.until("third admitted", lambda js: not suspended(js[third]))
    finish_to_admit = round(time.monotonic() - t_finish, 2)
    finished = condition(workloads(kc, ns)[first], "Finished")
    assert finished["status"] == "True", finished
    assert condition(pytorchjobs(kc, ns)[first], "Succeeded")["status"] == "True"
    assert suspended(pytorchjobs(kc, ns)[fourth])
    wait_for(f"{third} running", lambda: len(running_pods(kc, ns, third)) == 1, DEADLINE)
    after_finish = kc.visibility(f"/namespaces/{ns}/localqueues/{lq}/pendingworkloads")["items"]
    assert [w.get("positionInLocalQueue") for w in after_finish] == [0]

    # The second is deleted (the operator deleting a run): the fourth is admitted.
    t_delete = time.monotonic()
    kc.kubectl("delete", "pytorchjob", second, "-n", ns, "--wait=false")
    tl.until("fourth admitted", lambda js: fourth in js and not suspended(js[fourth]))
    delete_to_admit = round(time.monotonic() - t_delete, 2)
    wait_for(f"{fourth} running", lambda: len(running_pods(kc, ns, fourth)) == 1, DEADLINE)
    assert kc.visibility(f"/namespaces/{ns}/localqueues/{lq}/pendingworkloads")["items"] == []
    admitted = {n: condition(w, "Admitted") for n, w in workloads(kc, ns).items()}
    print("KUEUE " + json.dumps({
        "test": "quota", "created_s": created, "admitted_s": tl.admitted,
        "create_to_admitted_s": {n: round(tl.admitted[n] - created[n], 2) for n in tl.admitted},
        "finish_to_next_admitted_s": finish_to_admit, "delete_to_next_admitted_s": delete_to_admit,
        "pending_conditions": {n: brief(condition(ws[n], "QuotaReserved")) for n in (third, fourth)},
        "admitted_condition": {n: brief(c) for n, c in admitted.items()},
        "finished_condition": brief(finished),
        "positions": positions, "pending_workloads_item": by_lq[0],
        "clusterqueue_status": cq_status, "localqueue_status": lq_status,
    }))  # fmt: skip


def test_higher_priority_preempts_lower_and_the_preempted_job_returns(kq: KueueCluster, ns: str) -> None:
    """Quota 8, two low-priority 4-GPU jobs running; a high-priority sweep's job in another
    namespace preempts one of them: its PyTorchJob is suspended again and its pod deleted; when the
    high-priority job finishes, the preempted one is admitted again and runs."""
    kc, low_ns = kq, ns
    high_ns = unique("team-high")
    kc.create_namespace(high_ns)
    try:
        low_pc, high_pc = unique("low"), unique("high")
        kc.apply([{"apiVersion": KUEUE_API, "kind": "WorkloadPriorityClass", "metadata": {"name": low_pc},
                   "value": 100, "description": "exploratory sweeps"},
                  {"apiVersion": KUEUE_API, "kind": "WorkloadPriorityClass", "metadata": {"name": high_pc},
                   "value": 1000, "description": "the deadline sweep"}])  # fmt: skip
        cq, lq = queues(kc, 8, [low_ns, high_ns], preemption=True)
        low_spec, low_uid = sweep(kc, low_ns, "explore")
        high_spec, high_uid = sweep(kc, high_ns, "deadline")
        low = [queued_job(low_spec, "explore", low_uid, low_ns, i, lq, low_pc) for i in range(2)]
        t0 = time.monotonic()
        tl = Timeline(kc, low_ns, t0)
        kc.apply(low)
        low_names = [j["metadata"]["name"] for j in low]
        tl.until("both low-priority jobs admitted", lambda js: all(not suspended(js[n]) for n in low_names))
        for n in low_names:
            wait_for(f"{n} running", lambda n=n: len(running_pods(kc, low_ns, n)) == 1, DEADLINE)

        high = queued_job(high_spec, "deadline", high_uid, high_ns, 0, lq, high_pc)
        high_name = high["metadata"]["name"]
        t_high = time.monotonic()
        kc.apply(high)
        high_tl = Timeline(kc, high_ns, t_high)

        def one_preempted(js: dict[str, dict[str, Any]]) -> str | None:
            back = [n for n in low_names if suspended(js[n])]
            if len(back) > 1:
                raise Unreachable(f"both low-priority jobs suspended: {back}")
            return back[0] if back else None

        victim = tl.until("one low-priority job suspended again", one_preempted)
        preempt_s = round(time.monotonic() - t_high, 2)
        survivor = next(n for n in low_names if n != victim)
        high_tl.until("high-priority job admitted", lambda js: not suspended(js[high_name]))
        high_admit_s = round(time.monotonic() - t_high, 2)
        wait_for("victim's pod deleted", lambda: pods(kc, low_ns, victim) == [], DEADLINE)
        wait_for(f"{high_name} running", lambda: len(running_pods(kc, high_ns, high_name)) == 1, DEADLINE)
        wait_for(f"{survivor} still running", lambda: len(running_pods(kc, low_ns, survivor)) == 1, DEADLINE)

        def evicted(_: Any) -> dict[str, Any] | None:
            w = workloads(kc, low_ns)[victim]
            conds = {t: condition(w, t) for t in ("Evicted", "Preempted", "QuotaReserved", "Admitted", "Requeued")}
            return (
                conds if conds["Evicted"]["status"] == "True" and conds["QuotaReserved"]["status"] == "False" else None
            )

        conds = tl.until("victim's workload evicted and requeued", evicted)
        assert conds["Evicted"]["reason"] == "Preempted", conds
        assert conds["Preempted"]["status"] == "True" and conds["Preempted"]["reason"] == "InClusterQueue", conds
        assert conds["Admitted"]["status"] == "False", conds

        # The training-operator's Suspended condition, the visibility API and the ClusterQueue's counts
        # each follow the eviction on their own controller's time: wait until all three say it.
        def settled() -> tuple[dict[str, Any], list[Any], dict[str, Any]] | None:
            victim_job = pytorchjobs(kc, low_ns)[victim]
            pending = kc.visibility(f"/namespaces/{low_ns}/localqueues/{lq}/pendingworkloads")["items"]
            cq_status = kueue_get(kc, "clusterqueues", cq)["status"]
            seen = (victim_job, pending, cq_status)
            settled.last = seen  # type: ignore[attr-defined]
            ok = (condition(victim_job, "Suspended")["status"] == "True" and [owner(w) for w in pending] == [victim]
                  and (cq_status.get("admittedWorkloads"), cq_status.get("pendingWorkloads")) == (2, 1))  # fmt: skip
            return seen if ok else None

        try:
            victim_job, _, _ = wait_for("the victim suspended, pending, and counted by its ClusterQueue", settled,
                                        DEADLINE)  # fmt: skip
        except TimeoutError:
            victim_job, pending, cq_status = settled.last  # type: ignore[attr-defined]
            raise AssertionError(
                f"job conditions {[brief(c) for c in victim_job['status'].get('conditions', [])]}, "
                f"pending {[owner(w) for w in pending]}, ClusterQueue {cq_status}"
            ) from None

        # The high-priority run finishes: the preempted job is admitted again and runs; nothing is lost.
        t_done = time.monotonic()
        finish(kc, high_ns, high_name)
        tl.admitted.pop(victim)
        tl.until("preempted job readmitted", lambda js: not suspended(js[victim]))
        readmit_s = round(time.monotonic() - t_done, 2)
        wait_for(f"{victim} running again", lambda: len(running_pods(kc, low_ns, victim)) == 1, DEADLINE)
        w = workloads(kc, low_ns)[victim]
        assert condition(w, "Admitted")["status"] == "True"
        assert set(pytorchjobs(kc, low_ns)) == set(low_names)
        print("KUEUE " + json.dumps({
            "test": "preemption", "victim": victim, "survivor": survivor,
            "high_create_to_victim_suspended_s": preempt_s, "high_create_to_admitted_s": high_admit_s,
            "high_finish_to_victim_readmitted_s": readmit_s,
            "victim_workload_conditions": {t: brief(c) for t, c in conds.items()},
            "victim_pytorchjob_conditions": [brief(c) for c in victim_job["status"].get("conditions", [])],
            "victim_workload_after_readmission": [brief(c) for c in w["status"]["conditions"]],
            "victim_requeue_state": w["status"].get("requeueState"),
        }))  # fmt: skip
    finally:
        kc.kubectl("delete", "namespace", high_ns, "--wait=false", check=False)
