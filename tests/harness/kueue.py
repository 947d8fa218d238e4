"""The real Kueue on the test cluster: the e2e control plane (tests/harness/training_operator.py: etcd,
kube-apiserver, controller-manager, scheduler and the Kubeflow training-operator with its webhook
over TLS), kwok nodes with 8 ``nvidia.com/gpu`` each, and Kueue's controller-manager with its
webhooks (mutating, validating, CRD conversion) served over TLS to the API server.

Kueue comes from the Go-built cache, ``~/.cache/miniseries/bin/kueue-<version>/`` (the version is
scripts/versions.env's ``KUEUE_VERSION``; scripts/build-binaries.sh builds it with ``go install`` and
copies beside it the CRDs and webhook configurations its module publishes in config/components).
The harness applies those, not copies of its own:

- the CRDs (``crd/bases``) server-side, with the conversion-webhook patches that Kueue's
  kustomization names (``crd/patches/webhook_in_*``) pointing at this Kueue by URL;
- the Mutating/ValidatingWebhookConfigurations (``webhook/manifests.yaml``) named as Kueue's
  install names them (``kueue-`` prefix), each ``clientConfig`` rewritten from the in-cluster
  Service to ``https://127.0.0.1:<port><path>`` with this harness's CA, and the namespaceSelector
  (not kube-system, kueue-system) that Kueue's webhook kustomization adds;
- a Configuration (config.kueue.x-k8s.io/v1beta2): the PyTorchJob and batch Job integrations,
  ``manageJobsWithoutQueueName: false``, internal cert management off (the harness's CA signs the
  serving certificate), leader election off, every listener (webhook, health, metrics, visibility)
  on a free loopback port.

Kueue reads two certificates from paths compiled into it when its own cert management is off:
the metrics server's (``/etc/kueue/metrics/certs``) and the visibility API server's
(``/visibility``). As root, Kueue runs in a private mount namespace where this cluster's directories
are bound onto those paths (only empty mount points are created on the host), so two test sessions
cannot replace each other's certificates; otherwise the files are written there directly.

Ready means a state, not a wait: ``/readyz`` (Kueue's check waits for its webhook server), then a
server-side dry run of a ResourceFlavor passes through Kueue's mutating and validating webhooks
(the API server reaches them over TLS), then the visibility API answers.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.harness.binaries import CACHE, MissingBinary, built, pinned_version
from tests.harness.certs import make_ca, make_serving_cert, pem_cert, pem_key
from tests.harness.cluster import GPUS_PER_NODE, gpu_node, start_kwok
from tests.harness.processes import Stack, free_port, wait_for
from tests.harness.training_operator import RealPathCluster, real_path_cluster
from tests.harness.webhooks import serve_at

KUEUE_VERSION = pinned_version("KUEUE_VERSION")
KUEUE_NAMESPACE = "kueue-system"  # the Configuration's namespace, excluded from Kueue's webhooks
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
KUEUE_API = "kueue.x-k8s.io/v1beta2"
VISIBILITY_API = "/apis/visibility.kueue.x-k8s.io/v1beta2"
# Compiled into Kueue (cmd/kueue/main.go, pkg/visibility/server.go) for internalCertManagement off.
METRICS_CERT_DIR = Path("/etc/kueue/metrics/certs")
VISIBILITY_CERT_DIR = Path("/visibility")


def kueue_dir() -> Path:
    return CACHE / f"kueue-{KUEUE_VERSION}"


def kueue_binary() -> Path:
    return built(_kueue_binary, what="kueue")  # waits for `make test`'s background build (builds.py)


def _kueue_binary() -> Path:
    d = kueue_dir()
    for path in (d / "kueue", d / "webhook" / "manifests.yaml", d / "crd" / "kustomization.yaml"):
        if not path.is_file():
            raise MissingBinary(
                f"{path} missing (Kueue {KUEUE_VERSION} and its manifests): run scripts/build-binaries.sh"
            )
    return d / "kueue"


# ---- Kueue's published manifests, pointed at this harness's webhook server
def kueue_crds(webhook_url: str, ca: bytes) -> list[dict[str, Any]]:
    """The CRDs Kueue's crd/kustomization.yaml lists, with its conversion-webhook patches applied:
    their Service reference becomes ``webhook_url``/convert with the harness CA."""
    base = kueue_dir() / "crd"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    converted = set()
    for patch in kustomization.get("patches", []):
        doc = yaml.safe_load((base / patch["path"]).read_text())
        if doc["spec"]["conversion"]["strategy"] == "Webhook":
            converted.add(doc["metadata"]["name"])
    crds = []
    for resource in kustomization["resources"]:
        crd = yaml.safe_load((base / resource).read_text())
        if crd["metadata"]["name"] in converted:
            crd["spec"]["conversion"] = {
                "strategy": "Webhook",
                "webhook": {
                    "clientConfig": {"url": f"{webhook_url}/convert", "caBundle": base64.b64encode(ca).decode()},
                    "conversionReviewVersions": ["v1"],
                },
            }
        crds.append(crd)
    return crds


def kueue_webhook_configurations(webhook_url: str, ca: bytes) -> list[dict[str, Any]]:
    """webhook/manifests.yaml as Kueue installs it (``kueue-`` name prefix, the namespaceSelector
    its kustomization copies onto the job webhooks), each clientConfig a URL on this host."""
    base = kueue_dir() / "webhook"
    kustomization = yaml.safe_load((base / "kustomization.yaml").read_text())
    selectors: dict[str, dict[str, Any]] = {}
    for patch in kustomization.get("patches", []):
        for hook in yaml.safe_load(patch["patch"]).get("webhooks", []):
            if "namespaceSelector" in hook:
                selectors[hook["name"]] = hook["namespaceSelector"]
    for replacement in kustomization.get("replacements", []):
        source = replacement["source"]["fieldPath"]  # webhooks.[name=vpod.kb.io].namespaceSelector
        selector = selectors[source.split("[name=", 1)[1].split("]", 1)[0]]
        for target in replacement["targets"]:
            for path in target["fieldPaths"]:
                selectors[path.split("[name=", 1)[1].split("]", 1)[0]] = selector
    docs = []
    for doc in yaml.safe_load_all((base / "manifests.yaml").read_text()):
        if not doc:
            continue
        doc = copy.deepcopy(doc)
        doc["metadata"]["name"] = f"kueue-{doc['metadata']['name']}"
        for hook in doc["webhooks"]:
            serve_at(hook, webhook_url, ca)
            if hook["name"] in selectors:
                hook["namespaceSelector"] = selectors[hook["name"]]
        docs.append(doc)
    return docs


#: The job integrations the harness's Kueue serves (the Trainer v2 tests add trainer.kubeflow.org/trainjob).
FRAMEWORKS = ("batch/job", "kubeflow.org/pytorchjob")


def kueue_configuration(
    cert_dir: Path, ports: dict[str, int], frameworks: tuple[str, ...] = FRAMEWORKS
) -> dict[str, Any]:
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": KUEUE_NAMESPACE,
        "manageJobsWithoutQueueName": False,
        "internalCertManagement": {"enable": False},
        "leaderElection": {"leaderElect": False},
        "webhook": {"host": "127.0.0.1", "port": ports["webhook"], "certDir": str(cert_dir)},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{ports['health']}"},
        "metrics": {"bindAddress": f"127.0.0.1:{ports['metrics']}"},
        "visibilityServer": {"bindAddress": "127.0.0.1", "bindPort": ports["visibility"]},
        "integrations": {"frameworks": list(frameworks)},
    }


@dataclass
class KueueCluster(RealPathCluster):
    """The real path plus Kueue: where its webhook, visibility API and log are."""

    kueue_log: Path = Path()
    kueue_ca_file: Path = Path()
    webhook_url: str = ""
    visibility_url: str = ""
    metrics_url: str = ""
    gpu_nodes: list[str] = field(default_factory=list)
    kueue_start_seconds: float = 0.0

    def visibility(self, path: str) -> dict[str, Any]:
        """GET from Kueue's visibility API server (on-demand pending workloads with their
        positions), directly: this test API server has no aggregation layer to proxy it."""
        r = requests.get(
            f"{self.visibility_url}{VISIBILITY_API}{path}",
            headers={"Authorization": f"Bearer {self.token}"},
            verify=str(self.kueue_ca_file),
            timeout=10,
        )
        r.raise_for_status()
        return r.json()  # type: ignore[no-any-return]

    def metrics(self) -> str:
        r = requests.get(
            f"{self.metrics_url}/metrics",
            headers={"Authorization": f"Bearer {self.token}"},
            verify=str(self.kueue_ca_file),
            timeout=10,
        )
        r.raise_for_status()
        return r.text


def _add_gpu_nodes(cluster: RealPathCluster, names: list[str]) -> None:
    ready = "-o=jsonpath={.status.conditions[?(@.type=='Ready')].status}"
    alloc = "-o=jsonpath={.status.allocatable.nvidia\\.com/gpu}"
    for name in names:
        cluster.apply(gpu_node(name))
    for name in names:
        wait_for(f"node {name} Ready", lambda n=name: cluster.kubectl("get", "node", n, ready).stdout == "True", 60)
        if cluster.kubectl("get", "node", name, alloc).stdout != str(GPUS_PER_NODE):
            status = {"status": gpu_node(name)["status"]}
            cluster.kubectl("patch", "node", name, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def start_kueue(
    stack: Stack, cluster: RealPathCluster, workdir: Path, frameworks: tuple[str, ...] = FRAMEWORKS
) -> KueueCluster:
    """Kueue's CRDs, webhooks and controller-manager on ``cluster``, up and answering."""
    binary = kueue_binary()
    t0 = time.monotonic()
    cluster.kubectl("create", "namespace", KUEUE_NAMESPACE)
    pki = workdir / "kueue-pki"
    pki.mkdir(parents=True, exist_ok=True)
    ca, ca_key = make_ca("kueue-test-ca", organization="kueue")
    service = f"kueue-webhook-service.{KUEUE_NAMESPACE}.svc"
    cert, key = make_serving_cert(ca, ca_key, service, dns=[service, "localhost"], ips=["127.0.0.1"])
    ca_pem = pem_cert(ca)
    (pki / "ca.crt").write_bytes(ca_pem)
    for d in ("webhook", "metrics", "visibility"):
        (pki / d).mkdir(exist_ok=True)
        (pki / d / "tls.crt").write_bytes(pem_cert(cert))
        (pki / d / "tls.key").write_bytes(pem_key(key))
    ports = {k: free_port() for k in ("webhook", "health", "metrics", "visibility")}
    webhook_url = f"https://127.0.0.1:{ports['webhook']}"

    # CRDs first (Kueue's integrations and caches look for them at start), established.
    crds = kueue_crds(webhook_url, ca_pem)
    cluster.kubectl("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(crds), timeout=180)
    established = "-o=jsonpath={.status.conditions[?(@.type=='Established')].status}"
    for crd in crds:
        name = crd["metadata"]["name"]
        wait_for(f"CRD {name}", lambda n=name: cluster.kubectl("get", f"crd/{n}", established).stdout == "True", 60)
    cluster.apply(kueue_webhook_configurations(webhook_url, ca_pem))

    config = workdir / "kueue-config.yaml"
    config.write_text(yaml.safe_dump(kueue_configuration(pki / "webhook", ports, frameworks)))
    private = os.geteuid() == 0 and shutil.which("unshare") is not None
    if private:
        for mount_point in (METRICS_CERT_DIR, VISIBILITY_CERT_DIR):
            mount_point.mkdir(parents=True, exist_ok=True)
        wrap = ["unshare", "--mount", "--propagation=private", "sh", "-c",
                f'mount --bind "$1" {METRICS_CERT_DIR} && mount --bind "$2" {VISIBILITY_CERT_DIR} && shift 2 && exec "$@"',
                "sh", str(pki / "metrics"), str(pki / "visibility")]  # fmt: skip
    else:
        try:
            for src, dest in ((pki / "metrics", METRICS_CERT_DIR), (pki / "visibility", VISIBILITY_CERT_DIR)):
                dest.mkdir(parents=True, exist_ok=True)
                for name in ("tls.crt", "tls.key"):
                    shutil.copyfile(src / name, dest / name)
        except PermissionError as e:
            if os.geteuid() == 0:  # root and still refused: a real error, not a missing privilege
                raise
            # Not a missing binary: a privilege this machine's user lacks, said as such.
            pytest.skip(
                f"not root: Kueue reads its metrics and visibility certificates from {METRICS_CERT_DIR} and "
                f"{VISIBILITY_CERT_DIR} (compiled in): run as root, or make those directories writable ({e})"
            )
        wrap = []
    proc = stack.start(
        "kueue",
        [*wrap, str(binary), f"--config={config}", f"--kubeconfig={cluster.kubeconfig}", "--zap-log-level=2"],
    )
    health = f"http://127.0.0.1:{ports['health']}"
    wait_for("kueue /readyz", lambda: requests.get(f"{health}/readyz", timeout=2).status_code == 200, 180, proc)

    # The API server reaches Kueue's webhooks over TLS: a dry-run create passes mresourceflavor/vresourceflavor.
    probe = {"apiVersion": KUEUE_API, "kind": "ResourceFlavor", "metadata": {"name": "harness-probe"}}

    def webhooks_answer() -> bool:
        out = cluster.kubectl("create", "--dry-run=server", "-o=json", "-f", "-", stdin=json.dumps(probe), check=False)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        return True

    wait_for("kueue webhooks through the API server", webhooks_answer, 60, proc)
    kc = KueueCluster(
        **vars(cluster),
        kueue_log=Path(proc.log_path),  # type: ignore[attr-defined]
        kueue_ca_file=pki / "ca.crt",
        webhook_url=webhook_url,
        visibility_url=f"https://127.0.0.1:{ports['visibility']}",
        metrics_url=f"https://127.0.0.1:{ports['metrics']}",
    )
    # its API group's discovery document: the server is up and authenticates the admin by token
    wait_for("kueue visibility API", lambda: kc.visibility("")["kind"] == "APIResourceList", 60, proc)
    kc.ports += list(ports.values())
    kc.kueue_start_seconds = time.monotonic() - t0
    return kc


@contextlib.contextmanager
def kueue_cluster(workdir: Path, gpu_nodes: int = 2, agent_gpus: int = 0) -> Iterator[KueueCluster]:
    """The real path (control plane + training-operator), ``gpu_nodes`` kwok nodes of 8 GPUs and
    Kueue, all up and ready; everything stopped afterwards, Kueue first. ``agent_gpus``: also the
    node agent's node (tests/harness/node_agent.py, advertising that many GPUs), where pods run
    their containers for real (the trainer on CPU)."""
    kueue_binary()  # a skip before anything starts when Kueue is not built
    with real_path_cluster(workdir, gpus=agent_gpus, node_agent=agent_gpus > 0) as base:
        stack = Stack(workdir)
        try:
            names = [f"gpu-node-{i}" for i in range(gpu_nodes)]
            if names:
                start_kwok(stack, base)  # gpu-node-0
                _add_gpu_nodes(base, names[1:])
            kc = start_kueue(stack, base, workdir)
            kc.gpu_nodes = names
            kc.pids = [*base.pids, *stack.pids()]
            yield kc
        finally:
            stack.stop()


@contextlib.contextmanager
def fresh_namespace(kc: RealPathCluster, test_name: str) -> Iterator[str]:
    """A namespace of its own for one test (named after its first word, made unique), deleted after
    it without waiting: the next test's does not share its quota, LocalQueues or Workloads."""
    name = f"{test_name.split('_')[1]}-{uuid.uuid4().hex[:5]}"
    kc.create_namespace(name)
    try:
        yield name
    finally:
        kc.kubectl("delete", "namespace", name, "--wait=false", check=False)
