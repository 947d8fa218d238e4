"""Issue 27 on the real test cluster (API server, etcd, garbage collector, `miniseries operator` as a
process), as a careless user would meet it: nothing a sweep trains is lost or silently inherited.

A sweep deleted mid-run and re-created under the same name must never carry on from its predecessor's
checkpoint: the operator's delete waits until no pod of the sweep is left (however long its trainer
takes to checkpoint after SIGTERM), and the trainer resumes only from checkpoints carrying its own
sweep's uid. The JobDriver here stands each trainer process up as a Pod held by a finalizer until the
process exits, and sends it SIGTERM when its job is deleted, as a kubelet would; the fake trainer takes
FAKE_TRAINER_STOP_SECONDS to checkpoint after SIGTERM.

    MINISERIES_FAULTS_STOP_SECONDS   the trainer's stop time after SIGTERM (default 10; the issue's 45)
    MINISERIES_FAULTS_REPEAT         how many delete + re-create rounds (default 1; the issue's 5)
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from tests.harness.cluster import Cluster
from tests.harness.operator_process import JobDriver, custom, get_sweep, sweep_doc, write_terminated
from tests.harness.processes import wait_for
from tests.integration import test_operator_cluster as base

pytestmark = [pytest.mark.cluster, pytest.mark.faults]

crds, start_operator, store_uri = base.crds, base.start_operator, base.store_uri
status, wait_phase = base.status, base.wait_phase

#: Longer than the operator takes to delete a sweep's data once nothing holds it back, so that the suite's one round
#: fails without the fix. Here only the trainer's pod can hold it: the JobDriver's pods do not block their job's
#: deletion (no blockOwnerDeletion), so a deleted sweep's jobs are gone within a second or two, and the operator
#: before issue 27, which waited for its jobs only (up to ~30 s), deleted the data while the trainer still wrote.
#: (35 s before issue 30; how long the operator waits for a pod by its grace period: tests/unit/test_fencing.py.)
STOP_SECONDS = float(os.environ.get("MINISERIES_FAULTS_STOP_SECONDS", "10"))
REPEAT = int(os.environ.get("MINISERIES_FAULTS_REPEAT", "1"))


def gone(kc: Cluster, ns: str, name: str) -> bool:
    try:
        get_sweep(custom(kc), ns, name)
    except ApiException as e:
        if e.status == 404:
            return True
        raise
    return False


def manifests(run_root: Path) -> dict[int, str | None]:
    """step -> the sweep uid its checkpoint manifest names."""
    out = {}
    for m in sorted((run_root / "ckpt").glob("step_*/manifest.json")):
        out[int(m.parent.name.removeprefix("step_"))] = json.loads(m.read_text()).get("sweep_uid")
    return out


def test_a_recreated_sweep_never_inherits_its_deleted_predecessors_checkpoint(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Any, tmp_path: Path
) -> None:
    """Sweep x (deletionPolicy Delete) is deleted while d2 trains past its first checkpoint; its trainer
    takes STOP_SECONDS after SIGTERM to write one more checkpoint. The sweep is gone only after that
    trainer has exited (its pod gone); a new x then trains d2 from scratch: every checkpoint under its
    key carries its uid and its results say it started fresh."""
    kc, ns = crds, namespace
    start_operator()
    root = Path(store_uri.removeprefix("file://")) / ns / "x" / "d2"
    env = {"FAKE_TRAINER_STOP_SECONDS": str(STOP_SECONDS)}
    early: list[str] = []  # rounds whose sweep was gone before its trainer stopped (asserted last, so that the
    # uid fence is checked on its own even then: a late checkpoint lands in the new sweep's key)
    with JobDriver(kc, ns, env, step_seconds=0.1, pods=True, log_dir=tmp_path) as driver:
        for round_ in range(REPEAT):
            # the doomed sweep's trainer steps slowly (past its first checkpoint, still training when deleted);
            # the new one's quickly: only its start and its uid matter, not how long it trains
            driver.env["FAKE_TRAINER_STEP_SECONDS"] = "0.1"
            doc = sweep_doc("x", store_uri, depths=[2])
            doc["spec"]["deletionPolicy"] = "Delete"
            kc.apply(doc, "-n", ns)
            old_uid = get_sweep(custom(kc), ns, "x")["metadata"]["uid"]
            # past its first checkpoint (checkpointEvery 25), still training
            wait_for(f"round {round_}: d2 of {old_uid} past a checkpoint",
                     lambda u=old_uid: any(v == u for v in manifests(root).values()), 120)  # fmt: skip
            job_uids = {s.uid for s in driver.seen.values() if s.run == "d2"}
            kc.kubectl("delete", "scalingsweep", "x", "-n", ns, "--wait=false")
            wait_for(f"round {round_}: the old x gone", lambda: gone(kc, ns, "x"), STOP_SECONDS + 120)
            t_gone = time.time()
            stopped = [u for u in job_uids if u in driver.stopped]
            assert stopped, f"round {round_}: the old trainer was never sent SIGTERM ({driver.errors[-3:]})"
            # delete completed only after every process of the sweep had stopped writing
            if not all(driver.exited.get(u, t_gone + 1) <= t_gone for u in stopped):
                early.append(f"round {round_}: x was gone {t_gone - max(driver.stopped[u] for u in stopped):.1f} s "
                             f"after SIGTERM, before its trainer (stopping {STOP_SECONDS} s) exited")  # fmt: skip
            driver.env["FAKE_TRAINER_STEP_SECONDS"] = "0.01"
            kc.apply(doc, "-n", ns)
            new_uid = get_sweep(custom(kc), ns, "x")["metadata"]["uid"]
            assert new_uid != old_uid
            st = wait_phase(kc, ns, "x", ("Succeeded",))
            results = json.loads((root / "results.json").read_text())
            assert results["sweep_uid"] == new_uid
            assert results["start"]["kind"] == "fresh" and results["start"]["step"] == 0, results["start"]
            assert sorted(p.name for p in (root / "starts").iterdir()) == ["00000000"]
            if set(manifests(root).values()) != {new_uid}:  # a late writer's checkpoint in the new sweep's key
                early.append(f"round {round_}: checkpoints of other sweeps under the new x: {manifests(root)}")
            assert st["runs"][0]["state"] == "Succeeded"
            if round_ + 1 < REPEAT:  # the next round deletes this one first (its data goes with it)
                kc.kubectl("delete", "scalingsweep", "x", "-n", ns, "--wait=false")
                wait_for("x gone before the next round", lambda: gone(kc, ns, "x"), STOP_SECONDS + 120)
    assert not early, early


# ---------------------------------------------------------------- item 2: namespace deletion


def exists(kc: Cluster, path: str) -> bool:
    """Whether the API server has the object at `path`: one GET from this process, not a kubectl process
    for each look (a wait looks five times a second, for up to a minute here)."""
    answer = kc.get(path)
    if answer.status_code == 404:
        return False
    answer.raise_for_status()  # any other error: not yet (wait_for looks again)
    return True


@pytest.mark.parametrize("all_namespaces", [False, True], ids=["watching-its-namespace", "watching-all"])
def test_a_deleted_namespace_never_hangs_with_the_operator_restarted_mid_deletion(
    crds: Cluster, store_uri: str, tmp_path: Path, all_namespaces: bool
) -> None:
    """The issue's evidence: with the operator watching one namespace (the chart's watch.allNamespaces=false,
    with peering) and restarted while that namespace was deleted, its sweeps kept kopf's finalizer and the
    namespace stayed Terminating for minutes. The namespace controller deletes the namespaced KopfPeering
    first; kopf's mandatory peering then paused the restarted operator there for good. Both watch modes:
    the restarted operator releases the sweeps, Retain and Delete alike, and the namespace goes (at the
    namespace controller's next retry: under load that came after the one minute this test first
    allowed in all, 2 of 3 runs at load 20+)."""
    import uuid

    from tests.harness.operator_process import Operator

    kc, ns = crds, f"faults-ns-{uuid.uuid4().hex[:6]}"
    peering = f"faults-{uuid.uuid4().hex[:6]}"
    kc.kubectl("create", "namespace", ns)
    kind = "clusterkopfpeering" if all_namespaces else "kopfpeering"
    peer_doc = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering" if all_namespaces else "KopfPeering",
                "metadata": {"name": peering, **({} if all_namespaces else {"namespace": ns})}}  # fmt: skip
    kc.apply(peer_doc)
    peer = (kind, peering) if all_namespaces else (kind, peering, "-n", ns)
    ns_path = f"/api/v1/namespaces/{ns}"
    peer_path = f"/apis/kopf.dev/v1/{'' if all_namespaces else f'namespaces/{ns}/'}{kind}s/{peering}"
    op = Operator(kc, ns, tmp_path / "operator.log", peering=peering, all_namespaces=all_namespaces).start()
    try:
        keep, delete = sweep_doc("keep", store_uri, depths=[1]), sweep_doc("drop", store_uri, depths=[1])
        delete["spec"]["deletionPolicy"] = "Delete"
        for doc in (keep, delete):
            kc.apply(doc, "-n", ns)
        for name in ("keep", "drop"):  # reconciled: kopf's finalizer on it, its status written
            wait_for(f"{name} reconciled", lambda n=name: (status(kc, ns, n).get("phase") or "") != "", 60)
        op.stop()
        kc.kubectl("delete", "namespace", ns, "--wait=false")
        if not all_namespaces:  # the namespace controller removes the peering object before the sweeps can go
            wait_for("the namespace's KopfPeering deleted", lambda: not exists(kc, peer_path), 60)
        op = Operator(kc, ns, tmp_path / "operator-2.log", peering=peering, all_namespaces=all_namespaces).start()
        try:
            # the operator's part: the sweeps' finalizers released, so the sweeps are gone
            sweeps_path = f"/apis/miniseries.dev/v1alpha1/namespaces/{ns}/scalingsweeps"
            wait_for("the sweeps gone after the operator's restart", lambda: not kc.get(sweeps_path).json().get("items"),
                     120)  # fmt: skip
            # then the namespace controller's: it retries a namespace with content left at a back-off that
            # reaches 60 s ("at least every minute, never longer"), so its last look may come a minute later
            wait_for(f"namespace {ns} gone after its sweeps", lambda: not exists(kc, ns_path), 90)
        except TimeoutError as e:
            left = kc.kubectl("get", "namespace", ns, "-o=jsonpath={.status}", check=False).stdout
            sweeps = kc.kubectl("get", "scalingsweeps", "-n", ns, "-o=yaml", check=False).stdout
            raise AssertionError(f"{e}\nnamespace status: {left}\nsweeps: {sweeps[-3000:]}") from None
    finally:
        op.stop()
        if all_namespaces:
            kc.kubectl("delete", *peer, "--wait=false", check=False)
        kc.kubectl("delete", "namespace", ns, "--wait=false", check=False)


# ---------------------------------------------------------------- item 6: a file:// store the operator cannot use


def test_a_file_store_that_cannot_be_created_is_a_store_error_on_the_sweep(
    crds: Cluster, namespace: str, start_operator: Any
) -> None:
    """`file:///proc/...` gave no condition and no Event, only a traceback in the operator's log every 60 s
    (store/local.py raised plain OSErrors): now StoreReachable=False naming the URI and the failed
    operation, and a StoreUnreachable Event."""
    from tests.harness.operator_process import condition, events

    kc, ns = crds, namespace
    # a root the admin allowed (store roots are required, issue 28), which the operator cannot write
    op = start_operator(store_roots=["file:///proc"])
    uri = "file:///proc/miniseries-cannot-be-created"
    kc.apply(sweep_doc("procfs", uri, depths=[1]), "-n", ns)
    cond = wait_for("StoreReachable=False",
                    lambda: (c := condition(get_sweep(custom(kc), ns, "procfs"), "StoreReachable")).get("status")
                    == "False" and c, 60)  # fmt: skip
    assert uri in cond["message"] and "failed" in cond["message"] and "directory" in cond["message"], cond
    evs = wait_for("a StoreUnreachable Event",
                   lambda: [e for e in events(kc, ns, "procfs") if e["reason"] == "StoreUnreachable"], 30)  # fmt: skip
    assert uri in evs[0]["message"]
    assert "Traceback" not in op.log_path.read_text()


# ---------------------------------------------------------------- item 7: only declared inputs reach the trainer


def test_the_trainer_gets_only_the_store_keys_of_the_secret_and_its_sweeps_uid(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Any, tmp_path: Path
) -> None:
    """A MINISERIES_MATRIX_LR key in the credentials Secret changed the learning rate with no spec change
    (envFrom passed every key). The PyTorchJob the operator creates through the API server now names only
    the store's variables, one secretKeyRef each, and passes the sweep's uid (with which the trainer
    refuses MINISERIES_<FLAG> overrides: tests/trainer/test_flags.py)."""
    from miniseries.contract.store.s3 import CREDENTIAL_ENV
    from tests.harness.operator_process import list_jobs

    kc, ns = crds, namespace
    start_operator()
    # opted in with the label the default policy asks for (issue 28)
    kc.apply({"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "creds", "labels": {"miniseries.dev/allow-sweeps": "true"}},
              "stringData": {"AWS_ACCESS_KEY_ID": "x", "MINISERIES_MATRIX_LR": "100.0"}}, "-n", ns)  # fmt: skip
    doc = sweep_doc("inputs", store_uri, depths=[1])
    doc["spec"]["store"]["credentialsSecret"] = "creds"
    with JobDriver(kc, ns, hold={"d1"}, log_dir=tmp_path):
        kc.apply(doc, "-n", ns)
        (job,) = wait_for("the run's PyTorchJob", lambda: list_jobs(custom(kc), ns), 120)
    uid = get_sweep(custom(kc), ns, "inputs")["metadata"]["uid"]
    (c,) = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
    assert "envFrom" not in c
    # beside them only the thread count (pod_template.thread_env) and HOME (podsecurity.py)
    from_secret = [e for e in c["env"] if "valueFrom" in e]
    assert [e["name"] for e in from_secret] == list(CREDENTIAL_ENV)
    assert [e["name"] for e in c["env"] if "valueFrom" not in e] == ["OMP_NUM_THREADS", "HOME"]
    assert {(e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"]) for e in from_secret} == {
        ("creds", k) for k in CREDENTIAL_ENV
    }
    assert f"--sweep-uid={uid}" in c["args"]


# ---------------------------------------------------------------- item 3: the store refuses a trainer

#: How often a refused run is tried again, shortened for the test (production: RetryTimings.store_denied_seconds)
DENIED_RETRY_SECONDS = 2.0


def run_of(kc: Cluster, ns: str, sweep: str, run: str) -> dict[str, Any]:
    return next((r for r in status(kc, ns, sweep).get("runs", []) if r["name"] == run), {})


def test_a_trainer_the_store_refuses_spends_no_retry_says_so_and_resumes_by_itself(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Any, tmp_path: Path
) -> None:
    """The issue's evidence: with a wrong key in the credentials Secret every attempt failed on
    `HeadBucket: Forbidden` within 50 s, the run went Failed while the sweep said StoreReachable=True, fixing
    the Secret did not revive it, and a run that later succeeded kept the old reason and message. Here the
    trainer is refused three times (exit 77, the STORE_DENIED_MARKER line its pod's status keeps): the run is
    Retrying/StoreAccessDenied on attempt 1 throughout, the sweep's StoreReachable=False (RunsDenied) names
    the Secret and the refused operation; once the store takes it, the run resumes by itself and succeeds
    with its reason and message cleared and StoreReachable=True again."""
    from tests.harness.operator_process import condition

    kc, ns = crds, namespace
    op = start_operator(env={"MINISERIES_STORE_DENIED_RETRY_SECONDS": str(DENIED_RETRY_SECONDS)})
    kc.apply({"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "store-creds", "labels": {"miniseries.dev/allow-sweeps": "true"}},
              "stringData": {"AWS_ACCESS_KEY_ID": "wrong", "AWS_SECRET_ACCESS_KEY": "wrong"}}, "-n", ns)  # fmt: skip
    doc = sweep_doc("denied", store_uri, depths=[1])
    doc["spec"]["store"]["credentialsSecret"] = "store-creds"
    refusing = tmp_path / "store-refuses"  # the fake trainer is refused while this file exists
    refusing.touch()
    env = {"FAKE_TRAINER_DENIED_WHILE": str(refusing)}
    with JobDriver(kc, ns, env, pods=True, pod_status=True, log_dir=tmp_path) as driver:
        kc.apply(doc, "-n", ns)

        def refused_three_times() -> bool:
            return sum(s.run == "d1" for s in driver.seen.values()) >= 3 and all(
                u in driver.exited for u, s in driver.seen.items() if s.run == "d1"
            )

        wait_for("d1 refused three times", refused_three_times, 120, op.proc)
        assert {s.attempt for s in driver.seen.values() if s.run == "d1"} == {1}, driver.seen  # no retry spent
        run = wait_for("d1 Retrying with StoreAccessDenied",
                       lambda: (r := run_of(kc, ns, "denied", "d1")).get("reason") == "StoreAccessDenied" and r,
                       60, op.proc)  # fmt: skip
        assert run["state"] == "Retrying" and run["attempts"] == 1, run
        assert "store-creds" in run["message"] and "HeadBucket" in run["message"], run
        cond = condition(get_sweep(custom(kc), ns, "denied"), "StoreReachable")
        assert (cond["status"], cond["reason"]) == ("False", "RunsDenied"), cond
        assert "store-creds" in cond["message"] and "HeadBucket" in cond["message"], cond
        refusing.unlink()  # the Secret fixed: the store takes the trainer
        st = wait_phase(kc, ns, "denied", ("Succeeded",), op)
    (run,) = st["runs"]
    assert (run["state"], run["attempts"], run.get("reason"), run.get("message")) == ("Succeeded", 1, None, None), run
    cond = condition(get_sweep(custom(kc), ns, "denied"), "StoreReachable")
    assert cond["status"] == "True", cond


# ---------------------------------------------------------------- item 6: failures named rightly


def oom_killed_pod(sweep: str, run: str, limit: str | None) -> dict[str, Any]:
    """The run's attempt-1 pod, never scheduled (its status is the test's, written as the kubelet would)."""
    from miniseries.control.backends import manifests as jobs
    from miniseries.control.backends.podsecurity import container_security_context, pod_security_context

    labels = {jobs.LABEL_SWEEP: sweep, jobs.LABEL_RUN: run, jobs.LABEL_ATTEMPT: "1", jobs.LABEL_COMPONENT: "trainer"}
    resources: dict[str, Any] = {"requests": {"memory": "64Mi"}}
    if limit:
        resources["limits"] = {"memory": limit}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"{sweep}-{run}-master-0", "labels": labels},
            "spec": {"containers": [{"name": "pytorch", "image": "trainer", "resources": resources,
                                     "securityContext": container_security_context()}],
                     "securityContext": pod_security_context(),
                     "nodeSelector": {"miniseries.dev/no-such-node": "true"}}}  # fmt: skip


@pytest.mark.parametrize("where", ["container-spec", "limitrange"])
def test_an_oom_killed_trainer_names_its_memory_limit_and_where_it_came_from(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Any, tmp_path: Path, where: str
) -> None:
    """The issue's evidence: an OOMKilled trainer showed `exit code 137 (OOMKilled)` without the memory limit
    that killed it (there from a namespace LimitRange). The pod's container is OOMKilled (exit 137, written
    through pods/status as the kubelet would) under a limit from its own spec, or from the namespace's
    LimitRange default (the API server's LimitRanger sets it at admission): the run's message names the
    limit and where it came from."""
    from tests.harness.operator_process import SweepHistory
    from tests.integration.test_operator_cluster import DEADLINE, ended

    kc, ns = crds, namespace
    if where == "limitrange":
        kc.apply({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "mem"},
                  "spec": {"limits": [{"type": "Container", "default": {"memory": "300Mi"}}]}}, "-n", ns)  # fmt: skip
    kc.apply(oom_killed_pod("oom", "d2", "200Mi" if where == "container-spec" else None), "-n", ns)
    write_terminated(kc, ns, "oom-d2-master-0", 137, "OOMKilled", "step 3/40 | loss 6.1\n")
    op = start_operator()
    history = SweepHistory(kc, ns, "oom")
    with history, JobDriver(kc, ns, fail={"d2": {1}}, fail_step=3, log_dir=tmp_path):
        kc.apply(sweep_doc("oom", store_uri, depths=[2]), "-n", ns)
        told = wait_for("d2's OOMKilled failure",
                        lambda: history.first(lambda st: [r["message"] for r in st.get("runs", [])
                                                          if "OOMKilled" in (r.get("message") or "")], ended),
                        DEADLINE, op.proc)  # fmt: skip
    assert "exited with code 137 (OOMKilled)" in told[0], told
    if where == "container-spec":
        assert "memory limit 200Mi, set by the container's spec" in told[0], told
    else:
        assert "memory limit 300Mi, set by the namespace's LimitRange default" in told[0], told


def test_a_trainer_that_exits_0_without_results_is_no_results_whatever_the_jobs_reason(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Any, tmp_path: Path
) -> None:
    """The issue's evidence: an image whose entrypoint exits 0 without writing results was reported as
    `failed (PyTorchJobSucceeded: … successfully completed.)`: the NoResults text appeared only when the
    job's condition had no reason, and the training-operator always sets one. The JobDriver marks the job
    Succeeded with reason PyTorchJobSucceeded; the run says NoResults, "exited 0 without writing results",
    on every attempt and when it finally fails."""
    from tests.harness.operator_process import SweepHistory
    from tests.integration.test_operator_cluster import DEADLINE, ended

    kc, ns = crds, namespace
    op = start_operator()
    history = SweepHistory(kc, ns, "nores")
    with history, JobDriver(kc, ns, {"FAKE_TRAINER_NO_RESULTS_RUN": "d1"}, log_dir=tmp_path):
        kc.apply(sweep_doc("nores", store_uri, depths=[1]), "-n", ns)
        final = wait_for("the sweep ended", lambda: ended(st := status(kc, ns, "nores")) and st, DEADLINE, op.proc)
    told = [r for st in history.statuses() for r in st.get("runs", []) if r.get("reason") or r.get("message")]
    (last,) = final["runs"]
    assert told and last["state"] == "Failed", (last, history.summary())
    for r in [*told, last]:  # after each attempt and at the end: always the contract broken, never "failed"
        assert r["reason"] == "NoResults", r
        assert "exited 0 without writing results" in r["message"] and "PyTorchJobSucceeded" in r["message"], r


# ---------------------------------------------------------------- item 4: a wsd branch whose trunk checkpoint is gone


def test_a_branch_whose_trunk_checkpoint_is_gone_says_so_and_the_sweep_is_degraded(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Any, tmp_path: Path
) -> None:
    """The issue's evidence: with the trunk's checkpoint for a branch point deleted, the branch stayed Pending
    with 0 attempts, no message, no Event, and the sweep said Degraded=False AllHealthy for minutes. A wsd
    sweep of d2 on one GPU (so no branch runs beside its trunk): the trunk is held at step 30, past its
    step-22 checkpoint (d2-b2's start) and short of step 45 (d2-b4's). With step 22 deleted from the store,
    d2-b2 fails TrunkCheckpointMissing with an Event naming that checkpoint, d2-b4 says it waits for step 45
    (WaitingForTrunk), the sweep is Degraded, and no run is Pending without a reason."""
    import shutil

    from miniseries.api.spec import ScalingSweepSpec
    from miniseries.plan.planner import make_plan
    from tests.harness.operator_process import condition, events

    kc, ns = crds, namespace
    doc = base.wsd_doc("wsd", store_uri)
    doc["spec"]["resources"]["nodeGpus"] = 1
    plan = {r.name: r for r in make_plan(ScalingSweepSpec.model_validate(doc["spec"])).runs}
    assert (plan["d2-b2"].start_step, plan["d2-b4"].start_step) == (22, 45)
    root = Path(store_uri.removeprefix("file://")) / ns / "wsd"
    op = start_operator()
    hold = {"FAKE_TRAINER_HOLD_RUN": "d2-trunk", "FAKE_TRAINER_HOLD_STEP": "30"}
    with JobDriver(kc, ns, hold, log_dir=tmp_path):
        kc.apply(doc, "-n", ns)
        wait_for("the trunk held at step 30", lambda: (root / "d2-trunk" / "held").exists(), 120, op.proc)
        assert (root / "d2-trunk" / "ckpt" / "step_00000022" / "manifest.json").exists()
        shutil.rmtree(root / "d2-trunk" / "ckpt" / "step_00000022")

        def told() -> Any:
            runs = {r["name"]: r for r in status(kc, ns, "wsd").get("runs", [])}
            b2, b4 = runs.get("d2-b2", {}), runs.get("d2-b4", {})
            return b2.get("reason") == "TrunkCheckpointMissing" and b4.get("reason") == "WaitingForTrunk" and runs

        runs = wait_for("d2-b2 TrunkCheckpointMissing, d2-b4 WaitingForTrunk", told, 60, op.proc)
        sweep = get_sweep(custom(kc), ns, "wsd")
        evs = wait_for("a RunFailed Event for d2-b2",
                       lambda: [e for e in events(kc, ns, "wsd") if e["reason"] == "RunFailed"], 30, op.proc)  # fmt: skip
    b2, b4 = runs["d2-b2"], runs["d2-b4"]
    assert b2["state"] == "Failed" and "d2-trunk's checkpoint at step 22" in b2["message"], b2
    assert b4["state"] == "Pending" and "d2-trunk's checkpoint at step 45" in b4["message"], b4
    assert "step 30" in b4["message"], b4  # where the trunk is
    assert runs["d2-trunk"]["state"] == "Running", runs["d2-trunk"]
    silent = [r["name"] for r in runs.values() if r["state"] == "Pending" and not r.get("reason")]
    assert not silent, f"Pending without a reason: {silent}"
    degraded = condition(sweep, "Degraded")
    assert degraded["status"] == "True" and "d2-b2" in degraded["message"], degraded
    assert "d2-b2" in evs[0]["message"] and "checkpoint at step 22" in evs[0]["message"], evs
