"""The real path's control plane for the e2e tests: the test cluster's control plane
(tests/harness/cluster.py: etcd, kube-apiserver, kube-controller-manager, kube-scheduler), plus the Kubeflow
training-operator with its validating webhook over TLS, and the test node agent
(tests/harness/node_agent.py) that runs pods as local processes.

Binaries come from the Go-built cache: ``~/.cache/miniseries/bin/<name>-<version>/<name>``
(scripts/build-binaries.sh, scripts/build-training-operator.sh), or from the directory in
``MINISERIES_K8S_BIN`` for the Kubernetes ones. A missing binary is a skip that names the
script to run, never a fake.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
import yaml

from tests.harness.binaries import CACHE, REPO, MissingBinary, built, pinned_version
from tests.harness.certs import make_ca, make_serving_cert, pem_cert, pem_key
from tests.harness.cluster import Cluster, install_pytorchjob_crd, start_control_plane
from tests.harness.node_agent import PID_DIR
from tests.harness.processes import Stack, free_port, wait_for

TRAINING_OPERATOR_VERSION = pinned_version("TRAINING_OPERATOR_VERSION")
# The training-operator writes its serving certificates here; the path is compiled in (pkg/cert).
TO_CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")
TO_NAMESPACE = "kubeflow"
# Names the training-operator's cert rotator looks for (cmd/training-operator.v1, pkg/cert).
TO_WEBHOOK_CONFIG = "validator.training-operator.kubeflow.org"
TO_SECRET = "training-operator-webhook-cert"
TO_SERVICE_DNS = f"training-operator.{TO_NAMESPACE}.svc"
TO_CA_NAME = "training-operator-ca"


def training_operator_binary() -> Path:
    path = CACHE / f"training-operator-{TRAINING_OPERATOR_VERSION}" / "training-operator"

    def lookup() -> Path:
        if not path.is_file():
            raise MissingBinary(f"{path} missing: run scripts/build-training-operator.sh")
        return path

    return built(lookup, what="training-operator")


def webhook_certs() -> dict[str, bytes]:
    """CA and serving certificate in the Secret layout of the operator's cert rotator
    (open-policy-agent/cert-controller): it keeps them when the CA verifies as
    ``training-operator-ca`` and the server cert as ``training-operator.kubeflow.svc``.
    The extra IP SAN 127.0.0.1 lets the API server call the webhook by URL on this host."""
    ca, ca_key = make_ca(TO_CA_NAME, organization="training-operator")
    cert, key = make_serving_cert(ca, ca_key, TO_SERVICE_DNS, dns=[TO_SERVICE_DNS], ips=["127.0.0.1"])
    return {"ca.crt": pem_cert(ca), "ca.key": pem_key(ca_key), "tls.crt": pem_cert(cert), "tls.key": pem_key(key)}


@dataclass
class RealPathCluster(Cluster):
    node_logs: Path = Path()

    def container_pid(self, namespace: str, pod: str, container: str | None = None) -> int:
        """The process the node agent runs for a container of this pod, found by the pod's uid (the
        agent records it, tests/harness/node_agent.py): never by a command line, which another run of
        the suite on the same host may share. Raises FileNotFoundError while it has not started."""
        obj = json.loads(self.kubectl("get", "pod", pod, "-n", namespace, "-o", "json").stdout)
        name = container or obj["spec"]["containers"][0]["name"]
        return int((self.node_logs / PID_DIR / f"{obj['metadata']['uid']}_{name}").read_text())


def start_node_agent(stack: Stack, cluster: RealPathCluster, gpus: int = 0) -> None:
    """The node that runs pods as local processes (tests/harness/node_agent.py), registered and Ready."""
    cluster.kubectl("create", "namespace", "kube-node-lease", check=False)
    stack.start("node-agent", [sys.executable, "-m", "tests.harness.node_agent", f"--kubeconfig={cluster.kubeconfig}",
                               "--name=e2e-node", f"--log-dir={cluster.node_logs}", f"--gpus={gpus}"],
                env={"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})  # fmt: skip
    ready = "-o=jsonpath={.status.conditions[?(@.type=='Ready')].status}"
    wait_for("node e2e-node", lambda: cluster.kubectl("get", "node/e2e-node", ready, check=False).stdout == "True", 60)


@contextlib.contextmanager
def real_path_cluster(
    workdir: Path, gpus: int = 0, node_agent: bool = True, training_operator: bool = True
) -> Iterator[RealPathCluster]:
    """The whole real path, up and ready: a PyTorchJob applied after this returns is validated by
    the training-operator's webhook, reconciled into pods and run by the node agent (or, with
    ``node_agent=False``, by whatever node the caller adds: tests/harness/node.py's real one).
    ``training_operator=False``: the control plane (and node agent) alone, for another backend's
    controllers (tests/harness/trainer.py)."""
    to_bin = training_operator_binary() if training_operator else None
    workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(workdir)
    try:
        base = start_control_plane(stack, workdir)
        cluster = RealPathCluster(**vars(base), node_logs=workdir / "node-logs")
        if to_bin is not None:
            _start_training_operator(stack, cluster, workdir, to_bin)
        if node_agent:
            start_node_agent(stack, cluster, gpus)
        yield cluster
    finally:
        stack.stop()


def _start_training_operator(stack: Stack, cluster: RealPathCluster, workdir: Path, to_bin: Path) -> None:
    """The training-operator and its validating webhook over TLS, up and answering."""
    # --- training-operator: its namespace, CRD, cert Secret and webhook configuration first
    install_pytorchjob_crd(cluster, to_bin.parent / "kubeflow.org_pytorchjobs.yaml")
    cluster.kubectl("create", "namespace", TO_NAMESPACE)
    certs = webhook_certs()
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": {"name": TO_SECRET, "namespace": TO_NAMESPACE},
              "data": {k: base64.b64encode(v).decode() for k, v in certs.items()}}  # fmt: skip
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(secret))
    # What the kubelet would do with the Secret volume: the rotator only waits for these files.
    # Their path is compiled in and machine-wide: as root, this cluster's training-operator gets
    # a private mount namespace with its own directory there, so a second test session's
    # certificates (another checkout, CI) cannot replace this one's while it runs.
    private = os.geteuid() == 0 and shutil.which("unshare") is not None
    cert_root = workdir / "k8s-webhook-server" if private else TO_CERT_DIR.parent
    (cert_root / TO_CERT_DIR.name).mkdir(parents=True, exist_ok=True)
    for name in ("ca.crt", "tls.crt", "tls.key"):
        (cert_root / TO_CERT_DIR.name / name).write_bytes(certs[name])
    TO_CERT_DIR.parent.mkdir(parents=True, exist_ok=True)  # the mount point
    webhook_port = free_port()
    webhook = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
               "metadata": {"name": TO_WEBHOOK_CONFIG},
               "webhooks": [{"name": "validator.pytorchjob.training-operator.kubeflow.org",
                             "admissionReviewVersions": ["v1"], "sideEffects": "None", "failurePolicy": "Fail",
                             "clientConfig": {"url": f"https://127.0.0.1:{webhook_port}/validate-kubeflow-org-v1-pytorchjob",
                                              "caBundle": base64.b64encode(certs["ca.crt"]).decode()},
                             "rules": [{"apiGroups": ["kubeflow.org"], "apiVersions": ["v1"],
                                        "operations": ["CREATE", "UPDATE"], "resources": ["pytorchjobs"]}]}]}  # fmt: skip
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(webhook))
    template = workdir / "init-container.yaml"
    # The stock init container runs `nslookup <master>` in alpine; with no images and no DNS,
    # the node agent runs this instead (it makes the master's name mean 127.0.0.1 itself).
    # Its securityContext is the admin's to set (the PyTorchJob has no say over it): without one, a Worker
    # pod in a restricted namespace is refused (docs/admin.md, Security), as the stock template's would be.
    template.write_text("- name: init-pytorch\n  image: {{.InitContainerImage}}\n"
                        "  command: ['python', '-c', 'print(\"master {{.MasterAddr}} is this host\")']\n"
                        "  securityContext: {runAsNonRoot: true, runAsUser: 1000, allowPrivilegeEscalation: false,\n"
                        "    readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}, seccompProfile: {type: RuntimeDefault}}\n")  # fmt: skip
    probe_port = free_port()
    in_own_mounts = ["unshare", "--mount", "--propagation=private", "sh", "-c",
                     f'mount --bind "$0" {TO_CERT_DIR.parent} && exec "$@"', str(cert_root)] if private else []  # fmt: skip
    to = stack.start("training-operator", [*in_own_mounts, str(to_bin), "--enable-scheme=pytorchjob",
                     f"--webhook-server-port={webhook_port}", f"--metrics-bind-address=127.0.0.1:{free_port()}",
                     f"--health-probe-bind-address=127.0.0.1:{probe_port}", "--gang-scheduler-name=",
                     f"--pytorch-init-container-template-file={template}", "--zap-log-level=info"],
                     env={"KUBECONFIG": str(cluster.kubeconfig), "MY_POD_NAMESPACE": TO_NAMESPACE})  # fmt: skip
    wait_for("training-operator readyz", lambda: requests.get(f"http://127.0.0.1:{probe_port}/readyz",
                                                             timeout=2).status_code == 200, 180, to)  # fmt: skip
    kept = cluster.kubectl("get", "secret", "-n", TO_NAMESPACE, TO_SECRET, "-o=jsonpath={.data.tls\\.crt}").stdout
    if base64.b64decode(kept) != certs["tls.crt"]:
        raise RuntimeError(
            "the training-operator replaced the test's serving certificate; the API server cannot reach it by IP"
        )
