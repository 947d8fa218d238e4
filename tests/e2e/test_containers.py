"""The user's path, in containers: the built operator image installed by `helm install` of the chart
-> the operator pod Running on a real kubelet + containerd node (tests/harness/node.py) under the chart's
securityContext (uid 65532, read-only root, no capabilities), its probes passing -> `kubectl apply`
of the tiny sweep with spec.resources.image the built trainer image -> the real training-operator ->
trainer pods as containers (CPU, uid 1000) -> checkpoints, results and the report in the versitygw
bucket, status.fit filled. Then a trainer container scraped by Prometheus at its pod address, and
its process killed mid-run: the retry resumes from its checkpoint.

Nothing here runs on this host's Python: the operator and the trainers are the images'. Their S3
endpoint is this host's end of the node's veth pair (Node.expose), the API server the `kubernetes`
Service address, as on any cluster.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
import yaml

from miniseries.contract.layout import LOCAL_NAMESPACE, SweepLayout, join_uri
from miniseries.contract.results import checkpoint_steps, read_results
from miniseries.contract.store import S3Store, Store
from miniseries.local.runner import DATA_KEY, LocalSweep
from miniseries.plan.trainer_argv import TRAINER_MODULE
from tests.e2e.shapes import e2e_training
from tests.harness.binaries import REPO, MissingBinary
from tests.harness.cluster import Cluster
from tests.harness.helm import CHART, helm_binary
from tests.harness.node import SELECTOR, BuiltImage, Node, real_node, say
from tests.harness.operator_process import sweep_url
from tests.harness.pods import locked_down_pod, probe, run_to_completion
from tests.harness.processes import NotYet, wait_for
from tests.harness.prometheus import Prometheus
from tests.harness.s3 import S3Bucket, S3Server, new_bucket
from tests.harness.training_operator import real_path_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.container, pytest.mark.slow, pytest.mark.helm]

SECRET = "ctr-s3"
SECRET_OPT_IN = "miniseries.dev/allow-sweeps"  # the chart's admission.secretOptInLabel
SWEEP_NS = "default"  # where the sweeps are applied (sweep_doc)
OPERATOR_NS = "miniseries-system"
RELEASE = "ms"


@pytest.fixture(scope="module")
def ctr_cluster(
    tmp_path_factory: pytest.TempPathFactory,
    images: dict[str, BuiltImage],
    _sigterm_stops_servers: None,
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Cluster, Node]]:
    """Control plane + training-operator + one real node advertising 8 GPUs (the sweep's pods
    request them; they run on its CPU), with both images in its containerd (imported only when not
    in the kept store already, tests/harness/node.py)."""
    workdir = Path(tmp_path_factory.mktemp("ctr-path"))
    try:
        t0 = time.monotonic()
        with real_path_cluster(workdir, node_agent=False) as cluster:
            control_plane_s = time.monotonic() - t0
            with real_node(cluster, workdir / "node", taint=False, gpus=8) as node:
                for image in images.values():
                    node.import_image(image.archive)
                say(request.config, f"real-path cluster {control_plane_s:.1f} s; {node.phase_line()}")
                yield cluster, node
    except MissingBinary as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def bucket(ctr_cluster: tuple[Cluster, Node], tiny: LocalSweep, s3_service: S3Server) -> S3Bucket:
    """The tiny sweep's shards and tokenizer in a bucket, and the Secret (in the sweep's and the
    operator's namespace) whose endpoint is where the node's pods reach the S3 server."""
    cluster, node = ctr_cluster
    b = new_bucket(s3_service, "ctr")
    for path in sorted(tiny.store_dir.rglob("*")):
        if path.is_file():
            b.client.upload_file(str(path), b.bucket, path.relative_to(tiny.store_dir).as_posix())
    in_pods = {**b.env, "AWS_ENDPOINT_URL": f"http://{node.expose(s3_service.port)}"}
    # restricted, as every test namespace (issue 28; `default` too, tests/harness/cluster.py): the sweeps'
    # pods and the operator's own must pass kube-apiserver's PodSecurity admission, then run on the real kubelet
    cluster.create_namespace(OPERATOR_NS)
    for ns in ("default", OPERATOR_NS):
        # labelled: the chart's admission policy lets a sweep name only Secrets that opted in
        cluster.apply({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": SECRET, "namespace": ns, "labels": {SECRET_OPT_IN: "true"}},
                       "stringData": in_pods})  # fmt: skip
    return b


def s3_store(bucket: S3Bucket) -> Store:
    return S3Store(bucket.bucket, "", bucket.uri, client=bucket.client)


def pod_of(cluster: Cluster, ns: str, selector: str) -> dict[str, Any]:
    pods = cluster.get_json(f"/api/v1/namespaces/{ns}/pods?labelSelector={quote(selector)}")["items"]
    if len(pods) != 1:  # none yet, or a replacement beside the old one: the deployment is still moving
        raise NotYet(f"pods {[p['metadata']['name'] for p in pods]}")
    return pods[0]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def operator(ctr_cluster: tuple[Cluster, Node], bucket: S3Bucket, images: dict[str, BuiltImage]) -> dict[str, Any]:
    """`helm install` of the chart, as a user runs it, with the built image; returns the
    operator's pod once Ready (its readiness probe passing)."""
    cluster, _ = ctr_cluster
    repo, tag = images["operator"].ref.removeprefix("docker.io/").rsplit(":", 1)
    proc = subprocess.run(
        [helm_binary(), "install", RELEASE, str(CHART), f"--kubeconfig={cluster.kubeconfig}", "-n", OPERATOR_NS,
         "--set", f"image.repository={repo}", "--set", f"image.tag={tag}",
         "--set", f"store.credentialsSecret={SECRET}",
         # store roots are required; the sweeps' namespace may name (opted-in) Secrets
         "--set", f"store.roots={{{bucket.uri}}}", "--set", "admission.secretNamespaces={default}"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    selector = "app.kubernetes.io/name=miniseries-operator"

    def ready() -> dict[str, Any] | None:
        pod = pod_of(cluster, OPERATOR_NS, selector)
        conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        return pod if conds.get("Ready") == "True" else None

    try:
        return wait_for("operator pod Ready", ready, 300)
    except TimeoutError:
        logs = cluster.kubectl("logs", "-n", OPERATOR_NS, "-l", selector, "--tail=50", check=False)
        events = cluster.kubectl("get", "events", "-n", OPERATOR_NS, check=False).stdout
        raise AssertionError(f"operator not Ready:\n{logs.stdout}{logs.stderr}\n{events}") from None


def sweep_doc(tiny: LocalSweep, bucket: S3Bucket, name: str, image: str, depths: list[int]) -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "examples" / "tiny.yaml").read_text())
    doc["metadata"] = {"name": name, "namespace": "default"}
    doc["spec"]["depths"] = depths
    doc["spec"]["store"] = {"uri": bucket.uri, "credentialsSecret": SECRET}
    doc["spec"]["data"]["shardsUri"] = join_uri(bucket.uri, DATA_KEY)
    doc["spec"]["data"]["tokenizerUri"] = join_uri(bucket.uri, SweepLayout(LOCAL_NAMESPACE, tiny.name).tokenizer)
    doc["spec"]["resources"].update(image=image, nodeSelector=SELECTOR, cpu="1", memory="2Gi", parallelism=1)
    return doc


