"""A throwaway Kubernetes cluster on loopback, built from real components (the envtest idea).

What starts, in order, each as a real process whose output lands in ``<workdir>/<name>.log``:

- etcd, kube-apiserver (token auth for an admin and a ``limited`` identity, RBAC, a serving
  certificate from a CA this module makes, so clients verify TLS), kube-controller-manager
  (garbage collection, ServiceAccounts, Jobs), kube-scheduler;
- kwok, managing one fake node ``gpu-node-0`` that advertises 8 ``nvidia.com/gpu`` and H100 labels:
  pods the scheduler binds to it become Running without a kubelet;
- the Kubeflow PyTorchJob CRD (kubeflow.org/v1, the published YAML of the training-operator
  version pinned in scripts/versions.env, vendored in tests/crds/), so PyTorchJobs validate as in a real cluster.

Beside it, for the store and for metrics: a versitygw S3 server (:func:`s3_server`) and the Debian
Prometheus (tests/integration/prometheus_server.py).

Binaries come from the Go-built cache, ``~/.cache/miniseries/bin/<name>-<version>/<name>``
(scripts/build-binaries.sh), or from the directory in ``MINISERIES_K8S_BIN``. A missing binary is
:class:`MissingBinary`, which the fixtures turn into a skip naming the script to run, never a fake.

For people::

    python -m tests.cluster up      # starts it in the background, prints `export KUBECONFIG=...`
    python -m tests.cluster down    # stops it; no process or port is left behind
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("MINISERIES_BIN_CACHE", Path.home() / ".cache" / "miniseries" / "bin"))
PYTORCHJOB_CRD = REPO / "tests" / "crds" / "kubeflow.org_pytorchjobs.yaml"
GPU_NODE = "gpu-node-0"
GPUS_PER_NODE = 8
LIMITED_USER = "limited"
#: where `python -m tests.cluster up` keeps the cluster it started for a person
DEV_DIR = Path(os.environ.get("MINISERIES_DEV_CLUSTER", Path(tempfile.gettempdir()) / "miniseries-dev-cluster"))


class MissingBinary(Exception):
    """A component is not built yet; the message names the script that builds it."""


def pinned_version(key: str) -> str:
    """A version pinned in scripts/versions.env (``KEY=value  # comment``), the file the build
    scripts source: the tests look for the binaries those scripts cached under that version."""
    for line in (REPO / "scripts" / "versions.env").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.split("#", 1)[0].strip()
    raise KeyError(f"{key} is not pinned in scripts/versions.env")


def find_binary(name: str) -> Path:
    env_dir = os.environ.get("MINISERIES_K8S_BIN")
    candidates = [Path(env_dir) / name] if env_dir else []
    candidates += sorted(CACHE.glob(f"{name}-*/{name}"), reverse=True)
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise MissingBinary(f"{name} not found in {CACHE}/{name}-*/ (run scripts/build-binaries.sh) or $MINISERIES_K8S_BIN")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Unreachable(AssertionError):
    """Raised by a ``wait_for`` check when what it waits for can no longer happen (the state was
    passed, the object reached another end): the wait fails at once, not at its deadline."""


def wait_for(what: str, check: Callable[[], Any], timeout: float, proc: subprocess.Popen[bytes] | None = None) -> Any:
    """Poll ``check`` until it returns something truthy, and return that; fail early if ``proc``
    dies or ``check`` raises :class:`Unreachable`, and at the deadline with the last value (or
    error) seen. The condition is what a test waits for; the deadline is only a safety net, so
    give a generous one rather than a guess at how long the machine takes."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    value: Any = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}{_log_tail(proc)}")
        try:
            value = check()
            if value:
                return value
        except Unreachable as e:
            raise Unreachable(f"{what}: {e}") from None
        except Exception as e:  # retried until the deadline
            last = e
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout}s (last value: {value!r}, last error: {last})")


def _log_tail(proc: subprocess.Popen[bytes], chars: int = 2000) -> str:
    log = getattr(proc, "log_path", None)
    if log is None or not Path(log).exists():
        return ""
    return f"; end of {log}:\n{Path(log).read_text(errors='replace')[-chars:]}"


# ---- certificates (cryptography)
def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _validity() -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    return start, start + dt.timedelta(days=3650)


