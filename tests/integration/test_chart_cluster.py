"""The chart on a real API server: install, least privilege checked as the operator's
own ServiceAccount (SubjectAccessReviews and a TokenRequest token), upgrade with changed
values, an upgrade the schema refuses, uninstall."""

from __future__ import annotations

import functools
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.binaries import kubectl_binary
from tests.harness.cluster import MONITORING_CRDS, RESTRICTED, Cluster
from tests.harness.helm import CHART, helm
from tests.integration.test_chart import WORKLOAD_RULES

pytestmark = [pytest.mark.cluster, pytest.mark.helm]

NS = "chart-system"
RELEASE = "ms"
SA_NAME = f"{RELEASE}-miniseries-operator"
SA = f"system:serviceaccount:{NS}:{SA_NAME}"

FORBIDDEN = [  # (apiGroup, resource, verb, namespace): requests the operator never makes
    ("", "secrets", "get", "chart-a"),  # no Secret read in the default install (issue 28 item 7): the opt-in
    ("", "secrets", "get", "chart-b"),  # label check reads Secrets only where admission.secretNamespaces (or a
    ("", "secrets", "get", NS),  # namespace owner's RoleBinding) grants it
    ("", "secrets", "get", ""),  # and never cluster-wide
    ("", "secrets", "list", "chart-a"),
    ("", "secrets", "watch", "chart-a"),
    ("", "secrets", "update", "chart-a"),
    ("", "pods", "watch", "chart-a"),  # `list` by the sweep label, each reconcile; no watch, no get
    ("", "pods", "create", "chart-a"),
    ("", "pods", "delete", "chart-a"),
    ("", "pods/log", "get", "chart-a"),  # the log tail comes in pod status (FallbackToLogsOnError)
    ("apps", "deployments", "create", "chart-a"),
    ("", "configmaps", "create", NS),
    ("miniseries.dev", "scalingsweeps", "create", "chart-a"),
    ("miniseries.dev", "scalingsweeps", "update", "chart-a"),
    ("miniseries.dev", "scalingsweeps", "delete", "chart-a"),
    ("kubeflow.org", "pytorchjobs", "update", "chart-a"),  # patch (suspend) yes, update never
    ("batch", "jobs", "update", "chart-a"),
    ("coordination.k8s.io", "leases", "create", "chart-a"),
    ("kueue.x-k8s.io", "workloads", "list", "chart-a"),  # only with kueue.enabled (the upgrade below)
    ("kueue.x-k8s.io", "workloads", "patch", "chart-a"),
    ("kueue.x-k8s.io", "workloads", "delete", "chart-a"),  # never, even with kueue.enabled
    ("kueue.x-k8s.io", "localqueues", "list", "chart-a"),
    ("kueue.x-k8s.io", "clusterqueues", "list", ""),
    ("", "namespaces", "list", ""),
    ("", "nodes", "list", ""),
    ("rbac.authorization.k8s.io", "clusterrolebindings", "create", ""),
    ("apiextensions.k8s.io", "customresourcedefinitions", "create", ""),
]


def kubectl(
    kubeconfig: Path, *args: str, check: bool = True, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    cmd = [kubectl_binary(), f"--kubeconfig={kubeconfig}", *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr}")
    return proc


def get(kubeconfig: Path, *args: str) -> dict[str, Any]:
    return json.loads(kubectl(kubeconfig, "get", "-o", "json", *args).stdout)


def names(kubeconfig: Path, *args: str) -> str:
    return kubectl(kubeconfig, "get", "-o", "name", *args).stdout.strip()


@functools.cache
def _authorization(kubeconfig: Path) -> Any:
    from kubernetes import client, config

    return client.AuthorizationV1Api(config.new_client_from_config(config_file=str(kubeconfig)))


def allowed(kubeconfig: Path, group: str, resource: str, verb: str, namespace: str) -> bool:
    """A SubjectAccessReview for the operator's ServiceAccount: what `kubectl auth can-i --as`
    asks, exact about group and subresource and independent of the resource being served
    (Kubeflow's PyTorchJob CRD is not installed here). Sent by the Python client over one
    connection: the test asks about a hundred of them, and a kubectl process for each cost about
    15 CPU-seconds in all (the test's child processes: 21.5 s before, 5.1 s after, 2026-12-07, load ~20)."""
    name, _, sub = resource.partition("/")
    attrs = {"group": group, "resource": name, "subresource": sub, "verb": verb, "namespace": namespace}
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": SA, "groups": ["system:serviceaccounts"], "resourceAttributes": attrs}}  # fmt: skip
    return bool(_authorization(kubeconfig).create_subject_access_review(review).status.allowed)


def can_i(kubeconfig: Path, verb: str, resource: str, namespace: str) -> bool:
    """The same through `kubectl auth can-i --as`, for resources the server serves."""
    proc = kubectl(kubeconfig, "auth", "can-i", verb, resource, f"--as={SA}", "-n", namespace, check=False)
    assert proc.stdout.strip() in ("yes", "no"), proc.stderr
    return proc.stdout.strip() == "yes"


def timed_helm(*args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = helm(*args)
    return time.perf_counter() - start, proc


def sa_kubeconfig(admin: Path, tmp_path: Path, namespace: str = NS, name: str = SA_NAME) -> Path:
    """A kubeconfig holding only a TokenRequest token of the chart's ServiceAccount."""
    token = kubectl(admin, "-n", namespace, "create", "token", name, "--duration=30m").stdout.strip()
    cluster = yaml.safe_load(kubectl(admin, "config", "view", "--raw", "--minify", "--flatten").stdout)["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": cluster["name"], "user": "operator"}}],
        "current-context": "operator",
    }
    path = tmp_path / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def kubeconfig(cluster: Cluster) -> Path:
    """Admin kubeconfig of the session's real test cluster (tests/harness/cluster.py)."""
    return cluster.kubeconfig