def wait_sweep(cluster: Cluster, name: str, timeout: float) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        status = cluster.get_json(sweep_url(SWEEP_NS, name)).get("status", {})
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    return wait_for(f"sweep {name} finished", done, timeout)


def test_operator_pod_runs_under_the_charts_security_context(
    ctr_cluster: tuple[Cluster, Node], operator: dict[str, Any]
) -> None:
    cluster, node = ctr_cluster
    assert operator["spec"]["nodeName"] == node.name
    status = operator["status"]["containerStatuses"][0]
    assert status["ready"] is True and status["restartCount"] == 0, status
    name = operator["metadata"]["name"]
    out = cluster.kubectl("exec", "-n", OPERATOR_NS, name, "--", "python", "-c",
                          "import os; print(os.getuid(), os.getgid(), [l.split()[1] for l in open('/proc/self/status')"
                          " if l.startswith('CapEff')][0], os.access('/', os.W_OK), os.environ['HOME'])").stdout  # fmt: skip
    assert out.split() == ["65532", "65532", "0000000000000000", "False", "/tmp"]


def test_tiny_sweep_in_containers(
    ctr_cluster: tuple[Cluster, Node],
    tiny: LocalSweep,
    bucket: S3Bucket,
    operator: dict[str, Any],
    images: dict[str, BuiltImage],
    record_property: Any,
) -> None:
    cluster, node = ctr_cluster
    store = s3_store(bucket)
    started = time.monotonic()
    # the path, not a loss curve: the e2e sweeps' quarter-size steps (tests/e2e/shapes.py), half the CPU
    cluster.apply(e2e_training(sweep_doc(tiny, bucket, "ctr-sweep", images["trainer"].ref, [1, 2])))
    status = wait_sweep(cluster, "ctr-sweep", 1800)
    record_property("ctr_sweep_seconds", round(time.monotonic() - started, 1))
    print(f"ctr-sweep: {time.monotonic() - started:.0f} s", file=sys.stderr)
    assert status["phase"] == "Succeeded", status
    assert {r["state"] for r in status["runs"]} == {"Succeeded"}
    for r in status["runs"]:
        layout = SweepLayout(SWEEP_NS, "ctr-sweep").run(r["name"])
        res = read_results(store, layout)
        assert res is not None and res.loss.final is not None and res.steps == r["steps"]
        assert checkpoint_steps(store, layout)
    assert status.get("fit"), status
    report = json.loads(store.read_bytes(SweepLayout(SWEEP_NS, "ctr-sweep").report + "report.json"))
    assert report["runs_finished"] == 2
    # the trainers ran as containers on the real node, as uid 1000, and their logs are the API's
    pods = json.loads(cluster.kubectl("get", "pods", "-l", "miniseries.dev/sweep=ctr-sweep", "-o=json").stdout)
    trainers = [p for p in pods["items"] if p["metadata"]["labels"].get("miniseries.dev/component") == "trainer"]
    assert trainers, [p["metadata"]["name"] for p in pods["items"]]
    for p in trainers:
        assert p["spec"]["nodeName"] == node.name
        assert p["status"]["containerStatuses"][0]["imageID"], p["status"]
        logs = cluster.kubectl("logs", p["metadata"]["name"]).stdout
        assert logs.strip(), f"no log from {p['metadata']['name']}"


