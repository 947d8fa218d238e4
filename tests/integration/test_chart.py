"""The Helm chart, rendered by the real helm: lint, security settings, least-privilege
RBAC, monitors only where their API exists, dashboards, and a schema that names the
bad value. (Install/upgrade/uninstall on a real cluster: test_chart_cluster.py.)"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness.helm import CHART, ROOT, by_kind, helm, render

pytestmark = pytest.mark.helm

# What the operator does, as (apiGroup, resource, verb). The chart must grant exactly
# this: a new verb in the operator needs a line here and in templates/_helpers.tpl.
WORKLOAD_RULES = (
    {("miniseries.dev", "scalingsweeps", v) for v in ("get", "list", "watch", "patch")}
    | {
        ("miniseries.dev", "scalingsweeps/status", "get"),
        ("miniseries.dev", "scalingsweeps/status", "patch"),
        ("miniseries.dev", "scalingsweeps/finalizers", "update"),
        ("", "events", "create"),
        ("", "events", "patch"),  # a repeated Event is counted, not posted again
        (
            "",
            "events",
            "list",
        ),  # why admission refused a job's pods: FailedCreate/FailedCreatePod (control/decide/pod_troubles.py)
        ("", "pods", "list"),  # the kubelet's reasons (image pull, exit code, log tail) from pod status
    }
    | {
        (g, r, v)
        for g, r in (("kubeflow.org", "pytorchjobs"), ("batch", "jobs"))
        for v in ("get", "list", "watch", "create", "delete")
    }
    | {("kubeflow.org", "pytorchjobs", "patch")}  # suspend/resume: runPolicy.suspend
)
# kueue.enabled: each job's Workload (list, matched by owner uid) and spec.active for spec.suspend
# (patch); no get, watch, create, update or delete, and nothing else of Kueue's.
KUEUE_RULES = {("kueue.x-k8s.io", "workloads", "list"), ("kueue.x-k8s.io", "workloads", "patch")}
# admission.secretOptInLabel: the opt-in label, read as metadata only; only ever granted per namespace
# (a Role of a watched namespace, or a RoleBinding to <release>-secret-labels), never cluster-wide.
SECRET_GET = {("", "secrets", "get")}
SIDE_ROLES = ("-observer", "-secret-labels")  # the ClusterRoles beside the workload one
OBSERVER_RULES = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}
CLUSTER_PEERING = {("kopf.dev", "clusterkopfpeerings", v) for v in ("get", "list", "watch", "patch")}
NAMESPACED_PEERING = {("kopf.dev", "kopfpeerings", v) for v in ("get", "list", "watch", "patch")}


def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in role["rules"]:
        for g in rule["apiGroups"]:
            for r in rule["resources"]:
                for v in rule["verbs"]:
                    assert "*" not in (g, r, v), f"wildcard in {role['metadata']['name']}: {rule}"
                    out.add((g, r, v))
    return out


def test_lint_is_clean() -> None:
    out = helm("lint", "--strict", str(CHART), "--set", "monitoring.force=true")
    assert "0 chart(s) failed" in out.stdout


def test_deployment_is_locked_down() -> None:
    (deploy,) = by_kind(render(), "Deployment")
    pod = deploy["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = c["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert {v["name"]: v for v in pod["volumes"]}["tmp"]["emptyDir"]
    assert set(c["resources"]) == {"requests", "limits"}
    assert {"cpu", "memory"} <= set(c["resources"]["limits"])
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert f"--liveness-port={ports['healthz']}" in c["args"]
    assert f"--metrics-port={ports['metrics']}" in c["args"]
    assert c["command"] == ["miniseries", "operator"]
    assert pod["serviceAccountName"] == by_kind(render(), "ServiceAccount")[0]["metadata"]["name"]
    assert "envFrom" not in c  # no credentials unless a Secret is named


def test_s3_credentials_come_from_the_named_secret() -> None:
    (deploy,) = by_kind(render({"store.credentialsSecret": "sweep-s3"}), "Deployment")
    (c,) = deploy["spec"]["template"]["spec"]["containers"]
    assert c["envFrom"] == [{"secretRef": {"name": "sweep-s3"}}]


def test_store_roots_become_operator_flags() -> None:
    (deploy,) = by_kind(
        render({"store.roots[0]": "s3://shared/{namespace}", "store.roots[1]": "file:///srv/ms"}), "Deployment"
    )
    (c,) = deploy["spec"]["template"]["spec"]["containers"]
    assert [a for a in c["args"] if a.startswith("--store-root")] == [
        "--store-root=s3://shared/{namespace}",
        "--store-root=file:///srv/ms",
    ]
    (plain,) = by_kind(render(), "Deployment")
    args = plain["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if "store-root" in a or "allow-any" in a]  # no roots, no opt-out: every store refused
    (single,) = by_kind(render({"store.allowAnyStore": "true"}), "Deployment")
    assert "--allow-any-store" in single["spec"]["template"]["spec"]["containers"][0]["args"]


def test_admission_values_become_flags_and_only_the_label_check_reads_secrets() -> None:
    (deploy,) = by_kind(render(), "Deployment")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--allowed-image-prefix=ghcr.io/miniseries/trainer" in args  # secure defaults
    assert "--secret-opt-in-label=miniseries.dev/allow-sweeps" in args
    assert "--max-gpu-hours-without-budget=1000" in args
    objs = render({"admission.secretOptInLabel": "", "admission.maxGpuHoursWithoutBudget": "50"}, "miniseries",
                  "--set-json", "admission.allowedImagePrefixes=[]")  # fmt: skip
    args = by_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not any(a.startswith("--allowed-image-prefix") for a in args)  # permissive modes are explicit flags
    assert "--allow-any-image" in args and "--allow-any-secret" in args and "--max-gpu-hours-without-budget=50" in args
    assert not any(a.startswith("--secret-opt-in-label") for a in args)
    (role,) = [r for r in by_kind(objs, "ClusterRole") if not r["metadata"]["name"].endswith(SIDE_ROLES)]
    assert granted(role) == WORKLOAD_RULES  # no label, no access to Secrets
    assert not [r for r in by_kind(objs, "ClusterRole") if r["metadata"]["name"].endswith("-secret-labels")]
    two = render({"admission.allowedImagePrefixes": "{ghcr.io/a/,registry.corp:5000/b}"})
    args = by_kind(two, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if a.startswith("--allowed-image-prefix")] == [
        "--allowed-image-prefix=ghcr.io/a/", "--allowed-image-prefix=registry.corp:5000/b"]  # fmt: skip


def test_cluster_wide_rbac_is_exactly_what_the_operator_uses() -> None:
    objs = render()
    roles = {r["metadata"]["name"]: granted(r) for r in by_kind(objs, "ClusterRole")}
    assert by_kind(objs, "Role") == []
    assert roles == {
        "ms-miniseries-operator": WORKLOAD_RULES,
        "ms-miniseries-operator-observer": OBSERVER_RULES | CLUSTER_PEERING,
        "ms-miniseries-operator-secret-labels": SECRET_GET,  # bound per namespace only, below
    }
    sa = by_kind(objs, "ServiceAccount")[0]["metadata"]
    for binding in by_kind(objs, "ClusterRoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["name"], "namespace": "miniseries"}]
        assert binding["roleRef"]["name"] in roles
    assert by_kind(objs, "RoleBinding") == []  # admission.secretNamespaces is empty: Secrets nowhere
    (deploy,) = by_kind(objs, "Deployment")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--all-namespaces" in args and "--peering=miniseries" in args
    (peering,) = by_kind(objs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "miniseries"


def test_namespaced_rbac_gives_roles_only_in_the_watched_namespaces() -> None:
    objs = render({"watch.allNamespaces": "false", "watch.namespaces": "{team-a,team-b}"})
    cluster_roles = {r["metadata"]["name"]: granted(r) for r in by_kind(objs, "ClusterRole")}
    assert cluster_roles == {"ms-miniseries-operator-observer": OBSERVER_RULES}  # read-only CRD observation
    roles = by_kind(objs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert granted(role) == WORKLOAD_RULES | SECRET_GET | NAMESPACED_PEERING  # Secrets: where sweeps are
    assert sorted(b["metadata"]["namespace"] for b in by_kind(objs, "RoleBinding")) == ["team-a", "team-b"]
    assert sorted(p["metadata"]["namespace"] for p in by_kind(objs, "KopfPeering")) == ["team-a", "team-b"]
    (deploy,) = by_kind(objs, "Deployment")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--all-namespaces" not in args


def test_the_default_install_grants_no_cluster_wide_secret_read() -> None:
    """Issue 28 item 7: no ClusterRoleBinding reaches a role that may get Secrets; the Secret opt-in
    check reads Secrets only in the namespaces of admission.secretNamespaces, by RoleBinding."""
    for objs in (render(), render({"kueue.enabled": "true", "backends": "{pytorchjob,trainjob}"})):
        roles = {r["metadata"]["name"]: granted(r) for r in by_kind(objs, "ClusterRole")}
        for binding in by_kind(objs, "ClusterRoleBinding"):
            assert not {(g, r) for g, r, _ in roles[binding["roleRef"]["name"]]} & {("", "secrets")}, binding
        assert by_kind(objs, "RoleBinding") == []
    objs = render({"admission.secretNamespaces": "{team-a,team-b}"})
    bindings = by_kind(objs, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    assert {b["roleRef"]["name"] for b in bindings} == {"ms-miniseries-operator-secret-labels"}
    assert {b["roleRef"]["kind"] for b in bindings} == {"ClusterRole"}


def test_priority_class_runtime_and_gpu_ceiling_values_become_flags() -> None:
    (deploy,) = by_kind(render(), "Deployment")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert not [a for a in args if "priority-class" in a or "max-sweep-gpus" in a]  # none allowed, no ceiling
    assert "--allowed-training-runtime=miniseries-torch-distributed" in args
    objs = render({"admission.allowedPriorityClasses": "{team-low,team-high}", "admission.maxSweepGpus": "16",
                   "admission.maxSweepGpusByNamespace.team-a": "4"})  # fmt: skip
    args = by_kind(objs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [a for a in args if "priority-class" in a] == [
        "--allowed-priority-class=team-low", "--allowed-priority-class=team-high"]  # fmt: skip
    assert [a for a in args if "max-sweep-gpus" in a] == ["--max-sweep-gpus=16", "--max-sweep-gpus=team-a=4"]


def test_the_operator_without_flags_enforces_the_charts_default_policy() -> None:
    """Issue 28 item 5: one policy whoever starts the operator. The chart's default args, parsed by
    `miniseries operator`'s own parser, give the same policy as no flags at all."""
    import argparse

    from miniseries.cli import serve

    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers())
    (deploy,) = by_kind(render(), "Deployment")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    charted = serve.policy_from_args(parser.parse_args(["operator", *args]))
    bare = serve.policy_from_args(parser.parse_args(["operator"]))
    assert charted == bare
    assert bare.store_roots == () and not bare.any_store and bare.secret_opt_in_label


