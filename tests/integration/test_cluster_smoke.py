"""Each part of the test environment (tests/harness/cluster.py) is the real thing: the API server stores and
serves, the garbage collector collects, the scheduler counts GPUs on the kwok node, the PyTorchJob
CRD's schema refuses, helm installs, versitygw speaks S3, Prometheus scrapes and answers PromQL,
RBAC tells the limited identity no. And the whole of it goes away without a trace."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from botocore.exceptions import ClientError

from miniseries.control.backends.podsecurity import container_security_context, pod_security_context
from tests.harness.binaries import REPO, MissingBinary
from tests.harness.certs import make_ca, pem_cert
from tests.harness.cluster import GPU_NODE, PYTORCHJOB_CRD, Cluster
from tests.harness.helm import helm
from tests.harness.processes import wait_for
from tests.harness.prometheus import Prometheus
from tests.harness.promql import query_range
from tests.harness.s3 import S3Bucket, new_bucket

pytestmark = pytest.mark.cluster


def pod(name: str, gpus: int) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "containers": [
                {
                    "name": "pytorch",
                    "image": "trainer",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                    "securityContext": container_security_context(),
                }
            ],
            # the namespace is restricted (issue 28): the operator's own pod security passes its admission
            "securityContext": pod_security_context(),
            "tolerations": [{"operator": "Exists"}],
        },
    }


def jsonpath(cluster: Cluster, namespace: str, obj: str, path: str) -> str:
    return cluster.kubectl("get", "-n", namespace, obj, f"-o=jsonpath={{{path}}}", check=False).stdout


def test_namespace_round_trip_through_kubectl_and_the_python_client(cluster: Cluster) -> None:
    from kubernetes import client

    cluster.create_namespace("smoke-round-trip")
    try:
        api = client.CoreV1Api(cluster.api_client())
        ns = api.read_namespace("smoke-round-trip")
        assert ns.metadata.name == "smoke-round-trip"
        assert ns.status.phase == "Active"
        api.patch_namespace("smoke-round-trip", {"metadata": {"labels": {"written-by": "python"}}})
        got = cluster.kubectl("get", "namespace", "smoke-round-trip", "-o=jsonpath={.metadata.labels.written-by}")
        assert got.stdout == "python"
    finally:
        cluster.kubectl("delete", "namespace", "smoke-round-trip", "--wait=false")


def test_tls_is_verified_against_the_harness_ca(cluster: Cluster, tmp_path: Path) -> None:
    """The kubeconfig names the harness's CA (no insecure-skip-tls-verify); another CA is refused."""
    doc = yaml.safe_load(cluster.kubeconfig.read_text())
    assert doc["clusters"][0]["cluster"] == {"server": cluster.server, "certificate-authority": str(cluster.ca_file)}
    stranger, _ = make_ca("some-other-ca")
    (tmp_path / "stranger.crt").write_bytes(pem_cert(stranger))
    doc["clusters"][0]["cluster"]["certificate-authority"] = str(tmp_path / "stranger.crt")
    (tmp_path / "wrong.kubeconfig").write_text(yaml.safe_dump(doc))
    proc = cluster.kubectl("get", "namespaces", kubeconfig=tmp_path / "wrong.kubeconfig", check=False)
    assert proc.returncode != 0
    assert "certificate" in proc.stderr


def test_owned_object_is_garbage_collected_after_its_owner(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "configmap", "owner", "-n", namespace)
    uid = jsonpath(cluster, namespace, "configmap/owner", ".metadata.uid")
    owned = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "owned",
            "namespace": namespace,
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}],
        },
    }
    cluster.apply(owned)
    assert jsonpath(cluster, namespace, "configmap/owned", ".metadata.name") == "owned"
    cluster.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(
        "garbage collection of configmap/owned",
        lambda: cluster.kubectl("get", "configmap", "owned", "-n", namespace, check=False).returncode != 0,
        60,
    )


