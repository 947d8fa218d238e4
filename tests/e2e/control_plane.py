"""The real path's control plane for the e2e tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, the Kubeflow training-operator with its validating webhook over TLS, and the
test node agent (tests/node_agent.py) that runs pods as local processes.

Binaries come from the Go-built cache: ``~/.cache/miniseries/bin/<name>-<version>/<name>``
(scripts/build-binaries.sh, scripts/build-training-operator.sh), or from the directory in
``MINISERIES_K8S_BIN`` for the Kubernetes ones. A missing binary is a skip that names the
script to run, never a fake.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MINISERIES_BIN_CACHE", Path.home() / ".cache" / "miniseries" / "bin"))
TRAINING_OPERATOR_VERSION = os.environ.get("TRAINING_OPERATOR_VERSION", "v1.9.3")
# The training-operator writes its serving certificates here; the path is compiled in (pkg/cert).
TO_CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")
TO_NAMESPACE = "kubeflow"
# Names the training-operator's cert rotator looks for (cmd/training-operator.v1, pkg/cert).
TO_WEBHOOK_CONFIG = "validator.training-operator.kubeflow.org"
TO_SECRET = "training-operator-webhook-cert"
TO_SERVICE_DNS = f"training-operator.{TO_NAMESPACE}.svc"
TO_CA_NAME = "training-operator-ca"


urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # the API server's self-signed cert


class MissingBinary(Exception):
    pass


def find_binary(name: str) -> Path:
    env_dir = os.environ.get("MINISERIES_K8S_BIN")
    candidates = [Path(env_dir) / name] if env_dir else []
    candidates += sorted(CACHE.glob(f"{name}-*/{name}"), reverse=True)
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise MissingBinary(f"{name} not found in {CACHE}/{name}-*/ (run scripts/build-binaries.sh) or $MINISERIES_K8S_BIN")


def training_operator_binary() -> Path:
    path = CACHE / f"training-operator-{TRAINING_OPERATOR_VERSION}" / "training-operator"
    if not path.is_file():
        raise MissingBinary(f"{path} missing: run scripts/build-training-operator.sh")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: object, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}")
        try:
            if check():  # type: ignore[operator]
                return
        except Exception as e:  # retrying until the deadline
            last = e
        time.sleep(0.5)
    raise TimeoutError(f"{what} not ready after {timeout}s (last error: {last})")


# ---- certificates (cryptography), for the training-operator's webhook server
def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())  # fmt: skip


def webhook_certs() -> dict[str, bytes]:
    """CA and serving certificate in the Secret layout of the operator's cert rotator
    (open-policy-agent/cert-controller): it keeps them when the CA verifies as
    ``training-operator-ca`` and the server cert as ``training-operator.kubeflow.svc``.
    The extra IP SAN 127.0.0.1 lets the API server call the webhook by URL on this host."""
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    end = start + dt.timedelta(days=3650)  # the rotator renews anything within 90 days of expiry
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TO_CA_NAME),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "training-operator")])  # fmt: skip
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(True, False, True, False, False, True, False, False, False), critical=True)
          .add_extension(x509.SubjectAlternativeName([x509.DNSName(TO_CA_NAME)]), critical=False)
          .sign(ca_key, hashes.SHA256()))  # fmt: skip
    key = _key()
    sans = [x509.DNSName(TO_SERVICE_DNS), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TO_SERVICE_DNS)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # fmt: skip
    pem = serialization.Encoding.PEM
    return {"ca.crt": ca.public_bytes(pem), "ca.key": _pem_key(ca_key),
            "tls.crt": cert.public_bytes(pem), "tls.key": _pem_key(key)}  # fmt: skip


@dataclass
class Cluster:
    kubeconfig: Path
    workdir: Path
    server: str
    token: str
    node_logs: Path

    def kubectl(self, *args: str, check: bool = True, stdin: str | None = None, timeout: float = 120
                ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        cmd = ["kubectl", f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr}")
        return proc


class Stack:
    """Starts processes in order, stops them in reverse; their output goes to workdir/*.log."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        out = (self.workdir / f"{name}.log").open("wb")
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.procs.append((name, proc))
        return proc

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@contextlib.contextmanager
def real_path_cluster(workdir: Path, gpus: int = 0) -> Iterator[Cluster]:
    """The whole real path, up and ready: a PyTorchJob applied after this returns is validated by
    the training-operator's webhook, reconciled into pods and run by the node agent."""
    etcd, apiserver = find_binary("etcd"), find_binary("kube-apiserver")
    kcm, sched, to_bin = (
        find_binary("kube-controller-manager"),
        find_binary("kube-scheduler"),
        training_operator_binary(),
    )
    if shutil.which("kubectl") is None:
        raise MissingBinary("kubectl not on PATH")
    workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(workdir)
    try:
        etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
        stack.start("etcd", [str(etcd), f"--data-dir={workdir / 'etcd'}",
                             f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
                             f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
                             f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                             f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                             f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
                             "--unsafe-no-fsync", "--log-level=warn"])  # fmt: skip
        sa_key = _key()
        (workdir / "sa.key").write_bytes(_pem_key(sa_key))
        (workdir / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip
        token = secrets.token_hex(16)
        (workdir / "tokens.csv").write_text(f'{token},admin,admin,"system:masters"\n')
        api = stack.start("kube-apiserver", [str(apiserver), f"--etcd-servers=http://127.0.0.1:{etcd_port}",
                          "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={api_port}",
                          f"--cert-dir={workdir / 'apiserver-certs'}", f"--token-auth-file={workdir / 'tokens.csv'}",
                          "--authorization-mode=Node,RBAC", "--service-cluster-ip-range=10.96.0.0/16",
                          "--endpoint-reconciler-type=none",  # a loopback address cannot be an Endpoint
                          "--service-account-issuer=https://kubernetes.default.svc",
                          f"--service-account-key-file={workdir / 'sa.pub'}",
                          f"--service-account-signing-key-file={workdir / 'sa.key'}"])  # fmt: skip
        server = f"https://127.0.0.1:{api_port}"
        kubeconfig = workdir / "admin.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "e2e",
            "clusters": [{"name": "e2e", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "admin", "user": {"token": token}}],
            "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "admin"}}]}))  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"}
        api_ca = workdir / "apiserver-certs" / "apiserver.crt"  # self-signed by the API server at start
        wait_for("kube-apiserver", lambda: requests.get(f"{server}/readyz", headers=headers, verify=str(api_ca),
                                                        timeout=2).status_code == 200, 120, api)  # fmt: skip
        cluster = Cluster(kubeconfig, workdir, server, token, workdir / "node-logs")
        stack.start("kube-controller-manager", [str(kcm), f"--kubeconfig={kubeconfig}", "--leader-elect=false",
                    f"--service-account-private-key-file={workdir / 'sa.key'}", "--secure-port=0",
                    "--controllers=*,-node-ipam-controller"])  # fmt: skip
        stack.start("kube-scheduler", [str(sched), f"--kubeconfig={kubeconfig}", "--leader-elect=false",
                                       f"--secure-port={free_port()}"])  # fmt: skip

        # --- training-operator: its namespace, CRD, cert Secret and webhook configuration first
        crd = to_bin.parent / "kubeflow.org_pytorchjobs.yaml"
        cluster.kubectl("apply", "--server-side", "-f", str(crd))
        jsonpath = "-o=jsonpath={.status.conditions[?(@.type=='Established')].status}"
        wait_for(
            "PyTorchJob CRD",
            lambda: cluster.kubectl("get", "crd/pytorchjobs.kubeflow.org", jsonpath).stdout == "True",
            60,
        )
        cluster.kubectl("create", "namespace", TO_NAMESPACE)
        certs = webhook_certs()
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                  "metadata": {"name": TO_SECRET, "namespace": TO_NAMESPACE},
                  "data": {k: base64.b64encode(v).decode() for k, v in certs.items()}}  # fmt: skip
        cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(secret))
        # What the kubelet would do with the Secret volume: the rotator only waits for these files.
        TO_CERT_DIR.mkdir(parents=True, exist_ok=True)
        for name in ("ca.crt", "tls.crt", "tls.key"):
            (TO_CERT_DIR / name).write_bytes(certs[name])
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
        template.write_text("- name: init-pytorch\n  image: {{.InitContainerImage}}\n"
                            "  command: ['python', '-c', 'print(\"master {{.MasterAddr}} is this host\")']\n")  # fmt: skip
        probe_port = free_port()
        to = stack.start("training-operator", [str(to_bin), "--enable-scheme=pytorchjob",
                         f"--webhook-server-port={webhook_port}", f"--metrics-bind-address=127.0.0.1:{free_port()}",
                         f"--health-probe-bind-address=127.0.0.1:{probe_port}", "--gang-scheduler-name=",
                         f"--pytorch-init-container-template-file={template}", "--zap-log-level=info"],
                         env={"KUBECONFIG": str(kubeconfig), "MY_POD_NAMESPACE": TO_NAMESPACE})  # fmt: skip
        wait_for("training-operator readyz", lambda: requests.get(f"http://127.0.0.1:{probe_port}/readyz",
                                                                 timeout=2).status_code == 200, 180, to)  # fmt: skip
        kept = cluster.kubectl("get", "secret", "-n", TO_NAMESPACE, TO_SECRET, "-o=jsonpath={.data.tls\\.crt}").stdout
        if base64.b64decode(kept) != certs["tls.crt"]:
            raise RuntimeError(
                "the training-operator replaced the test's serving certificate; the API server cannot reach it by IP"
            )

        # --- the node that runs pods as local processes
        cluster.kubectl("create", "namespace", "kube-node-lease", check=False)
        stack.start("node-agent", [sys.executable, "-m", "tests.node_agent", f"--kubeconfig={kubeconfig}",
                                   "--name=e2e-node", f"--log-dir={cluster.node_logs}", f"--gpus={gpus}"],
                    env={"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})  # fmt: skip
        ready = "-o=jsonpath={.status.conditions[?(@.type=='Ready')].status}"
        wait_for(
            "node e2e-node", lambda: cluster.kubectl("get", "node/e2e-node", ready, check=False).stdout == "True", 60
        )
        # the ServiceAccount admission needs `default` in each namespace; the controller-manager makes it
        wait_for(
            "default ServiceAccount", lambda: cluster.kubectl("get", "sa", "default", check=False).returncode == 0, 60
        )
        yield cluster
    finally:
        stack.stop()