def trainer_pids(pod_uid: str) -> list[str]:
    """The trainer's process, seen from this host (the container's processes are this host's), found
    by its pod's uid in its mounts: not by its command line, which another run of the suite on this
    host may share. Every container mounts files the kubelet keeps under `<root>/pods/<uid>/` (its
    /etc/hosts, its termination log, the emptyDirs); the cgroup path names the pod only with QoS
    cgroups, which the test node runs without (tests/harness/node.py: cgroupsPerQOS false)."""
    mark = f"/pods/{pod_uid}/"
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or mark not in (proc / "mountinfo").read_text():
                continue
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if TRAINER_MODULE.encode() in argv:
            found.append(proc.name)
    return found


def test_killed_trainer_container_resumes_from_its_checkpoint(
    ctr_cluster: tuple[Cluster, Node],
    tiny: LocalSweep,
    bucket: S3Bucket,
    operator: dict[str, Any],
    images: dict[str, BuiltImage],
    prometheus_server: Prometheus,
) -> None:
    cluster, _ = ctr_cluster
    store = s3_store(bucket)
    # quarter-size steps (tests/e2e/shapes.py): the kill comes at the first checkpoint, step 10 of 112
    cluster.apply(e2e_training(sweep_doc(tiny, bucket, "ctr-kill", images["trainer"].ref, [2])))
    layout = SweepLayout(SWEEP_NS, "ctr-kill").run("d2")
    # Prometheus (on this host) scrapes the running trainer at its pod address, as a PodMonitor would
    selector = "miniseries.dev/sweep=ctr-kill,miniseries.dev/component=trainer"

    def running_pod() -> dict[str, Any] | None:
        pods = cluster.get_json(f"/api/v1/namespaces/{SWEEP_NS}/pods?labelSelector={quote(selector)}")["items"]
        return next((p for p in pods if p["status"].get("phase") == "Running" and p["status"].get("podIP")), None)

    pod = wait_for("the ctr-kill trainer pod Running", running_pod, 300)
    port = next(p["containerPort"] for p in pod["spec"]["containers"][0]["ports"] if p["name"] == "metrics")
    prometheus_server.scrape("trainer", f"{pod['status']['podIP']}:{port}")
    prometheus_server.wait_up("trainer", timeout=60)

    def steps_seen() -> float:
        q = requests.get(f"{prometheus_server.url}/api/v1/query", params={"query": 'miniseries_train_step{job="trainer"}'},
                         timeout=5).json()["data"]["result"]  # fmt: skip
        return max((float(r["value"][1]) for r in q), default=0.0)

    wait_for("miniseries_train_step > 0 scraped from the pod", steps_seen, 120)
    wait_for("a checkpoint of ctr-kill/d2", lambda: checkpoint_steps(store, layout), 900)
    found = trainer_pids(pod["metadata"]["uid"])
    assert len(found) == 1, found
    os.kill(int(found[0]), signal.SIGSTOP)  # frozen first: the run cannot finish between the look and the kill
    planned = run_status(cluster, "ctr-kill")
    assert planned is not None and checkpoint_steps(store, layout)[-1] < planned["steps"], (
        "the run ended before its kill"
    )
    os.kill(int(found[0]), signal.SIGKILL)
    status = wait_sweep(cluster, "ctr-kill", 1500)
    assert status["phase"] == "Succeeded", status
    run = status["runs"][0]
    assert run["attempts"] >= 2, run
    killed = read_results(store, layout)
    assert killed is not None and killed.loss.final is not None and killed.steps == run["steps"]
    # the retry's container started from the checkpoint, not from step 0
    logs = cluster.kubectl("logs", "-l", f"miniseries.dev/sweep=ctr-kill,miniseries.dev/attempt={run['attempts']}",
                           "--tail=-1").stdout  # fmt: skip
    assert "resumed from " in logs, logs[-3000:]


