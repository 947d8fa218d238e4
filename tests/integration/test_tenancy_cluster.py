"""Issue 28 (items 1, 5, 6, 10) on the real test cluster, as a hostile or careless tenant tries it
against `miniseries operator` started as the chart starts it by default (no admission flags: the
policy of api/policy.py, which the chart's values equal):

- with no store roots every store is refused, naming the chart value to set (`store.roots`): another
  team's bucket, the operator's own filesystem; with `{namespace}` roots another team's prefix and a
  file:// store are refused too, and nothing is written there;
- a priority class the admin did not list, and a sweep over its namespace's GPU ceiling, are refused
  before any job exists (AdmissionDenied naming the field and what is allowed);
- a warmup longer than a run is refused naming the run and the field; a plan that leaves GPUs of a
  node idle says so in status.plan and in the IdleGpus condition, with the whole node's cost.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.harness.cluster import Cluster
from tests.harness.operator_process import Operator, condition, custom, events, get_sweep, list_jobs, sweep_doc
from tests.harness.processes import wait_for
from tests.integration import test_operator_cluster as base

pytestmark = [pytest.mark.cluster, pytest.mark.safety]
crds, start_operator = base.crds, base.start_operator


def batch_jobs(kc: Cluster, ns: str) -> list[dict[str, Any]]:
    return json.loads(kc.kubectl("get", "jobs", "-n", ns, "-o=json").stdout)["items"]  # type: ignore[no-any-return]


def ready(kc: Cluster, ns: str, name: str, reason: str, status: str = "False") -> dict[str, Any]:
    """The sweep's Ready condition once it has `status` and `reason`."""
    return wait_for(  # type: ignore[no-any-return]
        f"{name}: Ready={status} {reason}",
        lambda: (
            (c := condition(get_sweep(custom(kc), ns, name), "Ready")).get("reason") == reason
            and c.get("status") == status
            and c
        ),
        60,
    )


def warning(kc: Cluster, ns: str, name: str, reason: str) -> dict[str, Any]:
    (ev,) = wait_for(f"{name}: the {reason} event",
                     lambda: [e for e in events(kc, ns, name) if e["reason"] == reason], 30)  # fmt: skip
    return ev  # type: ignore[no-any-return]