def test_eight_gpus_schedule_onto_the_kwok_node_and_a_ninth_stays_pending(cluster: Cluster, namespace: str) -> None:
    labels = cluster.kubectl("get", "node", GPU_NODE, "-o=jsonpath={.metadata.labels}").stdout
    assert json.loads(labels)["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    cluster.apply([pod("eight", 8) | {"metadata": {"name": "eight", "namespace": namespace}}])
    wait_for("pod eight Running", lambda: jsonpath(cluster, namespace, "pod/eight", ".status.phase") == "Running", 60)
    assert jsonpath(cluster, namespace, "pod/eight", ".spec.nodeName") == GPU_NODE
    cluster.apply([pod("ninth", 1) | {"metadata": {"name": "ninth", "namespace": namespace}}])
    wait_for(
        "FailedScheduling for pod ninth",
        lambda: (
            "Insufficient nvidia.com/gpu"
            in cluster.kubectl(
                "get", "events", "-n", namespace, "--field-selector=involvedObject.name=ninth", "-o=json"
            ).stdout
        ),
        60,
    )
    assert jsonpath(cluster, namespace, "pod/ninth", ".status.phase") == "Pending"
    assert jsonpath(cluster, namespace, "pod/ninth", ".spec.nodeName") == ""
    # freeing the GPUs lets the scheduler place the waiting pod: it is counting, not refusing forever
    cluster.kubectl("delete", "pod", "eight", "-n", namespace, "--grace-period=0", "--force")
    wait_for("pod ninth Running", lambda: jsonpath(cluster, namespace, "pod/ninth", ".status.phase") == "Running", 60)


def test_pytorchjob_schema_refuses_a_bad_spec(cluster: Cluster, namespace: str) -> None:
    good = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "good", "namespace": namespace},
        "spec": {
            "pytorchReplicaSpecs": {
                "Master": {
                    "replicas": 1,
                    "template": {"spec": {"containers": [{"name": "pytorch", "image": "trainer"}]}},
                }
            }
        },
    }
    cluster.apply(good)
    missing = {**good, "metadata": {"name": "no-replica-specs", "namespace": namespace}, "spec": {}}
    proc = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(missing), check=False)
    assert proc.returncode != 0
    assert "spec.pytorchReplicaSpecs: Required value" in proc.stderr
    wrong_type = json.loads(json.dumps(good))
    wrong_type["metadata"]["name"] = "replicas-as-text"
    wrong_type["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = "one"
    proc = cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(wrong_type), check=False)
    assert proc.returncode != 0
    assert "replicas" in proc.stderr and "integer" in proc.stderr