def sweep_events(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "events", "-n", SWEEP_NS, f"--field-selector=involvedObject.name={name}", "-o=json")
    return json.loads(out.stdout)["items"]


def run_status(cluster: Cluster, name: str) -> dict[str, Any] | None:
    status = cluster.get_json(sweep_url(SWEEP_NS, name)).get("status") or {}
    runs = status.get("runs") or []
    return runs[0] if runs else None


def test_an_unpullable_image_surfaces_as_a_run_condition_and_an_event(
    ctr_cluster: tuple[Cluster, Node], tiny: LocalSweep, bucket: S3Bucket, operator: dict[str, Any],
    record_property: Any,
) -> None:  # fmt: skip
    """An image that exists nowhere (no registry is reachable from the node, as for a typo'd tag
    on a real cluster): the kubelet's ErrImagePull/ImagePullBackOff, with the image named, in the
    run's status and a Warning Event within a minute, instead of a run Pending for ever."""
    cluster, _ = ctr_cluster
    image = "ghcr.io/miniseries/trainer:no-such-tag"  # inside the chart's allowedImagePrefixes
    started = time.monotonic()
    cluster.apply(sweep_doc(tiny, bucket, "ctr-noimage", image, [1]))

    def surfaced() -> dict[str, Any] | None:
        run = run_status(cluster, "ctr-noimage")
        return run if run and run.get("reason") in ("ErrImagePull", "ImagePullBackOff") else None

    run = wait_for("the pull failure in ctr-noimage's run status", surfaced, 90)
    elapsed = time.monotonic() - started
    record_property("image_pull_surfaced_seconds", round(elapsed, 1))
    print(f"ctr-noimage: pull failure surfaced after {elapsed:.0f} s", file=sys.stderr)
    assert image in run["message"] and run["state"] in ("Pending", "Running"), run
    events = wait_for(
        "a Warning Event naming the image",
        lambda: [e for e in sweep_events(cluster, "ctr-noimage") if e["type"] == "Warning" and image in e["message"]],
        30,
    )
    assert {e["reason"] for e in events} <= {"ErrImagePull", "ImagePullBackOff"}, events
    status = json.loads(cluster.kubectl("get", "scalingsweep", "ctr-noimage", "-o", "json").stdout)["status"]
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True" and image in degraded["message"], degraded
    cluster.kubectl("delete", "scalingsweep", "ctr-noimage", "--wait=true", "--timeout=120s")


