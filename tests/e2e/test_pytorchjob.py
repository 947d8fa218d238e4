"""PyTorchJobs on the real path: the training-operator's webhook refuses what the bare CRD
schema accepts, and a valid job becomes pods whose processes see the env the controller injects."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from miniseries.control.backends.podsecurity import restrict
from tests.harness.cluster import Cluster
from tests.harness.processes import NotYet, Unreachable, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.e2e]

NODE_SELECTOR = {"miniseries.dev/e2e-node": "true"}
PRINT_ENV = (
    "import os, json; print('ENV ' + json.dumps({k: os.environ.get(k) for k in "
    "['RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT', 'PET_NPROC_PER_NODE', 'PET_NNODES', 'PET_NODE_RANK']}))"
)


def job(
    name: str, workers: int = 1, container: str = "pytorch", image: str = "miniseries/trainer:e2e"
) -> dict[str, Any]:
    def replica(n: int) -> dict[str, Any]:
        # restricted (podsecurity.py), as `default` enforces
        return {"replicas": n, "template": {"spec": restrict({"nodeSelector": NODE_SELECTOR, "containers": [
            {"name": container, "image": image, "command": ["python", "-c", PRINT_ENV]}]})}}  # fmt: skip

    specs = {"Master": replica(1)}
    if workers:
        specs["Worker"] = replica(workers)
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name, "namespace": "default"},
            "spec": {"nprocPerNode": "1", "pytorchReplicaSpecs": specs}}  # fmt: skip


def apply(cluster: Cluster, obj: dict[str, Any], dry_run: str = "none") -> Any:
    return cluster.kubectl("apply", f"--dry-run={dry_run}", "-f", "-", stdin=yaml.safe_dump(obj), check=False)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda j: j["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0].update(
                name="main"
            ),
            "pytorch",
        ),
        (lambda j: j["spec"]["pytorchReplicaSpecs"]["Master"].update(replicas=2), "Master"),
        (
            lambda j: j["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0].update(image=""),
            "image",
        ),
        (lambda j: j["metadata"].update(name="1-starts-with-a-digit"), "1-starts-with-a-digit"),
        (lambda j: j["spec"]["pytorchReplicaSpecs"]["Worker"].update(replicas=0), "must be at least 1"),
        (lambda j: j["spec"]["pytorchReplicaSpecs"].update(Chief=j["spec"]["pytorchReplicaSpecs"]["Worker"]), "Chief"),
    ],
    ids=["container-not-named-pytorch", "two-masters", "empty-image", "not-dns-1035", "zero-workers", "unknown-role"],
)
def test_webhook_refuses_what_the_crd_schema_accepts(real_cluster: Cluster, mutate: Any, message: str) -> None:
    bad = copy.deepcopy(job("bad-job"))
    mutate(bad)
    # A server-side dry run goes through admission, webhooks included, and stores nothing.
    refused = apply(real_cluster, bad, dry_run="server")
    assert refused.returncode != 0, "the training-operator's webhook let an invalid PyTorchJob through"
    assert "admission webhook" in refused.stderr and "denied the request" in refused.stderr, refused.stderr
    assert message in refused.stderr, refused.stderr


def test_crd_schema_alone_accepts_the_invalid_job(real_cluster: Cluster) -> None:
    """Without the webhook the same object is stored: the checks above are the controller's, not the schema's."""
    kc = real_cluster
    config = json.loads(kc.kubectl("get", "validatingwebhookconfiguration", "-o", "json").stdout)
    hooks = [h for item in config["items"] for h in item["webhooks"]]
    assert [h["name"] for h in hooks] == ["validator.pytorchjob.training-operator.kubeflow.org"]
    bad = job("schema-only")
    bad["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["name"] = "main"
    patch = [{"op": "replace", "path": "/webhooks/0/rules/0/operations", "value": ["DELETE"]}]
    name = config["items"][0]["metadata"]["name"]
    kc.kubectl("patch", "validatingwebhookconfiguration", name, "--type=json", f"-p={json.dumps(patch)}")

    # The API server's webhook cache follows the configuration asynchronously: wait for each state.
    def admitted(want: bool) -> bool:
        out = apply(kc, bad, dry_run="server")
        if (out.returncode == 0) != want:
            raise NotYet(out.stderr.strip() or "stored")
        return True

    try:
        wait_for("the invalid job stored without the webhook", lambda: admitted(True), 60)
    finally:
        patch[0]["value"] = ["CREATE", "UPDATE"]
        kc.kubectl("patch", "validatingwebhookconfiguration", name, "--type=json", f"-p={json.dumps(patch)}")
        # the next test needs the webhook back: wait until it refuses again
        wait_for("the webhook refusing the invalid job again", lambda: admitted(False), 60)


def wait_job(cluster: Cluster, name: str, condition: str, timeout: float) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        obj: dict[str, Any] = json.loads(cluster.kubectl("get", "pytorchjob", name, "-o", "json").stdout)
        conds = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}
        if conds.get(condition) == "True":
            return obj
        if conds.get("Failed") == "True":
            raise Unreachable(f"job {name} failed: {obj['status']}")
        raise NotYet(f"status {obj.get('status')}")

    return wait_for(f"job {name} {condition}", reached, timeout)  # type: ignore[no-any-return]


def test_job_is_defaulted_and_its_pods_run_with_the_controller_env(real_cluster: Cluster) -> None:
    kc = real_cluster
    kc.kubectl("delete", "pytorchjob", "env-job", "--ignore-not-found", "--wait")
    created = apply(kc, job("env-job", workers=2))
    assert created.returncode == 0, created.stderr
    done = wait_job(kc, "env-job", "Succeeded", 120)

    # The controller defaults the job in memory (v1.9's webhook only validates) and builds pods from
    # the defaulted spec: the defaults show in the pods, not in the stored job.
    assert "restartPolicy" not in done["spec"]["pytorchReplicaSpecs"]["Master"]
    for name in ("env-job-master-0", "env-job-worker-0"):
        pod = json.loads(kc.kubectl("get", "pod", name, "-o", "json").stdout)
        assert pod["spec"]["restartPolicy"] == "OnFailure"
        ports = pod["spec"]["containers"][0]["ports"]
        assert {"name": "pytorchjob-port", "containerPort": 23456, "protocol": "TCP"} in ports

    # The job succeeds when its master does (default success policy); the workers may still be running.
    pods = ["env-job-master-0", "env-job-worker-0", "env-job-worker-1"]
    wait_for("every pod Succeeded", lambda: kc.kubectl("get", "pod", *pods, "-o=jsonpath={.items[*].status.phase}")
             .stdout.split() == ["Succeeded"] * 3, 60)  # fmt: skip
    envs = {}
    for path in sorted(kc.node_logs.glob("default_env-job-*_pytorch.log")):
        line = next(x for x in path.read_text().splitlines() if x.startswith("ENV "))
        envs[path.name.split("_")[1]] = json.loads(line[4:])
    assert set(envs) == {"env-job-master-0", "env-job-worker-0", "env-job-worker-1"}
    assert {e["RANK"] for e in envs.values()} == {"0", "1", "2"}
    assert envs["env-job-master-0"]["RANK"] == "0"
    for e in envs.values():
        assert e["WORLD_SIZE"] == "3" and e["MASTER_PORT"] == "23456"
        assert e["MASTER_ADDR"] == "127.0.0.1"  # env-job-master-0, the Service name, rewritten by the node agent
        assert e["PET_NPROC_PER_NODE"] == "1" and e["PET_NNODES"] == "3"
    pod = json.loads(kc.kubectl("get", "pod", "env-job-worker-1", "-o", "json").stdout)
    raw = {v["name"]: v.get("value") for v in pod["spec"]["containers"][0]["env"]}
    assert raw["MASTER_ADDR"] == "env-job-master-0"
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0