def make_ca(common_name: str, organization: str | None = None) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = new_key()
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    name = x509.Name(attrs)
    start, end = _validity()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, True, False, False, False), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def make_serving_cert(
    ca: x509.Certificate, ca_key: rsa.RSAPrivateKey, common_name: str, dns: list[str], ips: list[str]
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = new_key()
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    start, end = _validity()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


# ---- processes
class Stack:
    """Starts processes in order and stops them in reverse; their output goes to workdir/<name>.log."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        proc.log_path = log  # type: ignore[attr-defined]  # for the error when it dies early
        self.procs.append((name, proc))
        return proc

    def pids(self) -> list[int]:
        return [p.pid for _, p in self.procs]

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def kubeconfig_doc(server: str, ca_file: Path, user: str, token: str, name: str = "miniseries-test") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user, "namespace": "default"}}],
    }


@dataclass
class Cluster:
    """A running test cluster: where it is and how to talk to it."""

    kubeconfig: Path  # admin (system:masters)
    limited_kubeconfig: Path  # user `limited`: only what a test grants it through RBAC
    server: str
    ca_file: Path  # the CA that signed the API server's serving certificate
    token: str
    workdir: Path
    ports: list[int] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        stdin: str | None = None,
        kubeconfig: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        cmd = [kubectl_binary(), f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def apply(self, doc: dict[str, Any] | list[dict[str, Any]], *args: str) -> None:
        docs = doc if isinstance(doc, list) else [doc]
        self.kubectl("apply", "-f", "-", *args, stdin=yaml.safe_dump_all(docs))

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A `kubernetes` ApiClient for the admin (or the given kubeconfig), verifying TLS."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    def get(self, url_path: str) -> requests.Response:
        return requests.get(
            f"{self.server}{url_path}",
            headers={"Authorization": f"Bearer {self.token}"},
            verify=str(self.ca_file),
            timeout=10,
        )


def kubectl_binary() -> str:
    try:
        return str(find_binary("kubectl"))
    except MissingBinary:
        found = shutil.which("kubectl")
        if found is None:
            raise
        return found


def start_control_plane(stack: Stack, workdir: Path) -> Cluster:
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler, up and ready."""
    etcd, apiserver = find_binary("etcd"), find_binary("kube-apiserver")
    kcm, sched = find_binary("kube-controller-manager"), find_binary("kube-scheduler")
    kubectl_binary()  # fail before anything starts if kubectl is missing
    workdir.mkdir(parents=True, exist_ok=True)
    etcd_port, peer_port, api_port = free_port(), free_port(), free_port()
    stack.start(
        "etcd",
        [
            str(etcd),
            f"--data-dir={workdir / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
            "--listen-metrics-urls=",  # no third port to collide with
            "--unsafe-no-fsync",  # a throwaway cluster: durability costs seconds per test and buys nothing
            "--log-level=warn",
        ],
    )
    pki = workdir / "pki"
    pki.mkdir(exist_ok=True)
    ca, ca_key = make_ca("miniseries-test-ca")
    serving, serving_key = make_serving_cert(
        ca,
        ca_key,
        "kube-apiserver",
        dns=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
        # 10.96.0.1: the `kubernetes` Service, what in-cluster clients on a real node (tests/node.py) dial
        ips=["127.0.0.1", "10.96.0.1"],
    )
    (pki / "ca.crt").write_bytes(pem_cert(ca))
    (pki / "apiserver.crt").write_bytes(pem_cert(serving))
    (pki / "apiserver.key").write_bytes(pem_key(serving_key))
    sa_key = new_key()
    (pki / "sa.key").write_bytes(pem_key(sa_key))
    (pki / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    token, limited_token = secrets.token_hex(16), secrets.token_hex(16)
    (pki / "tokens.csv").write_text(f'{token},admin,admin,"system:masters"\n{limited_token},{LIMITED_USER},limited\n')
    api = stack.start(
        "kube-apiserver",
        [
            str(apiserver),
            f"--etcd-servers=http://127.0.0.1:{etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={api_port}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            "--authorization-mode=Node,RBAC",
            # a real node (tests/node.py) is reached at its address: its name resolves nowhere
            "--kubelet-preferred-address-types=InternalIP,Hostname",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--endpoint-reconciler-type=none",  # a loopback address cannot be the `kubernetes` Endpoint
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
        ],
    )
    server = f"https://127.0.0.1:{api_port}"
    kubeconfig, limited = workdir / "admin.kubeconfig", workdir / "limited.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_doc(server, pki / "ca.crt", "admin", token)))
    limited.write_text(yaml.safe_dump(kubeconfig_doc(server, pki / "ca.crt", LIMITED_USER, limited_token)))
    cluster = Cluster(kubeconfig, limited, server, pki / "ca.crt", token, workdir, [etcd_port, peer_port, api_port])
    wait_for("kube-apiserver /readyz", lambda: cluster.get("/readyz").status_code == 200, 120, api)
    kcm_port, sched_port = free_port(), free_port()
    stack.start(
        "kube-controller-manager",
        [
            str(kcm),
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--use-service-account-credentials=false",
            "--bind-address=127.0.0.1",
            f"--secure-port={kcm_port}",
            # node-ipam would want a cluster CIDR; the rest (garbage collector, serviceaccount, job, ...) run
            "--controllers=*,-node-ipam-controller",
        ],
    )
    stack.start(
        "kube-scheduler",
        [str(sched), f"--kubeconfig={kubeconfig}", "--leader-elect=false", "--bind-address=127.0.0.1",
         f"--secure-port={sched_port}"],
    )  # fmt: skip
    cluster.ports += [kcm_port, sched_port]
    # The ServiceAccount admission plugin refuses pods until `default` exists; the controller-manager makes it.
    wait_for(
        "ServiceAccount default/default",
        lambda: cluster.kubectl("get", "sa", "default", check=False).returncode == 0,
        60,
    )
    return cluster


def gpu_node(name: str = GPU_NODE, gpus: int = GPUS_PER_NODE) -> dict[str, Any]:
    """One node of an 8xH100 machine (as an AWS p5.48xlarge reports itself), managed by kwok."""
    capacity = {"cpu": "192", "memory": "2048Gi", "pods": "110", "nvidia.com/gpu": str(gpus),
                "ephemeral-storage": "7000Gi"}  # fmt: skip
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "node.kubernetes.io/instance-type": "p5.48xlarge",
                # the labels NVIDIA's GPU feature discovery puts on such a node
                "nvidia.com/gpu.present": "true",
                "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
                "nvidia.com/gpu.count": str(gpus),
                "nvidia.com/gpu.memory": "81559",
            },
        },
        "spec": {},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def start_kwok(stack: Stack, cluster: Cluster, gpus: int = GPUS_PER_NODE) -> None:
    """kwok with its default (fast) stages, owning only nodes annotated kwok.x-k8s.io/node=fake."""
    kwok = find_binary("kwok")
    stages = kwok.parent / "stages.yaml"
    if not stages.is_file():
        raise MissingBinary(f"{stages} missing (kwok's published Stages): run scripts/build-binaries.sh")
    port = free_port()
    proc = stack.start(
        "kwok",
        [
            str(kwok),
            f"--kubeconfig={cluster.kubeconfig}",
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--manage-nodes-with-label-selector=",
            "--manage-single-node=",
            "--cidr=10.0.0.0/24",
            "--node-ip=10.0.0.1",
            "--node-lease-duration-seconds=40",
            f"--server-address=127.0.0.1:{port}",
            f"--config={stages}",
        ],
    )
    cluster.ports.append(port)
    cluster.apply(gpu_node(gpus=gpus))
    ready = "-o=jsonpath={.status.conditions[?(@.type=='Ready')].status}"
    wait_for(
        f"node {GPU_NODE} Ready", lambda: cluster.kubectl("get", "node", GPU_NODE, ready).stdout == "True", 60, proc
    )
    # The apiserver may drop status on create: make sure the scheduler sees the GPUs.
    alloc = "-o=jsonpath={.status.allocatable.nvidia\\.com/gpu}"
    if cluster.kubectl("get", "node", GPU_NODE, alloc).stdout != str(gpus):
        status = {"status": gpu_node(gpus=gpus)["status"]}
        cluster.kubectl("patch", "node", GPU_NODE, "--subresource=status", "--type=merge", "-p", json.dumps(status))