def test_kueue_value_grants_only_list_and_patch_on_workloads() -> None:
    cluster_wide = render({"kueue.enabled": "true"})
    (role,) = [r for r in by_kind(cluster_wide, "ClusterRole") if not r["metadata"]["name"].endswith(SIDE_ROLES)]
    assert granted(role) == WORKLOAD_RULES | KUEUE_RULES
    namespaced = render({"kueue.enabled": "true", "watch.allNamespaces": "false", "watch.namespaces": "{team-a}"})
    (role,) = by_kind(namespaced, "Role")
    assert granted(role) == WORKLOAD_RULES | SECRET_GET | KUEUE_RULES | NAMESPACED_PEERING
    observer = {r["metadata"]["name"]: granted(r) for r in by_kind(namespaced, "ClusterRole")}
    assert observer == {"ms-miniseries-operator-observer": OBSERVER_RULES}  # nothing of Kueue's cluster-wide
    bad = helm("template", "ms", str(CHART), "--set", "kueue.enabled=yes", check=False)
    assert bad.returncode != 0 and "kueue" in bad.stderr, bad.stderr


# backends: trainjob: the Trainer v2 TrainJobs (create, watch, delete; patch spec.suspend), nothing else of
# trainer.kubeflow.org (the ClusterTrainingRuntime is referenced by name, never read: the trainer's webhook
# refuses a TrainJob naming one that does not exist, and the operator reports that refusal).
TRAINJOB_RULES = {
    ("trainer.kubeflow.org", "trainjobs", v) for v in ("get", "list", "watch", "create", "delete", "patch")
}
PYTORCHJOB_RULES = {("kubeflow.org", "pytorchjobs", v) for v in ("get", "list", "watch", "create", "delete", "patch")}


