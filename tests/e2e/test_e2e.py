"""The whole real path: `kubectl apply` a tiny ScalingSweep -> `miniseries operator` -> PyTorchJobs
validated by the real training-operator webhook -> pods run by the node agent -> real trainer
processes (CPU) -> checkpoints and results.json in the versitygw S3 store -> status.runs -> fit and
report in S3. Then a second sweep with one run's process killed mid-run: the retry resumes from its
checkpoint and its final loss matches the uninterrupted run's.

The store is a versitygw bucket (tests/harness/s3.py): data shards and tokenizer are uploaded there,
the trainers get the credentials from the Secret the sweep names (envFrom, resolved by the node
agent as a kubelet would), and the operator from its own environment, as the chart gives it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from miniseries.api.policy import DEFAULT_SECRET_OPT_IN_LABEL
from miniseries.contract.layout import SweepLayout, join_uri
from miniseries.contract.results import checkpoint_steps, read_results
from miniseries.contract.store import S3Store, Store
from miniseries.local.runner import DATA_KEY, LocalSweep, free_port
from tests.e2e.resume import kill_and_resume, wait_sweep
from tests.e2e.shapes import e2e_training
from tests.harness.binaries import REPO
from tests.harness.cluster import Cluster
from tests.harness.s3 import S3Bucket, S3Server, new_bucket
from tests.harness.training_operator import RealPathCluster

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.slow, pytest.mark.torch]

CREDENTIALS_SECRET = "e2e-s3"


@pytest.fixture(scope="module")
def bucket(real_cluster: Cluster, tiny: LocalSweep, s3_service: S3Server) -> S3Bucket:
    """A bucket holding the tiny sweep's shards and tokenizer, and the Secret that reaches it."""
    b = new_bucket(s3_service, "e2e")
    for path in sorted(tiny.store_dir.rglob("*")):
        if path.is_file():
            b.client.upload_file(str(path), b.bucket, path.relative_to(tiny.store_dir).as_posix())
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": CREDENTIALS_SECRET, "namespace": "default",
              "labels": {DEFAULT_SECRET_OPT_IN_LABEL: "true"}}, "stringData": b.env}  # opted in to sweeps  # fmt: skip
    real_cluster.apply(secret)
    return b


def s3_store(bucket: S3Bucket) -> Store:
    return S3Store(bucket.bucket, "", bucket.uri, client=bucket.client)


def sweep_doc(tiny: LocalSweep, bucket: S3Bucket, name: str, depths: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    doc = e2e_training(yaml.safe_load((REPO / "examples" / "tiny.yaml").read_text()))
    doc["metadata"] = {"name": name, "namespace": "default"}
    doc["spec"]["depths"] = list(depths)
    doc["spec"]["store"] = {"uri": bucket.uri, "credentialsSecret": CREDENTIALS_SECRET}
    doc["spec"]["data"]["shardsUri"] = join_uri(bucket.uri, DATA_KEY)
    doc["spec"]["data"]["tokenizerUri"] = join_uri(bucket.uri, tiny.layout.tokenizer)
    doc["spec"]["resources"]["nodeSelector"] = {"miniseries.dev/e2e-node": "true"}
    # One run at a time: the node agent's pods share the host network, and every trainer binds
    # the same default metrics port (9400).
    doc["spec"]["resources"]["parallelism"] = 1
    doc["spec"]["resources"].update(cpu="1", memory="2Gi")  # the scheduler fits them on the agent's node
    return doc


@pytest.fixture(scope="module")
def operator(real_cluster: Cluster, bucket: S3Bucket, tmp_path_factory: pytest.TempPathFactory) -> Any:
    kc = real_cluster
    crd = subprocess.run([sys.executable, "-m", "miniseries.cli", "crd"], capture_output=True, text=True, check=True)
    kc.kubectl("apply", "--server-side", "-f", "-", stdin=crd.stdout)
    log = (Path(tmp_path_factory.mktemp("operator")) / "operator.log").open("w")
    cmd = [sys.executable, "-m", "miniseries.cli", "operator", f"--kubeconfig={kc.kubeconfig}", "--all-namespaces",
           f"--metrics-port={free_port()}", f"--liveness-port={free_port()}", f"--store-root={bucket.uri}"]  # fmt: skip
    # KUBECONFIG too: kopf logs in through the kubernetes client, whose default kubeconfig path is
    # read from the environment when it is imported, before --kubeconfig is applied.
    env = {
        **os.environ,
        "KUBECONFIG": str(kc.kubeconfig),
        **bucket.env,  # the operator reads results.json and progress from the bucket
        "MINISERIES_POLL_SECONDS": "2",
        "MINISERIES_RETRY_BASE_SECONDS": "2",
    }
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    yield proc
    proc.terminate()
    proc.wait(timeout=30)


def test_tiny_sweep_through_the_real_path(real_cluster: Cluster, tiny: LocalSweep, bucket: S3Bucket, operator: Any,
                                          record_property: Any) -> None:  # fmt: skip
    kc, store = real_cluster, s3_store(bucket)
    started = time.monotonic()
    kc.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(sweep_doc(tiny, bucket, "e2e-sweep")))
    status = wait_sweep(kc, "e2e-sweep", 1200)
    record_property("e2e_sweep_seconds", round(time.monotonic() - started, 1))
    assert status["phase"] == "Succeeded", status
    assert {r["state"] for r in status["runs"]} == {"Succeeded"}
    jobs = json.loads(kc.kubectl("get", "pytorchjobs", "-o", "json").stdout)["items"]
    assert {r["jobName"] for r in status["runs"]} <= {j["metadata"]["name"] for j in jobs}
    for r in status["runs"]:
        layout = SweepLayout("default", "e2e-sweep").run(r["name"])
        res = read_results(store, layout)
        assert res is not None and res.loss.final is not None and res.steps == r["steps"]
        assert checkpoint_steps(store, layout)
    assert status.get("fit"), status  # two depths: the fit may say partial, but it is there
    assert status["reportUri"].startswith(f"{bucket.uri}/")
    report = json.loads(store.read_bytes(SweepLayout("default", "e2e-sweep").report + "report.json"))
    assert report["runs_finished"] == 2
    # everything landed in the bucket, nothing on this host's disk beside it
    keys = bucket.keys("default/e2e-sweep/")
    assert any(k.endswith("results.json") for k in keys) and any("/ckpt/" in k for k in keys), keys


