"""A run over two nodes on the real path: the operator's own PyTorchJob manifest (`control.pytorchjob`)
for `gpusPerRun: 2` on `nodeGpus: 1` x `nodes: 2` (a Master and a Worker, one trainer process each),
validated by the training-operator's webhook, turned into two pods whose env it sets (RANK, WORLD_SIZE,
MASTER_ADDR/PORT, PET_*), run by the node agent as two local processes that meet over gloo. Its final
loss matches the same run as one pod (one GPU, two micro-batches of accumulation per step, the same
global batch) within 1e-4 relative. And the same run as one pod of two processes, under torchrun
(what a pod of several GPUs runs), from the same env.

The node agent runs every pod on this host's network (127.0.0.1), where a real cluster gives each pod
its own: so the Worker's metrics port is moved off the Master's, and the Master's rendezvous port
(`pytorchjob-port`, 23456 by default) is a free one, since other test sessions may share this host.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from typing import Any

import pytest
import yaml

from miniseries.api.spec import ScalingSweepSpec
from miniseries.contract.layout import SweepIdentity, SweepLayout, claim, join_uri
from miniseries.contract.results import RunResults, read_results
from miniseries.contract.store import open_store
from miniseries.control.backends.pytorchjob import pytorchjob
from miniseries.local.runner import LocalSweep, free_port
from miniseries.plan.planner import make_plan
from tests.e2e.shapes import E2E_TRAINING
from tests.harness.cluster import Cluster
from tests.harness.processes import free_port_run

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.slow, pytest.mark.torch, pytest.mark.multinode]

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("miniseries_trainer") is None:
    pytest.skip("needs torch and miniseries_trainer installed in this venv", allow_module_level=True)

NAMESPACE = "default"


def tiny_spec(tiny: LocalSweep, **resources: Any) -> ScalingSweepSpec:
    """The tiny sweep at depth 2, on the e2e node, its tokenizer the one the fixture trained; no CORE."""
    doc = tiny.spec.wire()
    doc["training"].update(E2E_TRAINING)  # no loss curve needed: both sides train the same (shapes.py)
    doc["training"].update(deviceBatchSize=4)  # 1024-token steps (shapes.py): 2 x 4 x 128 or 1 x 4 x 128 x 2
    doc["resources"].update(nodeSelector={"miniseries.dev/e2e-node": "true"}, nodeGpus=1, cpu="1", memory="1Gi")
    doc["resources"].update(resources)
    doc["data"].update(tokenizerUri=join_uri(tiny.spec.store.uri, tiny.layout.tokenizer), evalBundleUri=None)
    return ScalingSweepSpec.model_validate(doc)


def job_for(spec: ScalingSweepSpec, sweep: str) -> dict[str, Any]:
    (run,) = make_plan(spec).runs
    job = pytorchjob(spec, sweep, "no-owner", NAMESPACE, run, metrics_port=free_port_run(2))
    # the store key claimed for that uid, as the operator claims it before it creates a job: the trainer
    # writes results only while its sweep's manifest names its uid (issue 27's fence)
    owner = SweepIdentity(namespace=NAMESPACE, name=sweep, uid="no-owner")
    claim(open_store(spec.store.uri), SweepLayout(NAMESPACE, sweep), owner, [run.name])
    del job["metadata"]["ownerReferences"]  # no ScalingSweep here: the garbage collector would take the job
    # The operator's cleanPodPolicy Running deletes a pod still Running when the job ends. The job ends
    # when the Master succeeds, and the Worker's exit reaches the API a moment later (the node agent
    # reports it on its own time), so under load the Worker was deleted before this test could read
    # its env: keep every pod here.
    job["spec"]["runPolicy"]["cleanPodPolicy"] = "None"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    replicas["Master"]["template"]["spec"]["containers"][0]["ports"].append(
        {"name": "pytorchjob-port", "containerPort": free_port(), "protocol": "TCP"}
    )
    if "Worker" in replicas:  # its own metrics port: on a real cluster each pod has its own network
        c = replicas["Worker"]["template"]["spec"]["containers"][0]
        c["args"] = [f"--metrics-port={free_port()}" if a.startswith("--metrics-port=") else a for a in c["args"]]
    return job


def pods_of(kc: Cluster, job: str) -> list[dict[str, Any]]:
    found = json.loads(kc.kubectl("get", "pods", "-l", f"training.kubeflow.org/job-name={job}", "-o", "json").stdout)
    return list(found["items"])


def run_to_the_end(kc: Cluster, job: dict[str, Any], pods: int, timeout: float) -> float:
    """Apply the job, wait until it and all its pods succeeded; the seconds that took."""
    name = job["metadata"]["name"]
    kc.kubectl("delete", "pytorchjob", name, "--ignore-not-found", "--wait")
    started = time.monotonic()
    kc.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(job))
    deadline = started + timeout
    while time.monotonic() < deadline:
        obj = json.loads(kc.kubectl("get", "pytorchjob", name, "-o", "json").stdout)
        conds = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}
        assert conds.get("Failed") != "True", obj["status"]
        phases = [p["status"].get("phase") for p in pods_of(kc, name)]
        if conds.get("Succeeded") == "True" and phases == ["Succeeded"] * pods:
            return time.monotonic() - started
        time.sleep(1)
    raise TimeoutError(f"{name} not finished in {timeout}s: {obj.get('status')}, pods {phases}")


@pytest.fixture(scope="module")
def one_pod(real_cluster: Cluster, tiny: LocalSweep) -> tuple[RunResults, float]:
    """The reference: the run as one pod of one process (two micro-batches of accumulation per step)."""
    job = job_for(tiny_spec(tiny, gpusPerRun=1), "mn-one")
    assert list(job["spec"]["pytorchReplicaSpecs"]) == ["Master"]
    seconds = run_to_the_end(real_cluster, job, 1, 900)
    results = read_results(tiny.store, SweepLayout(NAMESPACE, "mn-one").run("d2"))
    assert results is not None and results.world_size == 1 and results.loss.final is not None
    return results, seconds


def compare(one: tuple[RunResults, float], other: RunResults, seconds: float, record_property: Any) -> float:
    ref, ref_seconds = one
    assert ref.steps == other.steps and ref.tokens == other.tokens
    assert ref.loss.final is not None and other.loss.final is not None
    difference = abs(other.loss.final - ref.loss.final) / ref.loss.final
    measured = {"one_pod_final_loss": ref.loss.final, "final_loss": other.loss.final,
                "relative_difference": difference, "one_pod_seconds": round(ref_seconds, 1),
                "seconds": round(seconds, 1), "steps": ref.steps}  # fmt: skip
    for k, v in measured.items():
        record_property(k, v)
    print(json.dumps(measured), file=sys.stderr)
    return difference


def test_two_pods_over_gloo_match_one_pod(
    real_cluster: Cluster, tiny: LocalSweep, one_pod: tuple[RunResults, float], record_property: Any
) -> None:
    kc = real_cluster
    job = job_for(tiny_spec(tiny, gpusPerRun=2, nodes=2), "mn-two")

    # The manifest: a Master and a Worker of one process each.
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert {k: v["replicas"] for k, v in replicas.items()} == {"Master": 1, "Worker": 1}
    assert job["spec"]["nprocPerNode"] == "1"
    for r in replicas.values():
        c = r["template"]["spec"]["containers"][0]
        assert c["command"] == ["python", "-m", "miniseries_trainer.train"]
        assert c["resources"]["limits"] == {"nvidia.com/gpu": "1"}

    seconds = run_to_the_end(kc, job, 2, 900)

    # What the training-operator told each pod (the pod spec, before the node agent's Service rewrite).
    env = {}
    for pod in pods_of(kc, "mn-two-d2"):
        env[pod["metadata"]["name"]] = {v["name"]: v.get("value") for v in pod["spec"]["containers"][0]["env"]}
    port = str(replicas["Master"]["template"]["spec"]["containers"][0]["ports"][-1]["containerPort"])
    for name, rank in (("mn-two-d2-master-0", "0"), ("mn-two-d2-worker-0", "1")):
        e = env[name]
        assert (e["RANK"], e["PET_NODE_RANK"], e["WORLD_SIZE"]) == (rank, rank, "2"), e
        assert (e["MASTER_ADDR"], e["PET_MASTER_ADDR"]) == ("mn-two-d2-master-0",) * 2, e
        assert (e["MASTER_PORT"], e["PET_MASTER_PORT"]) == (port, port), e
        assert (e["PET_NNODES"], e["PET_NPROC_PER_NODE"]) == ("2", "1"), e

    two = read_results(tiny.store, SweepLayout(NAMESPACE, "mn-two").run("d2"))
    assert two is not None and two.world_size == 2
    assert compare(one_pod, two, seconds, record_property) <= 1e-4


def test_a_pod_of_two_processes_runs_them_under_torchrun(
    real_cluster: Cluster, tiny: LocalSweep, one_pod: tuple[RunResults, float], record_property: Any
) -> None:
    """nprocPerNode 2 in one pod: torchrun reads the PET_* env and starts two ranks (the path of a GPU node)."""
    job = job_for(tiny_spec(tiny, gpusPerRun=2, nodeGpus=2), "mn-torchrun")
    assert list(job["spec"]["pytorchReplicaSpecs"]) == ["Master"] and job["spec"]["nprocPerNode"] == "2"
    c = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    grace = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["terminationGracePeriodSeconds"]
    shutdown = f"--shutdown-timeout={max(grace - 10, 30)}"  # a preempted rank's checkpoint is not SIGKILLed
    assert c["command"] == ["torchrun", shutdown, "-m", "--", "miniseries_trainer.train"]
    seconds = run_to_the_end(real_cluster, job, 1, 900)
    log = (real_cluster.node_logs / f"{NAMESPACE}_mn-torchrun-d2-master-0_pytorch.log").read_text()
    assert "torch.distributed.run" in log.splitlines()[0], log[:500]  # the node agent's torchrun
    results = read_results(tiny.store, SweepLayout(NAMESPACE, "mn-torchrun").run("d2"))
    assert results is not None and results.world_size == 2
    assert compare(one_pod, results, seconds, record_property) <= 1e-4