def install_pytorchjob_crd(cluster: Cluster, crd: Path = PYTORCHJOB_CRD) -> None:
    # about 600 KB: too large for the last-applied annotation of a client-side apply
    cluster.kubectl("apply", "--server-side", "-f", str(crd))
    established = "-o=jsonpath={.status.conditions[?(@.type=='Established')].status}"
    wait_for(
        "PyTorchJob CRD established",
        lambda: cluster.kubectl("get", "crd/pytorchjobs.kubeflow.org", established).stdout == "True",
        60,
    )


@contextlib.contextmanager
def running_cluster(workdir: Path, gpus: int = GPUS_PER_NODE) -> Iterator[Cluster]:
    """The control plane, a kwok GPU node and the PyTorchJob CRD, up and ready; all gone afterwards."""
    stack = Stack(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        cluster = start_control_plane(stack, workdir)
        start_kwok(stack, cluster, gpus=gpus)
        install_pytorchjob_crd(cluster)
        cluster.pids = stack.pids()
        yield cluster
    finally:
        stack.stop()


# ---- S3: versitygw serving a directory
@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    root: Path
    pid: int
    port: int
    region: str = "us-east-1"

    @property
    def env(self) -> dict[str, str]:
        """What the store (boto3) reads: see operator/src/miniseries/contract/store.py."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )


@dataclass
class S3Bucket:
    server: S3Server
    bucket: str
    client: Any

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}"

    @property
    def env(self) -> dict[str, str]:
        return self.server.env

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@contextlib.contextmanager
def s3_server(workdir: Path) -> Iterator[S3Server]:
    """versitygw's POSIX backend on a loopback port, with a fresh root account."""
    binary = find_binary("versitygw")
    root = workdir / "s3-root"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    access, secret = "miniseries" + secrets.token_hex(4), secrets.token_hex(20)
    stack = Stack(workdir)
    try:
        proc = stack.start(
            "versitygw",
            [str(binary), "--port", f"127.0.0.1:{port}", "posix", str(root)],
            env={"ROOT_ACCESS_KEY": access, "ROOT_SECRET_KEY": secret},
        )
        server = S3Server(f"http://127.0.0.1:{port}", access, secret, root, proc.pid, port)
        wait_for("versitygw", lambda: server.client().list_buckets() is not None, 30, proc)
        yield server
    finally:
        stack.stop()


def new_bucket(server: S3Server, name: str) -> S3Bucket:
    client = server.client()
    client.create_bucket(Bucket=name)
    return S3Bucket(server, name, client)


# ---- for people: python -m tests.cluster up|down|status
def _serve(workdir: Path) -> int:
    """Run the cluster in this process until SIGTERM; `up` starts this in a new session."""
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with running_cluster(workdir / "cluster") as cluster, s3_server(workdir) as s3:
        bucket = new_bucket(s3, "miniseries")
        info = {
            "kubeconfig": str(cluster.kubeconfig),
            "limited_kubeconfig": str(cluster.limited_kubeconfig),
            "server": cluster.server,
            "s3": {"uri": bucket.uri, **s3.env},
            "pid": os.getpid(),
            # so that `down` (and its test) can prove nothing is left behind
            "component_pids": [*cluster.pids, s3.pid],
            "ports": [*cluster.ports, s3.port],
        }
        tmp = workdir / "ready.json.tmp"
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(workdir / "ready.json")
        while not stop:
            time.sleep(0.5)
    (workdir / "ready.json").unlink(missing_ok=True)
    return 0


def _up(workdir: Path) -> int:
    ready = workdir / "ready.json"
    if ready.exists():
        print(f"already up: {ready}")
        return _print_info(ready)
    workdir.mkdir(parents=True, exist_ok=True)
    with (workdir / "serve.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.cluster", "serve", f"--dir={workdir}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this command, ends with `down`
            cwd=REPO,
        )
    t0 = time.monotonic()
    try:
        wait_for("test cluster", ready.exists, 180, proc)  # type: ignore[arg-type]
    except (RuntimeError, TimeoutError) as e:
        print(
            f"cluster did not come up ({e}); see {workdir / 'serve.log'} and {workdir}/cluster/*.log", file=sys.stderr
        )
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        return 1
    print(f"up in {time.monotonic() - t0:.1f} s")
    return _print_info(ready)


def _print_info(ready: Path) -> int:
    info = json.loads(ready.read_text())
    print(f"export KUBECONFIG={info['kubeconfig']}")
    for k, v in info["s3"].items():
        if k != "uri":
            print(f"export {k}={v}")
    print(f"# store: {info['s3']['uri']}   limited identity: {info['limited_kubeconfig']}")
    return 0


def _down(workdir: Path) -> int:
    ready = workdir / "ready.json"
    if not ready.exists():
        print("not up")
        return 0
    pid = json.loads(ready.read_text())["pid"]
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        print(f"pid {pid} still running after 60 s", file=sys.stderr)
        return 1
    ready.unlink(missing_ok=True)
    print("down")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=["up", "down", "status", "serve"])
    p.add_argument("--dir", type=Path, default=DEV_DIR, help=f"state directory (default {DEV_DIR})")
    args = p.parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args.dir)
        if args.command == "up":
            return _up(args.dir)
        if args.command == "down":
            return _down(args.dir)
        ready = args.dir / "ready.json"
        return _print_info(ready) if ready.exists() else (print("not up") or 1)
    except MissingBinary as e:
        print(f"tests.cluster: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
