"""A throwaway Kubernetes cluster on loopback, built from real components (the envtest idea).

What starts, in order, each as a real process whose output lands in ``<workdir>/<name>.log``:

- etcd, kube-apiserver (token auth for an admin and a ``limited`` identity, RBAC, a serving
  certificate from a CA the harness makes (tests/harness/certs.py), so clients verify TLS),
  kube-controller-manager (garbage collection, ServiceAccounts, Jobs), kube-scheduler;
- kwok, managing one fake node ``gpu-node-0`` that advertises 8 ``nvidia.com/gpu`` and H100 labels:
  pods the scheduler binds to it become Running without a kubelet;
- the Kubeflow PyTorchJob CRD (kubeflow.org/v1, the training-operator version pinned in
  scripts/versions.env, vendored in tests/harness/crds/), so PyTorchJobs validate as in a real cluster.

Beside it, for the store and for metrics: a versitygw S3 server (tests/harness/s3.py) and the
Debian Prometheus (tests/harness/prometheus.py). Binaries: tests/harness/binaries.py.

For people (the cluster and an S3 server with a bucket)::

    python -m tests.harness.cluster up      # starts it in the background, prints `export KUBECONFIG=...`
    python -m tests.harness.cluster down    # stops it; no process or port is left behind
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.harness.binaries import REPO, MissingBinary, built, find_binary, kubectl_binary
from tests.harness.certs import make_ca, make_serving_cert, new_key, pem_cert, pem_key, pem_public_key
from tests.harness.processes import Stack, free_port, wait_for
from tests.harness.s3 import new_bucket, s3_server

CRDS = Path(__file__).resolve().parent / "crds"
PYTORCHJOB_CRD = CRDS / "kubeflow.org_pytorchjobs.yaml"
#: the Prometheus Operator's ServiceMonitor and PodMonitor kinds, reduced to their names (for the chart's capability check)
MONITORING_CRDS = CRDS / "monitoring-crds.yaml"
GPU_NODE = "gpu-node-0"
GPUS_PER_NODE = 8
LIMITED_USER = "limited"
#: where `python -m tests.harness.cluster up` keeps the cluster it started for a person
DEV_DIR = Path(os.environ.get("MINISERIES_DEV_CLUSTER", Path(tempfile.gettempdir()) / "miniseries-dev-cluster"))


def kubeconfig_doc(server: str, ca_file: Path, user: str, token: str, name: str = "miniseries-test") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": name,
        "clusters": [{"name": name, "cluster": {"server": server, "certificate-authority": str(ca_file)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user, "namespace": "default"}}],
    }


#: The labels of every test namespace sweeps run in: pods are admitted only as `restricted`.
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


class KubectlFailed(RuntimeError):
    """kubectl exited non-zero (its stderr is the message)."""


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
    #: each thread's HTTP session to this API server (get): its own, as a later cluster may reuse the port
    _sessions: threading.local = field(default_factory=threading.local, repr=False, compare=False)

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
            # not an AssertionError: inside a wait, an object not there yet is "not yet", not "wrong"
            raise KubectlFailed(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc

    def create_namespace(self, name: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A namespace for sweeps, created enforcing the `restricted` Pod Security Standard (issue 28):
        kube-apiserver's built-in PodSecurity admission refuses any pod in it that falls short."""
        doc = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED}}
        return self.kubectl("create", "-f", "-", stdin=json.dumps(doc), check=check)

    def apply(self, doc: dict[str, Any] | list[dict[str, Any]], *args: str) -> None:
        docs = doc if isinstance(doc, list) else [doc]
        self.kubectl("apply", "-f", "-", *args, stdin=yaml.safe_dump_all(docs))

    def api_client(self, kubeconfig: Path | None = None) -> Any:
        """A `kubernetes` ApiClient for the admin (or the given kubeconfig), verifying TLS."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(kubeconfig or self.kubeconfig))

    def get(self, url_path: str) -> requests.Response:
        """GET from the API server as the admin, in this process, over a kept-alive connection (one per
        thread). What a wait polls for minutes: a kubectl per poll is a Go process start of ~0.06 CPU s
        (40 `kubectl get nodes` on the dev box, 2026-12-08), a GET here a few milliseconds."""
        session: requests.Session | None = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.token}"
        # verify per request: a session's own is overridden by REQUESTS_CA_BUNDLE when that is set
        return session.get(f"{self.server}{url_path}", verify=str(self.ca_file), timeout=10)

    def get_json(self, url_path: str) -> Any:
        """The object (or list) at ``url_path``. A refusal (not there yet: 404) raises, which a wait reads
        as *not yet*."""
        r = self.get(url_path)
        r.raise_for_status()
        return r.json()


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
        # 10.96.0.1: the `kubernetes` Service, what in-cluster clients on a real node (tests/harness/node.py) dial
        ips=["127.0.0.1", "10.96.0.1"],
    )
    (pki / "ca.crt").write_bytes(pem_cert(ca))
    (pki / "apiserver.crt").write_bytes(pem_cert(serving))
    (pki / "apiserver.key").write_bytes(pem_key(serving_key))
    sa_key = new_key()
    (pki / "sa.key").write_bytes(pem_key(sa_key))
    (pki / "sa.pub").write_bytes(pem_public_key(sa_key))
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
            # a real node (tests/harness/node.py) is reached at its address: its name resolves nowhere
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
    # `default` (where the e2e tests' sweeps run) enforces restricted, as every test namespace does
    cluster.kubectl("label", "namespace", "default", "--overwrite", *(f"{k}={v}" for k, v in RESTRICTED.items()))
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


def _kwok_with_stages() -> Path:
    kwok = find_binary("kwok")
    if not (kwok.parent / "stages.yaml").is_file():
        raise MissingBinary(
            f"{kwok.parent / 'stages.yaml'} missing (kwok's published Stages): run scripts/build-binaries.sh"
        )
    return kwok


def start_kwok(stack: Stack, cluster: Cluster, gpus: int = GPUS_PER_NODE) -> None:
    """kwok with its default (fast) stages, owning only nodes annotated kwok.x-k8s.io/node=fake."""
    kwok = built(_kwok_with_stages, what="kwok and its stages")
    stages = kwok.parent / "stages.yaml"
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


# ---- for people: python -m tests.harness.cluster up|down|status
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
            [sys.executable, "-m", "tests.harness.cluster", "serve", f"--dir={workdir}"],
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
    p = argparse.ArgumentParser(prog="python -m tests.harness.cluster", description=__doc__.split("\n\n")[0])
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
        print(f"tests.harness.cluster: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