def _tear_down(kc: Path) -> None:
    helm("uninstall", RELEASE, "--kubeconfig", str(kc), "-n", NS, "--wait", "--ignore-not-found", check=False)
    kubectl(kc, "delete", "namespace", "chart-a", "chart-b", NS, "--ignore-not-found", "--wait=false", check=False)
    kubectl(kc, "delete", "-f", str(MONITORING_CRDS), "--ignore-not-found", check=False)
    for ns in ("chart-a", "chart-b", NS):  # a namespace being deleted cannot be created again yet
        kubectl(kc, "wait", "--for=delete", f"namespace/{ns}", "--timeout=60s", check=False)


@pytest.fixture
def clean(kubeconfig: Path) -> Any:
    """The chart test's namespaces and the stand-in monitoring CRDs, removed before and after."""
    _tear_down(kubeconfig)
    yield kubeconfig
    _tear_down(kubeconfig)


def test_install_least_privilege_upgrade_uninstall(clean: Path, tmp_path: Path, record_property: Any) -> None:
    kc = clean
    release = ["--kubeconfig", str(kc), "-n", NS]
    for ns in ("chart-a", "chart-b"):
        kubectl(kc, "create", "namespace", ns)
        kubectl(kc, "label", "namespace", ns, *(f"{k}={v}" for k, v in RESTRICTED.items()))

    # --- install
    seconds, proc = timed_helm(
        "install", RELEASE, str(CHART), *release, "--create-namespace", "--wait", "--timeout", "120s"
    )
    timings = {"install": round(seconds, 2)}
    assert f"rollout status deployment/{SA_NAME}" in proc.stdout  # NOTES say what to run next
    crd = get(kc, "crd", "scalingsweeps.miniseries.dev")
    assert any(c["type"] == "Established" and c["status"] == "True" for c in crd["status"]["conditions"])
    deploy = get(kc, "-n", NS, "deployment", SA_NAME)
    assert deploy["status"]["availableReplicas"] == 1  # probes, security context and volumes admitted
    assert deploy["spec"]["template"]["spec"]["serviceAccountName"] == SA_NAME
    assert names(kc, "clusterkopfpeering") == "clusterkopfpeering.kopf.dev/miniseries"
    assert len(get(kc, "-n", NS, "configmap", "-l", "grafana_dashboard=1")["items"]) == 2
    assert "monitoring.coreos.com" not in kubectl(kc, "api-versions").stdout  # so no monitors were rendered

    # --- every verb the operator uses is allowed to its ServiceAccount, anywhere; nothing else is
    for group, resource, verb in sorted(WORKLOAD_RULES):
        for ns in ("chart-a", "chart-b"):
            assert allowed(kc, group, resource, verb, ns), f"{SA} cannot {verb} {group}/{resource} in {ns}"
    for group, resource, verb, ns in FORBIDDEN:
        assert not allowed(kc, group, resource, verb, ns), f"{SA} can {verb} {group}/{resource} in {ns or '(cluster)'}"
    assert can_i(kc, "create", "jobs.batch", "chart-a") and can_i(kc, "create", "events", "chart-b")
    assert not can_i(kc, "get", "secrets", "chart-a") and not can_i(kc, "list", "secrets", "chart-a")

    # --- the same with the ServiceAccount's own token instead of impersonation
    operator = sa_kubeconfig(kc, tmp_path)
    # kubectl, not PyYAML: YAML 1.1 reads tiny.yaml's `2.0e11` as a string, the API server as a number
    kubectl(kc, "apply", "-n", "chart-a", "-f", str(CHART.parents[1] / "examples" / "tiny.yaml"))
    # a cluster-wide list works with the token (other tests' sweeps may be listed too: the cluster is shared)
    listed = kubectl(
        operator,
        "get",
        "scalingsweeps",
        "-A",
        "-o=jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name} {end}",
    )
    assert "chart-a/tiny" in listed.stdout.split()
    status = json.dumps({"status": {"phase": "Planning"}})
    kubectl(
        operator, "-n", "chart-a", "patch", "scalingsweep", "tiny", "--subresource=status", "--type=merge", "-p", status
    )
    kubectl(operator, "-n", "chart-a", "create", "job", "tokenizer", "--image=busybox", "--dry-run=server")
    kubectl(kc, "-n", "chart-a", "create", "secret", "generic", "team-a-db", "--from-literal=password=hunter2")
    for denied in (["-n", NS, "get", "secrets"], ["-n", "chart-a", "get", "secret", "team-a-db"],
                   ["-n", "chart-a", "delete", "scalingsweep", "tiny"]):  # fmt: skip
        proc = kubectl(operator, *denied, check=False)
        assert proc.returncode != 0 and "forbidden" in proc.stderr.lower(), proc.stderr

    # --- upgrade: serve only chart-a, S3 credentials from a Secret, Prometheus Operator API present
    kubectl(kc, "apply", "-f", str(MONITORING_CRDS))
    kubectl(
        kc,
        "wait",
        "--for=condition=Established",
        "crd/servicemonitors.monitoring.coreos.com",
        "crd/podmonitors.monitoring.coreos.com",
    )
    values = [
        "--set",
        "watch.allNamespaces=false",
        "--set",
        "watch.namespaces={chart-a}",
        "--set",
        "store.credentialsSecret=sweep-s3",
        "--set",
        "kueue.enabled=true",
    ]
    seconds, _ = timed_helm("upgrade", RELEASE, str(CHART), *release, "--wait", "--timeout", "120s", *values)
    timings["upgrade"] = round(seconds, 2)
    assert allowed(kc, "kubeflow.org", "pytorchjobs", "create", "chart-a")
    assert allowed(kc, "kopf.dev", "kopfpeerings", "patch", "chart-a")
    assert not allowed(kc, "kubeflow.org", "pytorchjobs", "create", "chart-b")
    # namespaced: the opt-in label check reads Secrets (metadata asked, RBAC grants get) where sweeps are only
    assert allowed(kc, "", "secrets", "get", "chart-a") and not allowed(kc, "", "secrets", "get", "chart-b")
    assert not allowed(kc, "", "secrets", "get", "")
    for verb in ("list", "patch"):  # kueue.enabled: Kueue's word on each job, spec.active for spec.suspend
        assert allowed(kc, "kueue.x-k8s.io", "workloads", verb, "chart-a")
        assert not allowed(kc, "kueue.x-k8s.io", "workloads", verb, "chart-b")
    for verb in ("get", "watch", "create", "update", "delete"):
        assert not allowed(kc, "kueue.x-k8s.io", "workloads", verb, "chart-a")
    assert not allowed(kc, "miniseries.dev", "scalingsweeps", "list", "")  # no longer cluster-wide
    assert not allowed(kc, "kopf.dev", "clusterkopfpeerings", "patch", "")
    assert names(kc, "clusterkopfpeering") == ""
    assert names(kc, "-n", "chart-a", "kopfpeering") == "kopfpeering.kopf.dev/miniseries"
    container = get(kc, "-n", NS, "deployment", SA_NAME)["spec"]["template"]["spec"]["containers"][0]
    assert "--namespace=chart-a" in container["args"] and "--all-namespaces" not in container["args"]
    assert container["envFrom"] == [{"secretRef": {"name": "sweep-s3"}}]
    assert names(kc, "-n", NS, "servicemonitor,podmonitor").split() == [
        f"servicemonitor.monitoring.coreos.com/{SA_NAME}",
        f"podmonitor.monitoring.coreos.com/{SA_NAME}-trainers",
    ]

    # --- a bad value is refused before anything changes
    bad = helm("upgrade", RELEASE, str(CHART), *release, "--reuse-values", "--set", "metrics.port=0", check=False)
    assert bad.returncode != 0 and "/metrics/port" in bad.stderr, bad.stderr
    history = json.loads(helm("history", RELEASE, *release, "-o", "json").stdout)
    assert [h["status"] for h in history] == ["superseded", "deployed"]

    # --- uninstall: what the chart made goes; CRDs and the users' sweeps stay (helm keeps crds/)
    seconds, _ = timed_helm("uninstall", RELEASE, *release, "--wait", "--timeout", "120s")
    timings["uninstall"] = round(seconds, 2)
    for step, value in timings.items():
        record_property(f"helm_{step}_s", value)
    mine = ["-l", f"app.kubernetes.io/instance={RELEASE}"]
    assert names(kc, "-n", NS, "all,configmap,serviceaccount,role,rolebinding,servicemonitor,podmonitor", *mine) == ""
    assert names(kc, "clusterrole,clusterrolebinding,clusterkopfpeering", *mine) == ""
    assert names(kc, "-n", "chart-a", "role,rolebinding,kopfpeering") == ""
    assert names(kc, "crd", "scalingsweeps.miniseries.dev", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")
    assert names(kc, "-n", "chart-a", "scalingsweep") == "scalingsweep.miniseries.dev/tiny"
    # The token may still authenticate for a moment (the SA informer lags), but grants nothing.
    gone = kubectl(operator, "get", "scalingsweeps", "-A", check=False)
    assert gone.returncode != 0 and ("forbidden" in gone.stderr.lower() or "unauthorized" in gone.stderr.lower())
    print("helm timings (s):", json.dumps(timings))