@pytest.mark.trainjob
def test_backends_value_grants_each_backends_jobs_only_and_becomes_flags() -> None:
    for backends, rules in (
        ("{trainjob}", TRAINJOB_RULES),
        ("{pytorchjob,trainjob}", PYTORCHJOB_RULES | TRAINJOB_RULES),
    ):
        objs = render({"backends": backends})
        (role,) = [r for r in by_kind(objs, "ClusterRole") if not r["metadata"]["name"].endswith(SIDE_ROLES)]
        assert granted(role) == (WORKLOAD_RULES - PYTORCHJOB_RULES) | rules
        (deploy,) = by_kind(objs, "Deployment")
        args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
        assert [a for a in args if a.startswith("--backend")] == [
            f"--backend={b}" for b in backends.strip("{}").split(",")]  # fmt: skip
    namespaced = render({"backends": "{trainjob}", "watch.allNamespaces": "false", "watch.namespaces": "{team-a}"})
    (role,) = by_kind(namespaced, "Role")
    assert granted(role) == (WORKLOAD_RULES - PYTORCHJOB_RULES) | TRAINJOB_RULES | SECRET_GET | NAMESPACED_PEERING
    observer = {r["metadata"]["name"]: granted(r) for r in by_kind(namespaced, "ClusterRole")}
    assert observer == {"ms-miniseries-operator-observer": OBSERVER_RULES}  # nothing of the trainer's cluster-wide
    default = render()
    (deploy,) = by_kind(default, "Deployment")
    assert "--backend=pytorchjob" in deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    assert by_kind(default, "ClusterTrainingRuntime") == []  # only with backends including trainjob