def test_without_store_roots_every_store_is_refused_naming_the_chart_value(
    crds: Cluster, namespace: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """The issue's confused deputy: with the chart's default `store.roots: []` a sweep made the operator
    write into `team-b-private` and onto its own /tmp. Now both are refused (StoreNotAllowed, an Event),
    the message naming store.roots, and nothing is written."""
    kc, ns = crds, namespace
    start_operator(store_roots=[])  # the default: no roots, no opt-out
    own_disk = Path("/tmp") / f"miniseries-{uuid.uuid4().hex[:8]}"
    kc.apply(sweep_doc("theft", "s3://team-b-private/team-b", depths=[1]), "-n", ns)
    kc.apply(sweep_doc("disk", own_disk.as_uri(), depths=[1]), "-n", ns)
    for name, uri in (("theft", "s3://team-b-private/team-b"), ("disk", own_disk.as_uri())):
        c = ready(kc, ns, name, "StoreNotAllowed")
        assert c["message"].startswith("spec.store.uri") and repr(uri) in c["message"], c
        assert "store.roots (operator flag --store-root)" in c["message"], c
        ev = warning(kc, ns, name, "StoreNotAllowed")
        assert ev["type"] == "Warning" and ev["message"] == c["message"]
    assert "operator's own filesystem" in condition(get_sweep(custom(kc), ns, "disk"), "Ready")["message"]
    assert not own_disk.exists()
    assert list_jobs(custom(kc), ns) == [] and batch_jobs(kc, ns) == []


def test_namespace_roots_keep_a_team_in_its_own_prefix_and_off_the_operators_disk(
    crds: Cluster, namespace: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """`{namespace}` in a root gives each team its own prefix: a sweep naming another team's prefix
    or a file:// store outside the roots is refused naming the allowed root; its own prefix plans."""
    kc, ns = crds, namespace
    teams = tmp_path / "teams"
    start_operator(store_roots=[f"{teams.as_uri()}/{{namespace}}"])
    kc.apply(sweep_doc("neighbour", (teams / "team-b").as_uri(), depths=[1]), "-n", ns)
    kc.apply(sweep_doc("tmp", (tmp_path / "elsewhere").as_uri(), depths=[1]), "-n", ns)
    kc.apply(sweep_doc("mine", (teams / ns).as_uri(), depths=[1]), "-n", ns)
    for name in ("neighbour", "tmp"):
        c = ready(kc, ns, name, "StoreNotAllowed")
        assert (
            "outside the store roots this operator allows" in c["message"] and f"{teams.as_uri()}/{ns}" in c["message"]
        )
    ready(kc, ns, "mine", "SpecValid", "True")
    assert not (teams / "team-b").exists() and not (tmp_path / "elsewhere").exists()
    assert (teams / ns / ns / "mine" / "store-manifest.json").exists()


def test_priority_classes_and_the_gpu_ceiling_are_the_admins(
    crds: Cluster, namespace: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """No priority class is allowed unless the admin lists it (the jobs are created by the operator's
    ServiceAccount, so nothing keyed on the tenant sees who asked); a sweep over its namespace's GPU
    ceiling is refused naming spec.resources.parallelism and the largest that fits. Nothing is created
    for a refused sweep; the allowed one plans and its plan says the GPUs it leaves idle."""
    kc, ns = crds, namespace
    store = (tmp_path / "store").as_uri()
    start_operator(args=["--allowed-priority-class=team-low", f"--max-sweep-gpus={ns}=6", "--max-sweep-gpus=64"])
    queued = {"queueName": "team-queue"}
    kc.apply(sweep_doc("vip", store, depths=[1], priorityClassName="cluster-critical-admins-only", **queued), "-n", ns)
    for name, nodes, parallelism in (("wide", 2, 3), ("packed", 1, 2)):
        doc = sweep_doc(name, store, depths=[1, 2, 3], nodeGpus=8, gpusPerRun=3, nodes=nodes, parallelism=parallelism)
        doc["spec"]["training"].update(deviceBatchSize=8, totalBatchTokens=3072)  # micro-batches of 3 GPUs
        doc["spec"]["cost"]["pricePerGpuHour"] = 3.0
        kc.apply(doc, "-n", ns)
    c = ready(kc, ns, "vip", "AdmissionDenied")
    assert c["message"].startswith("spec.resources.priorityClassName: 'cluster-critical-admins-only' is not allowed")
    assert "allowed: 'team-low'" in c["message"]
    assert warning(kc, ns, "vip", "AdmissionDenied")["type"] == "Warning"
    c = ready(kc, ns, "wide", "AdmissionDenied")
    assert c["message"].startswith("spec.resources.parallelism: the plan holds 9 GPUs at once (3 runs x gpusPerRun 3)")
    assert f"the ceiling of 6 GPUs this operator allows one sweep in namespace '{ns}'" in c["message"]
    assert "allowed: parallelism <= 2" in c["message"]
    ready(kc, ns, "packed", "SpecValid", "True")
    names = {j["metadata"]["name"] for j in batch_jobs(kc, ns)} | {
        j["metadata"]["name"] for j in list_jobs(custom(kc), ns)
    }
    assert not [n for n in names if n.startswith(("vip-", "wide-"))], names

    # item 10: the accepted sweep's plan says what it leaves idle, in status.plan and as a condition
    sweep = get_sweep(custom(kc), ns, "packed")
    plan = sweep["status"]["plan"]
    assert plan["idleGpusPerNode"] == [2]
    assert plan["totalCostUsd"] == pytest.approx(plan["nodeGpuHours"] * 3.0)
    assert plan["nodeGpuHours"] > plan["totalGpuHours"]
    idle = wait_for("IdleGpus", lambda: condition(get_sweep(custom(kc), ns, "packed"), "IdleGpus") or None, 30)
    assert (idle["status"], idle["reason"]) == ("True", "IdleGpusPerNode")
    assert idle["message"].startswith("idle GPUs per node (n0: 2)") and "gpusPerRun 4" in idle["message"]


def test_a_warmup_longer_than_a_run_is_refused_naming_the_run(
    crds: Cluster, namespace: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    kc, ns = crds, namespace
    start_operator()
    doc = sweep_doc("slow-start", (tmp_path / "store").as_uri(), depths=[1, 2])
    doc["spec"]["training"]["warmupSteps"] = 100_000
    kc.apply(doc, "-n", ns)
    c = ready(kc, ns, "slow-start", "InvalidSpec")
    assert c["message"].startswith("spec.training.warmupSteps: 100,000 is longer than runs d1 (")
    assert "the learning rate would peak at" in c["message"] and "allowed: at most" in c["message"]
    assert batch_jobs(kc, ns) == []


@pytest.mark.helm
def test_secrets_are_read_only_in_namespaces_the_admin_grants(crds: Cluster, tmp_path: Path) -> None:
    """Item 7 end to end, with nothing but the chart's ServiceAccount token: the default install reads
    no Secret anywhere, so a sweep naming an opted-in Secret is refused saying how to grant it
    (admission.secretNamespaces); `helm upgrade` with that namespace listed lets the waiting sweep go
    ahead, and only there."""
    import os
    import subprocess
    import sys

    from tests.harness.helm import CHART, helm
    from tests.harness.operator_process import PYTHONPATH
    from tests.harness.processes import free_port
    from tests.integration.test_chart_cluster import sa_kubeconfig

    kc = crds
    release_ns, release, sweeps = f"tenancy-{uuid.uuid4().hex[:5]}", "tn", f"tenancy-sweeps-{uuid.uuid4().hex[:5]}"
    sa = f"{release}-miniseries-operator"
    helm_args = ["--kubeconfig", str(kc.kubeconfig), "-n", release_ns]
    helm("install", release, str(CHART), *helm_args, "--create-namespace", "--set", "replicaCount=0",
         "--set", "peering.enabled=false", "--wait")  # fmt: skip
    kc.kubectl("create", "namespace", sweeps)
    log = (tmp_path / "operator.log").open("w")
    token = sa_kubeconfig(kc.kubeconfig, tmp_path, release_ns, sa)  # the chart's ServiceAccount and nothing else
    cmd = [sys.executable, "-m", "miniseries.cli", "operator", f"--kubeconfig={token}", "--all-namespaces",
           f"--metrics-port={free_port()}", f"--liveness-port={free_port()}",
           f"--store-root={tmp_path.resolve().as_uri()}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": PYTHONPATH, "MINISERIES_POLL_SECONDS": "1"}
    operator = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        kc.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "team-s3", "namespace": sweeps,
                  "labels": {"miniseries.dev/allow-sweeps": "true"}}, "stringData": {"AWS_ACCESS_KEY_ID": "x"}})  # fmt: skip
        doc = sweep_doc("keyed", (tmp_path / "store").as_uri(), depths=[1])
        doc["spec"]["store"]["credentialsSecret"] = "team-s3"
        kc.apply(doc, "-n", sweeps)
        c = wait_for("keyed refused", lambda: (c := condition(get_sweep(custom(kc), sweeps, "keyed"), "Ready"))
                     .get("reason") == "AdmissionDenied" and c, 90, operator)  # fmt: skip
        assert c["message"].startswith("spec.store.credentialsSecret: the operator may not read the metadata"), c
        assert "admission.secretNamespaces" in c["message"] and "<release>-secret-labels" in c["message"]
        helm("upgrade", release, str(CHART), *helm_args, "--reuse-values", "--set",
             f"admission.secretNamespaces={{{sweeps}}}", "--wait")  # fmt: skip
        wait_for("keyed accepted once granted",
                 lambda: condition(get_sweep(custom(kc), sweeps, "keyed"), "Ready").get("status") == "True", 90,
                 operator)  # fmt: skip
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        log.close()
        kc.kubectl("delete", "namespace", sweeps, "--wait=false", check=False)
        helm("uninstall", release, *helm_args, "--ignore-not-found", "--wait", check=False)
        kc.kubectl("delete", "namespace", release_ns, "--wait=false", check=False)