def test_a_crashing_trainer_puts_the_end_of_its_log_in_status_and_events(
    ctr_cluster: tuple[Cluster, Node], tiny: LocalSweep, bucket: S3Bucket, operator: dict[str, Any],
    images: dict[str, BuiltImage],
) -> None:  # fmt: skip
    """A trainer container that exits with an error (here: its data prefix holds no shards): the
    last lines it printed reach the run's status message and the RunFailed Event, read from the
    pod's status (terminationMessagePolicy FallbackToLogsOnError), not only the training-operator's
    "1 Master replica(s) failed"."""
    cluster, _ = ctr_cluster
    doc = sweep_doc(tiny, bucket, "ctr-crash", images["trainer"].ref, [1])
    doc["spec"]["data"]["shardsUri"] = join_uri(bucket.uri, "no-shards-here/")
    doc["spec"]["retryLimit"] = 0
    cluster.apply(doc)
    status = wait_sweep(cluster, "ctr-crash", 600)
    assert status["phase"] == "Failed", status
    run = status["runs"][0]
    assert run["state"] == "Failed" and "container exited with code 2 (Error)" in run["message"], run
    assert "0 parquet shard(s)" in run["message"], run["message"]
    failed = [e for e in sweep_events(cluster, "ctr-crash") if e["reason"] == "RunFailed"]
    assert failed and "0 parquet shard(s)" in failed[0]["message"], failed
    cluster.kubectl("delete", "scalingsweep", "ctr-crash", "--wait=true", "--timeout=120s")


#: nanochat at commit 92d63d4, the checkout scripts/build-images.sh copies into the custom trainer image
#: (trainer_image/nanochat.Dockerfile) when it is there.
NANOCHAT = REPO.parent / "shared" / "peers" / "nanochat"