def backend_rules(backend: Any) -> set[tuple[str, str, str]]:
    """What a registered backend says the operator needs (JobBackend.rbac_rules), as granted() reads a role."""
    return {(r.api_group, r.resource, v) for r in backend.rbac_rules() for v in r.verbs}


def test_the_chart_grants_what_every_registered_backend_needs_and_only_when_listed() -> None:
    """Each backend of the registry (control/backends/registry.py), listed in `backends` alone or with
    all the others, cluster-wide and per namespace: the operator's role grants that backend's
    `rbac_rules`, and nothing of a backend not listed. A backend registered without its rules in
    templates/_helpers.tpl (and its name in values.schema.json) fails here."""
    from miniseries.control.backends.registry import BACKENDS

    names = [b.value for b in BACKENDS]
    for listed in [names, *([n] for n in names)]:
        for scope in ({}, {"watch.allNamespaces": "false", "watch.namespaces": "{team-a}"}):
            objs = render({"backends": "{" + ",".join(listed) + "}", **scope})
            roles = [r for r in by_kind(objs, "ClusterRole") + by_kind(objs, "Role")
                     if not r["metadata"]["name"].endswith(SIDE_ROLES)]  # fmt: skip
            grants = set().union(*(granted(r) for r in roles))
            for backend, b in BACKENDS.items():
                needs = backend_rules(b)
                if backend.value in listed:
                    assert needs <= grants, f"backends {listed}: {backend.value} lacks {needs - grants}"
                else:
                    assert not needs & grants, f"backends {listed}: {backend.value}'s rules granted"