def test_killed_run_resumes_and_matches(real_cluster: RealPathCluster, tiny: LocalSweep, bucket: S3Bucket,
                                        operator: Any) -> None:  # fmt: skip
    """tests/e2e/resume.py's scenario through PyTorchJobs: d2's trainer SIGKILLed after a checkpoint,
    attempt 2 resumes from it and ends with the uninterrupted run's loss (the sweep above)."""
    kc, store = real_cluster, s3_store(bucket)
    # d2 alone: d1 would only train again what the sweep above trained (the reference is its d2)
    kc.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(sweep_doc(tiny, bucket, "e2e-kill-sweep", depths=(2,))))
    straight = read_results(store, SweepLayout("default", "e2e-sweep").run("d2"))
    assert straight is not None, "the uninterrupted sweep (the test above) has no d2 results"
    got = kill_and_resume(kc, store, "default", "e2e-kill-sweep", "d2", straight, wait_sweep)
    print(json.dumps(vars(got)), file=sys.stderr)


#: nanochat at commit 92d63d4 (tests/trainer/test_nanochat_adapter.py): the node agent runs pods as this
#: host's processes, so the pod's --nanochat-dir is this checkout (the image has it at /opt/nanochat).
NANOCHAT = REPO.parent / "shared" / "peers" / "nanochat"


def test_a_custom_trainer_sweep_runs_nanochats_base_train(real_cluster: Cluster, tiny: LocalSweep, bucket: S3Bucket,
                                                         operator: Any, tmp_path: Path) -> None:  # fmt: skip
    """Issue 31: spec.trainer runs nanochat's own base_train through the adapter, on the real path: the
    PyTorchJob's container is the custom command (its `$(variable)` args rendered, the contract flags
    after them), the operator reads progress and results back from the bucket, and the sweep Succeeds."""
    if not (NANOCHAT / "scripts" / "base_train.py").is_file():
        pytest.skip(f"no nanochat checkout at {NANOCHAT} (../shared/peers beside the repository)")
    kc, store, name = real_cluster, s3_store(bucket), "e2e-nanochat"
    doc = sweep_doc(tiny, bucket, name)
    # d2 (nanochat's d1 fails in its own code at these dials: a [4064, 16] x [24, 1] matmul in its
    # compiled evaluation), 2 tokens per parameter: 28 steps, nanochat saves at steps 25 and 28
    doc["spec"]["depths"] = [2]
    # examples/tiny.yaml's own steps (not tests/e2e/shapes.py's quarter-size ones): fewer, larger steps
    # cost nanochat less, and its saves fall at 25 and 28
    doc["spec"]["training"].update(tokensPerParam=2, totalBatchTokens=4096, deviceBatchSize=32, checkpointEvery=25,
                                   evalTokens=8192)  # fmt: skip
    doc["spec"]["trainer"] = {"command": ["python", "-m", "miniseries_trainer.adapters.nanochat"],
                              "args": ["--nanochat-dir", str(NANOCHAT), f"--work-dir={tmp_path}/$(run.sweep)-$(run.name)"],
                              "contractVersion": 1}  # fmt: skip
    kc.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(doc))
    status = wait_sweep(kc, name, 900)
    assert status["phase"] == "Succeeded", status.get("runs")
    (run,) = status["runs"]
    # (attempts may be 2: the node agent's pods share this host's network, and a trainer of another suite
    # running here may hold the metrics port 9400 when the first attempt starts)
    assert run["state"] == "Succeeded" and run["steps"] == 28, run
    (job,) = [j for j in json.loads(kc.kubectl("get", "pytorchjobs", "-o", "json").stdout)["items"]
              if j["metadata"]["name"] == run["jobName"]]  # fmt: skip
    container = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "miniseries_trainer.adapters.nanochat"], container
    args = container["args"]
    assert args[:3] == ["--nanochat-dir", str(NANOCHAT), f"--work-dir={tmp_path}/{name}-d2"], args  # rendered
    assert "--run=d2" in args and "--steps=28" in args, args  # the contract flags follow
    layout = SweepLayout("default", name).run("d2")
    res = read_results(store, layout)
    assert res is not None and res.steps == 28 and res.loss.final is not None, res
    assert res.val_bpb is not None and 1.0 < res.val_bpb < 10.0, res.val_bpb  # nanochat's own final val bpb
    assert res.provenance.trainer == "nanochat scripts/base_train.py", res.provenance  # report A B tells trainers apart
    # nanochat's saves (every 25 steps and its last) as contract checkpoints
    assert checkpoint_steps(store, layout) == [25, 28], checkpoint_steps(store, layout)
    # what the operator read back into status.runs[]: the adapter's progress and results
    assert (run["step"], run["tokens"]) == (28, res.tokens), run
    assert run["loss"] == pytest.approx(res.loss.final) and run["valBpb"] == pytest.approx(res.val_bpb), run
    assert run["resultsUri"].endswith(f"{name}/d2/results.json") and "/ckpt/step_" in run["checkpointUri"], run