@pytest.fixture(scope="module")
def nanochat_image(ctr_cluster: tuple[Cluster, Node]) -> BuiltImage:
    """The custom trainer image "trainer + nanochat" (`scripts/build-images.sh nanochat`: layered on the
    trainer image, cached by content hash), imported into the node."""
    if not (NANOCHAT / "scripts" / "base_train.py").is_file():
        pytest.skip(f"no nanochat checkout at {NANOCHAT} (../shared/peers beside the repository)")
    script = REPO / "scripts" / "build-images.sh"
    proc = subprocess.run(["bash", str(script), "nanochat"], capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, f"build-images.sh nanochat:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    printed = subprocess.run(["bash", str(script), "--print"], capture_output=True, text=True, check=True).stdout
    lines = dict(line.split("=", 1) for line in printed.split())
    image = BuiltImage(lines["NANOCHAT_IMAGE"], Path(lines["NANOCHAT_ARCHIVE"]))
    seconds = ctr_cluster[1].import_image(image.archive)
    print(f"nanochat image imported in {seconds:.0f} s", file=sys.stderr)
    return image


# torch.compile, as base_train runs it, in a fresh /tmp: inductor writes its C++ kernel there, builds it with the
# image's g++ and Python headers, and loads it, all as uid 1000 under a read-only root.
COMPILE_PROBE = """
import glob, json, os, torch
def step(x):
    return torch.sin(x) * 2 + x.pow(2).sum()
x = torch.randn(64)
same = bool(torch.allclose(torch.compile(step, fullgraph=True, dynamic=False)(x), step(x)))
kernels = glob.glob("/tmp/torchinductor_*/**/*.so", recursive=True)
print("PROBE " + json.dumps({"uid": os.getuid(), "same": same, "kernels": len(kernels)}), flush=True)
"""


def test_the_custom_trainer_image_compiles_under_the_restricted_security_context(
    ctr_cluster: tuple[Cluster, Node], nanochat_image: BuiltImage
) -> None:
    """nanochat's base_train always runs torch.compile (its optimizer step is compiled with fullgraph=True):
    the image must carry a compiler, and inductor must find a writable cache under a read-only root. Proved
    here on one small function; the sweep below trains with dynamo off (the same base_train, eager), since
    compiling nanochat's model and optimizer cost ~150 of its CPU seconds and proves nothing more."""
    cluster, _ = ctr_cluster
    pod = locked_down_pod("nanochat-compile", nanochat_image.ref, ["python", "-c", COMPILE_PROBE])
    got = probe(run_to_completion(cluster, SWEEP_NS, pod))
    assert got == {"uid": 1000, "same": True, "kernels": got["kernels"]} and got["kernels"] >= 1, got


def test_a_custom_trainer_image_trains_a_sweep_in_restricted_containers(
    ctr_cluster: tuple[Cluster, Node], tiny: LocalSweep, bucket: S3Bucket, operator: dict[str, Any],
    images: dict[str, BuiltImage], nanochat_image: BuiltImage, record_property: Any,
) -> None:  # fmt: skip
    """Issue 31: spec.trainer names the custom image and nanochat's adapter as its command; the run's pod
    is a real container of that image under the restricted securityContext (uid 1000, read-only root, no
    capabilities), nanochat's base_train trains in it, and the operator (a container too) reads its results
    back from the bucket. The command sets TORCHDYNAMO_DISABLE through `env`, as a user would: base_train runs
    eager, its compile proved by the test above."""
    cluster, node = ctr_cluster
    store, name = s3_store(bucket), "ctr-nanochat"
    doc = sweep_doc(tiny, bucket, name, images["trainer"].ref, [2])  # nanochat fails at d1 (tests/e2e/test_e2e.py)
    doc["spec"]["training"].update(tokensPerParam=2, evalTokens=8192)  # 28 steps
    eager = ["env", "TORCHDYNAMO_DISABLE=1"]
    doc["spec"]["trainer"] = {"image": nanochat_image.ref,
                              "command": [*eager, "python", "-m", "miniseries_trainer.adapters.nanochat"],
                              "args": ["--nanochat-dir", "/opt/nanochat"], "contractVersion": 1}  # fmt: skip
    started = time.monotonic()
    cluster.apply(doc)
    status = wait_sweep(cluster, name, 1200)
    record_property("ctr_nanochat_seconds", round(time.monotonic() - started, 1))
    assert status["phase"] == "Succeeded", [
        (r.get("state"), r.get("attempts"), r.get("message")) for r in status["runs"]
    ]
    (run,) = status["runs"]
    res = read_results(store, SweepLayout(SWEEP_NS, name).run("d2"))
    assert res is not None and res.steps == run["steps"] and res.val_bpb is not None, res
    assert run["valBpb"] == pytest.approx(res.val_bpb), run
    assert res.provenance.trainer == "nanochat scripts/base_train.py", res.provenance
    pods = json.loads(cluster.kubectl("get", "pods", "-l", f"miniseries.dev/sweep={name}", "-o=json").stdout)["items"]
    (pod,) = [p for p in pods if p["metadata"]["labels"].get("miniseries.dev/component") == "trainer"]
    assert pod["spec"]["nodeName"] == node.name
    (container,) = pod["spec"]["containers"]
    assert container["image"] == nanochat_image.ref and pod["status"]["containerStatuses"][0]["imageID"], pod
    assert container["securityContext"]["readOnlyRootFilesystem"] is True, container["securityContext"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["securityContext"]["runAsUser"] == 1000, pod["spec"]["securityContext"]
    logs = cluster.kubectl("logs", pod["metadata"]["name"]).stdout
    assert "scripts.base_train" in logs and "Validation bpb" in logs, logs[-3000:]