def test_helm_installs_and_uninstalls_a_trivial_chart(cluster: Cluster, namespace: str, tmp_path: Path) -> None:
    chart = tmp_path / "hello"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: hello\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("greeting: hi\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-hello\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    kc = ["--kubeconfig", str(cluster.kubeconfig), "-n", namespace]
    helm("install", "smoke", str(chart), *kc, "--set", "greeting=hello from helm", "--wait")
    assert jsonpath(cluster, namespace, "configmap/smoke-hello", ".data.greeting") == "hello from helm"
    assert "deployed" in helm("status", "smoke", *kc).stdout
    helm("uninstall", "smoke", *kc, "--wait")
    assert cluster.kubectl("get", "configmap", "smoke-hello", "-n", namespace, check=False).returncode != 0


def test_limited_identity_is_forbidden_until_rbac_grants_it(cluster: Cluster, namespace: str) -> None:
    proc = cluster.kubectl("get", "pods", "-n", namespace, kubeconfig=cluster.limited_kubeconfig, check=False)
    assert proc.returncode != 0 and "Forbidden" in proc.stderr and 'User "limited"' in proc.stderr
    cluster.kubectl("create", "role", "read-pods", "-n", namespace, "--verb=get,list", "--resource=pods")
    cluster.kubectl("create", "rolebinding", "read-pods", "-n", namespace, "--role=read-pods", "--user=limited")
    wait_for(
        "RBAC grant",
        lambda: (
            cluster.kubectl(
                "get", "pods", "-n", namespace, kubeconfig=cluster.limited_kubeconfig, check=False
            ).returncode
            == 0
        ),
        30,
    )
    # only what was granted: not other verbs, not other namespaces
    assert cluster.kubectl("auth", "can-i", "delete", "pods", "-n", namespace, kubeconfig=cluster.limited_kubeconfig,
                           check=False).stdout.strip() == "no"  # fmt: skip
    assert cluster.kubectl("auth", "can-i", "list", "pods", "-n", "default", kubeconfig=cluster.limited_kubeconfig,
                           check=False).stdout.strip() == "no"  # fmt: skip


@pytest.mark.s3
def test_s3_put_get_list_round_trip_on_versitygw(s3: S3Bucket) -> None:
    s3.client.put_object(Bucket=s3.bucket, Key="sweep/d2/results.json", Body=b'{"loss": 3.5}')
    s3.client.put_object(Bucket=s3.bucket, Key="sweep/d3/results.json", Body=b'{"loss": 3.1}')
    assert s3.client.get_object(Bucket=s3.bucket, Key="sweep/d2/results.json")["Body"].read() == b'{"loss": 3.5}'
    assert s3.keys("sweep/") == ["sweep/d2/results.json", "sweep/d3/results.json"]
    # the bytes land on disk under versitygw's POSIX root: a real server, not a dict in memory
    assert (s3.server.root / s3.bucket / "sweep" / "d3" / "results.json").read_bytes() == b'{"loss": 3.1}'
    # a create boto3 retried after the server made the bucket gets that (empty) bucket; one holding
    # objects is not a retry's and is refused
    with pytest.raises(ClientError, match=r"BucketAlreadyExists|BucketAlreadyOwnedByYou"):
        new_bucket(s3.server, s3.bucket)
    s3.client.create_bucket(Bucket=f"{s3.bucket}-empty")
    assert new_bucket(s3.server, f"{s3.bucket}-empty").keys("") == []


@pytest.mark.s3
def test_the_store_talks_to_versitygw_through_its_env(s3: S3Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    from miniseries.contract.store import open_store

    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    store = open_store(f"{s3.uri}/prefix")
    store.write_bytes("a/b.txt", b"through the store")
    assert store.read_bytes("a/b.txt") == b"through the store"
    assert s3.keys() == ["prefix/a/b.txt"]


class _Exporter(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"# TYPE smoke_answer gauge\nsmoke_answer 42\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.prometheus
def test_prometheus_scrapes_an_exporter_and_answers_promql(prometheus_server: Prometheus) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Exporter)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        start = time.time() - 1
        prometheus_server.scrape("smoke", f"127.0.0.1:{server.server_address[1]}")
        prometheus_server.wait_up("smoke")
        wait_for("a sample of smoke_answer", lambda: query_range(prometheus_server.url, "smoke_answer", start), 30)
        result = query_range(prometheus_server.url, 'smoke_answer{job="smoke"} * 2', start)
        assert float(result[0]["values"][-1][1]) == 84.0
    finally:
        server.shutdown()


def _listening(port: int) -> bool:
    """Whether any socket LISTENs on the port (TIME_WAIT leftovers of closed connections do not count)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in f.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    return True
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes; /proc says so
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ", 1)[1][0] != "Z"


@pytest.mark.s3
@pytest.mark.slow
def test_up_and_down_for_people_leave_no_process_or_port_behind(tmp_path: Path) -> None:
    """`python -m tests.harness.cluster up` starts a cluster a person can use; `down` ends every part of it."""
    state = tmp_path / "dev"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    up = subprocess.run([sys.executable, "-m", "tests.harness.cluster", "up", f"--dir={state}"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=240)  # fmt: skip
    if up.returncode == 2:
        pytest.skip(up.stderr.strip())
    info = json.loads((state / "ready.json").read_text())
    try:
        assert up.returncode == 0, up.stderr
        assert f"export KUBECONFIG={info['kubeconfig']}" in up.stdout
        kubectl = Cluster(Path(info["kubeconfig"]), Path(info["limited_kubeconfig"]), info["server"],
                          Path(info["kubeconfig"]).parent / "pki" / "ca.crt", "", state)  # fmt: skip
        nodes = kubectl.kubectl("get", "nodes", "-o=jsonpath={.items[*].metadata.name}").stdout
        assert nodes == GPU_NODE
        assert all(_alive(p) for p in info["component_pids"])
    finally:
        down = subprocess.run([sys.executable, "-m", "tests.harness.cluster", "down", f"--dir={state}"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        if down.returncode != 0:
            os.kill(info["pid"], signal.SIGKILL)
    assert down.returncode == 0, down.stderr
    wait_for("every component to exit", lambda: not any(_alive(p) for p in info["component_pids"]), 30)
    assert [p for p in info["ports"] if _listening(p)] == []
    assert not _listening(int(info["server"].rsplit(":", 1)[1]))


def test_vendored_pytorchjob_crd_is_the_training_operators_own() -> None:
    """tests/harness/crds holds the CRD of the training-operator version the e2e tests build, byte for byte."""
    from tests.harness.training_operator import training_operator_binary

    try:
        published = training_operator_binary().parent / "kubeflow.org_pytorchjobs.yaml"
    except MissingBinary as e:
        pytest.skip(str(e))
    assert PYTORCHJOB_CRD.read_bytes() == published.read_bytes()