@pytest.mark.trainjob
def test_trainjob_runtime_is_installed_only_when_asked() -> None:
    (runtime,) = by_kind(render({"backends": "{trainjob}"}), "ClusterTrainingRuntime")
    assert runtime["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert runtime["metadata"]["name"] == "miniseries-torch-distributed"
    assert runtime["metadata"]["labels"]["trainer.kubeflow.org/framework"] == "torch"
    assert runtime["spec"]["mlPolicy"] == {"numNodes": 1, "torch": {}}
    (node,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node"  # the replicated job and container the torch plugin and our patch address
    assert node["template"]["metadata"]["labels"] == {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}
    assert node["template"]["spec"]["backoffLimit"] == 0
    pod = node["template"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert pod["restartPolicy"] == "Never" and c["name"] == "node"
    assert pod["terminationGracePeriodSeconds"] == 600  # the floor where a TrainJob's own is lost (Kueue v0.19.2)
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert c["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]
    named = render({"backends": "{trainjob}", "trainjob.runtime.name": "team-torch"})
    assert [r["metadata"]["name"] for r in by_kind(named, "ClusterTrainingRuntime")] == ["team-torch"]
    assert (
        by_kind(render({"backends": "{trainjob}", "trainjob.runtime.install": "false"}), "ClusterTrainingRuntime") == []
    )


def test_namespaced_without_a_list_serves_the_release_namespace() -> None:
    objs = render({"watch.allNamespaces": "false", "peering.enabled": "false"}, namespace="ops")
    assert [r["metadata"]["namespace"] for r in by_kind(objs, "Role")] == ["ops"]
    assert by_kind(objs, "KopfPeering") == [] and by_kind(objs, "ClusterKopfPeering") == []
    for role in by_kind(objs, "Role"):
        assert granted(role) == WORKLOAD_RULES | SECRET_GET


def test_monitors_only_where_the_prometheus_operator_api_exists() -> None:
    assert by_kind(render(), "ServiceMonitor") == [] and by_kind(render(), "PodMonitor") == []
    with_api = render(None, "miniseries", "--api-versions", "monitoring.coreos.com/v1")
    (sm,) = by_kind(with_api, "ServiceMonitor")
    (pm,) = by_kind(with_api, "PodMonitor")
    (svc,) = by_kind(with_api, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"] == "metrics"
    assert pm["spec"]["selector"]["matchExpressions"] == [{"key": "miniseries.dev/sweep", "operator": "Exists"}]
    assert pm["spec"]["namespaceSelector"] == {"any": True}
    forced = render({"monitoring.force": "true", "monitoring.trainers.enabled": "false"})
    assert len(by_kind(forced, "ServiceMonitor")) == 1 and by_kind(forced, "PodMonitor") == []


def test_dashboards_are_configmaps_for_the_grafana_sidecar() -> None:
    maps = by_kind(render(), "ConfigMap")
    assert len(maps) == len(list((ROOT / "dashboards").glob("*.json"))) == 2
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((name, text),) = cm["data"].items()
        assert json.loads(text) == json.loads((ROOT / "dashboards" / name).read_text())
    assert by_kind(render({"dashboards.enabled": "false"}), "ConfigMap") == []


def test_crds_are_in_the_chart() -> None:
    crds = {c["metadata"]["name"] for c in by_kind(render(), "CustomResourceDefinition")}
    assert crds == {"scalingsweeps.miniseries.dev", "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("image.pullPolicy=Sometimes", "/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"),
        ("metrics.port=70000", "/metrics/port': maximum"),
        ("watch.namespaces[0]=Team_A", "/watch/namespaces/0': 'Team_A' does not match pattern"),
        ("replicaCount=-1", "/replicaCount': minimum"),
        ("peering.enabled=maybe", "/peering/enabled': got string, want boolean"),
        ("monitoring.interval=often", "/monitoring/interval': 'often' does not match pattern"),
        ("store.credentialsSecret=Not_A_Name", "/store/credentialsSecret'"),
        ("store.roots[0]=http://x", "/store/roots/0': 'http://x' does not match pattern"),
        ("storage.uri=s3://x", "additional properties 'storage' not allowed"),
        ("admission.allowedImagePrefixes={python}", "/admission/allowedImagePrefixes/0': 'python' does not match"),
        ("admission.secretOptInLabel=not a label", "/admission/secretOptInLabel': 'not a label' does not match"),
        ("admission.maxGpuHoursWithoutBudget=0", "/admission/maxGpuHoursWithoutBudget': exclusiveMinimum"),
        (
            "admission.allowedPriorityClasses={Team_High}",
            "/admission/allowedPriorityClasses/0': 'Team_High' does not match",
        ),
        ("admission.maxSweepGpus=-1", "/admission/maxSweepGpus': minimum"),
        ("store.allowAnyStore=yes", "/store/allowAnyStore': got string, want boolean"),
        ("backends={mpijob}", "/backends/0': value must be one of 'pytorchjob', 'trainjob'"),
        ("trainjob.runtime.name=Torch_Runtime", "/trainjob/runtime/name': 'Torch_Runtime' does not match pattern"),
    ],
)
def test_schema_rejects_bad_values_naming_the_field(flag: str, message: str) -> None:
    proc = helm("template", "ms", str(CHART), "--kube-version", "1.31.0", "--set", flag, check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert message in proc.stderr, proc.stderr
