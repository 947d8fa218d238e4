"""The Trainer v2 backend on its real path (tests/harness/trainer.py): JobSet v0.12 and Kubeflow
Trainer v2.3 controller-managers with their webhooks over TLS, pods run by the node agent.

- The TrainJobs the operator generates (control/backends/manifests.py `trainjob`) for several specs pass the v2
  webhooks and the CRD schema (a server-side dry run goes through both and stores nothing); a few
  deliberately broken ones, each a mistake the generator must never make, are refused.
- A generated TrainJob becomes a JobSet whose pods carry the sweep's labels and the torch env (PET_*)
  the trainer's torch plugin injects, and finishes Complete, which the one mapping reads as Succeeded.
- The same e2e as the PyTorchJob path (tests/e2e/test_e2e.py): a tiny sweep with backend trainjob
  through `miniseries operator --backend trainjob` -> TrainJobs -> real trainer processes (CPU) ->
  checkpoints and results.json in the versitygw S3 store -> status.runs -> fit and report; then a run
  killed mid-way resumes from its checkpoint.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from miniseries.api.policy import DEFAULT_SECRET_OPT_IN_LABEL
from miniseries.api.spec import ScalingSweepSpec
from miniseries.contract.layout import SweepLayout, join_uri
from miniseries.contract.results import checkpoint_steps, read_results
from miniseries.contract.store import S3Store, Store
from miniseries.control.backends import manifests as jobs
from miniseries.control.backends.registry import run_job
from miniseries.control.backends.trainjob import RUNTIME_PATCH_MANAGER
from miniseries.control.decide.observations import JobPhase, observe_job
from miniseries.local.runner import DATA_KEY, LocalSweep
from miniseries.plan.planner import make_plan
from tests.e2e.resume import kill_and_resume, wait_sweep
from tests.e2e.shapes import e2e_training
from tests.harness.binaries import REPO, MissingBinary
from tests.harness.operator_process import Operator, install_crds
from tests.harness.processes import NotYet, wait_for
from tests.harness.s3 import S3Bucket, S3Server, new_bucket
from tests.harness.trainer import TrainerCluster, trainer_cluster

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.trainjob]

NODE_SELECTOR = {"miniseries.dev/e2e-node": "true"}
CREDENTIALS_SECRET = "tj-s3"


@pytest.fixture(scope="module")
def tj_cluster(tmp_path_factory: pytest.TempPathFactory, _sigterm_stops_servers: None) -> Iterator[TrainerCluster]:
    workdir = Path(tmp_path_factory.mktemp("trainjob-path"))
    try:
        with trainer_cluster(workdir, gpus=8) as cluster:
            print(json.dumps({"jobset_and_trainer_start_seconds": round(cluster.start_seconds, 1)}))
            yield cluster
    except MissingBinary as e:
        pytest.skip(str(e))


def tiny_spec(**resources: Any) -> ScalingSweepSpec:
    doc = yaml.safe_load((REPO / "examples" / "tiny.yaml").read_text())
    doc["spec"]["resources"].update({"backend": "trainjob", "cpu": "1", "memory": "1Gi", **resources})
    doc["spec"]["training"].pop("totalBatchTokens", None)  # automatic: a multiple of any GPU count's micro-batch
    # which on 8 or 16 GPUs leaves d1 two steps: a warmup longer than a run is refused (issue 28)
    doc["spec"]["training"]["warmupSteps"] = 1
    return ScalingSweepSpec.model_validate(doc["spec"])


def generated(spec: ScalingSweepSpec, sweep: str = "tj", run: int = 0) -> dict[str, Any]:
    planned = make_plan(spec).runs[run]
    return run_job(spec, sweep, "00000000-0000-0000-0000-000000000001", "default", planned)


def dry_run(cluster: TrainerCluster, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """A server-side dry run: admission (mutating and validating webhooks) and the CRD schema, nothing stored."""
    return cluster.kubectl("create", "--dry-run=server", "-o=json", "-f", "-", stdin=json.dumps(obj), check=False)


GENERATED = {
    "one-process": {"gpusPerRun": 1},
    "eight-processes": {"gpusPerRun": 8, "nodeGpus": 8},
    "two-nodes": {"gpusPerRun": 16, "nodeGpus": 8, "nodes": 2},
    "two-nodes-one-gpu": {"gpusPerRun": 2, "nodeGpus": 1, "nodes": 2},
    "queued": {"queueName": "team-a", "priorityClassName": "exploratory", "nodeSelector": NODE_SELECTOR},
    "stock-runtime": {"trainingRuntime": "torch-distributed"},
}


@pytest.mark.parametrize("resources", list(GENERATED.values()), ids=list(GENERATED))
def test_generated_trainjobs_pass_the_v2_webhooks(tj_cluster: TrainerCluster, resources: dict[str, Any]) -> None:
    spec = tiny_spec(**resources)
    spec.store.credentials_secret = CREDENTIALS_SECRET
    job = generated(spec)
    out = dry_run(tj_cluster, job)
    assert out.returncode == 0, out.stderr
    stored = json.loads(out.stdout)
    # the defaulting webhook stamps our runtimePatch with its time; nothing else of ours is changed
    (patch,) = stored["spec"]["runtimePatches"]
    assert patch["manager"] == RUNTIME_PATCH_MANAGER and patch.get("time")
    assert stored["spec"]["trainer"] == job["spec"]["trainer"]
    assert stored["spec"]["runtimeRef"] == job["spec"]["runtimeRef"]


def _env(job: dict[str, Any], name: str, value: str) -> None:
    job["spec"]["trainer"].setdefault("env", []).append({"name": name, "value": value})


def _node_patch(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]  # type: ignore[no-any-return]


BROKEN = {
    # the torch plugin owns torchrun's env: a trainer env that sets it is refused
    "reserved-torch-env": (lambda j: _env(j, "PET_NNODES", "2"), "webhook", "must not have reserved envs"),
    # runtimePatches are keyed by a domain-prefixed manager name
    "manager-not-domain-prefixed": (
        lambda j: j["spec"]["runtimePatches"][0].update(manager="operator"),
        "webhook",
        "must be a domain-prefixed path",
    ),
    # env for the trainer's container must go in trainer.env, never in a patch of the `node` container
    "env-patched-into-node": (
        lambda j: _node_patch(j)["template"]["spec"]["template"]["spec"].update(
            containers=[{"name": "node", "env": [{"name": "X", "value": "1"}]}]
        ),
        "webhook",
        "must not have envs",
    ),
    "missing-runtime": (
        lambda j: j["spec"]["runtimeRef"].update(name="no-such-runtime"),
        "webhook",
        "clusterTrainingRuntime must be created before the TrainJob",
    ),
    # the CRD's own rule (CEL), stricter than a PyTorchJob's: a DNS-1035 label, as job_name makes it
    "name-not-rfc1035": (
        lambda j: j["metadata"].update(name="tj.d1"),
        "schema",
        "metadata.name must match RFC 1035 DNS label format",
    ),
}


@pytest.mark.parametrize(("mutate", "by", "message"), list(BROKEN.values()), ids=list(BROKEN))
def test_the_v2_webhook_refuses_what_the_generator_must_never_make(
    tj_cluster: TrainerCluster, mutate: Any, by: str, message: str
) -> None:
    bad = copy.deepcopy(generated(tiny_spec()))
    mutate(bad)
    out = dry_run(tj_cluster, bad)
    assert out.returncode != 0, f"an invalid TrainJob got through ({by})"
    if by == "webhook":
        assert "admission webhook" in out.stderr and "denied the request" in out.stderr, out.stderr
    assert message in out.stderr, out.stderr


def test_a_patch_of_a_replicated_job_the_runtime_lacks_is_not_refused(tj_cluster: TrainerCluster) -> None:
    """A gap in v2.3's webhook, and why trainjob.TRAINJOB_NODE is pinned by a unit test: it merges the
    runtimePatches into the runtime before it checks that a patched replicated job exists, so a patch
    naming another job (here `trainer`, not the torch runtime's `node`) adds one and passes; the
    JobSet it would make has a job without containers."""
    bad = copy.deepcopy(generated(tiny_spec()))
    _node_patch(bad).update(name="trainer")
    out = dry_run(tj_cluster, bad)
    assert out.returncode == 0, out.stderr


def test_a_runtime_patch_cannot_change_while_the_job_runs(tj_cluster: TrainerCluster) -> None:
    """Why the operator never updates a TrainJob's patch: v2 forbids it unless the job is suspended
    (Kueue changes its own only while suspending or resuming)."""
    kc = tj_cluster
    job = generated(tiny_spec(), sweep="immutable")
    job["metadata"].pop("ownerReferences")  # no sweep owns it: the garbage collector would take it
    job["spec"]["trainer"].update(command=["python", "-c", "import time; time.sleep(120)"], args=[])
    kc.apply(job)
    try:
        patch = [{"op": "replace", "path": "/spec/runtimePatches/0/trainingRuntimeSpec/template/spec/replicatedJobs/0"
                  "/template/spec/template/metadata/labels/miniseries.dev~1attempt", "value": "9"}]  # fmt: skip
        out = kc.kubectl("patch", "trainjob", job["metadata"]["name"], "--type=json", f"-p={json.dumps(patch)}",
                         check=False)  # fmt: skip
        assert (
            out.returncode != 0 and "RuntimePatches can only be modified when the TrainJob is suspended" in out.stderr
        )
    finally:
        kc.kubectl("delete", "trainjob", job["metadata"]["name"], "--wait=false")


PRINT_ENV = (
    "import os, json; print('ENV ' + json.dumps({k: os.environ.get(k) for k in "
    "['PET_NNODES', 'PET_NPROC_PER_NODE', 'PET_NODE_RANK', 'PET_MASTER_ADDR', 'PET_MASTER_PORT', 'RANK', "
    "'WORLD_SIZE', 'AWS_ACCESS_KEY_ID', 'AWS_SESSION_TOKEN']}))"
)


def wait_trainjob(kc: TrainerCluster, name: str, phase: JobPhase, timeout: float) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        obj: dict[str, Any] = json.loads(kc.kubectl("get", "trainjob", name, "-o", "json").stdout)
        if observe_job(obj).phase is phase:
            return obj
        raise NotYet(f"status {obj.get('status')}")

    return wait_for(f"TrainJob {name} {phase}", reached, timeout)  # type: ignore[no-any-return]


def test_a_generated_trainjob_runs_its_pods_with_the_torch_env(tj_cluster: TrainerCluster) -> None:
    kc = tj_cluster
    kc.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "env-s3", "namespace": "default"},
              "stringData": {"AWS_ACCESS_KEY_ID": "id-from-secret"}})  # fmt: skip
    spec = tiny_spec(gpusPerRun=2, nodeGpus=1, nodes=2, nodeSelector=NODE_SELECTOR)
    spec.store.credentials_secret = "env-s3"
    job = generated(spec, sweep="envcheck")
    job["metadata"].pop("ownerReferences")
    job["spec"]["trainer"].update(command=["python", "-c", PRINT_ENV], args=[])
    name = job["metadata"]["name"]
    kc.apply(job)
    done = wait_trainjob(kc, name, JobPhase.Succeeded, 180)
    assert observe_job(done).kind == "TrainJob"
    pods = json.loads(kc.kubectl("get", "pods", "-l", f"{jobs.LABEL_SWEEP}=envcheck", "-o", "json").stdout)["items"]
    assert len(pods) == 2, [p["metadata"]["name"] for p in pods]
    for pod in pods:
        labels = pod["metadata"]["labels"]
        assert labels[jobs.LABEL_RUN] == job["metadata"]["labels"][jobs.LABEL_RUN] and labels[jobs.LABEL_ATTEMPT] == "1"
        assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9400"
        (c,) = pod["spec"]["containers"]
        # from the chart's runtime: what a TrainJob cannot set itself
        assert c["terminationMessagePolicy"] == "FallbackToLogsOnError" and pod["spec"]["restartPolicy"] == "Never"
        assert {"name": "metrics", "containerPort": 9400, "protocol": "TCP"} in c["ports"]
        assert pod["spec"]["nodeSelector"] == NODE_SELECTOR
        assert pod["spec"]["terminationGracePeriodSeconds"] == job["spec"]["runtimePatches"][0][
            "trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"]  # fmt: skip
    jobset = json.loads(kc.kubectl("get", "jobset", name, "-o", "json").stdout)
    assert jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["backoffLimit"] == 0
    envs = {}
    for path in sorted(kc.node_logs.glob(f"default_{name}-*_node.log")):
        line = next(x for x in path.read_text().splitlines() if x.startswith("ENV "))
        envs[path.name] = json.loads(line[4:])
    assert len(envs) == 2, list(envs)
    assert sorted(e["PET_NODE_RANK"] for e in envs.values()) == ["0", "1"]
    for e in envs.values():
        assert e["PET_NNODES"] == "2" and e["PET_NPROC_PER_NODE"] == "1" and e["PET_MASTER_PORT"] == "29500"
        assert e["PET_MASTER_ADDR"] == "127.0.0.1"  # <job>-node-0-0.<job>, rewritten by the node agent
        assert (
            e["RANK"] is None and e["WORLD_SIZE"] is None
        )  # v2 sets none: torchrun does (pod_template.trainer_command)
        assert e["AWS_ACCESS_KEY_ID"] == "id-from-secret" and e["AWS_SESSION_TOKEN"] is None  # optional, absent
    kc.kubectl("delete", "trainjob", name, "--wait=false")


# ---------------------------------------------------------------- the sweep, end to end


@pytest.fixture(scope="module")
def tj_bucket(tj_cluster: TrainerCluster, tiny: LocalSweep, s3_service: S3Server) -> S3Bucket:
    b = new_bucket(s3_service, "trainjob")
    for path in sorted(tiny.store_dir.rglob("*")):
        if path.is_file():
            b.client.upload_file(str(path), b.bucket, path.relative_to(tiny.store_dir).as_posix())
    tj_cluster.apply({"apiVersion": "v1", "kind": "Secret",
                      "metadata": {"name": CREDENTIALS_SECRET, "namespace": "default",
                                   "labels": {DEFAULT_SECRET_OPT_IN_LABEL: "true"}},  # opted in to sweeps
                      "stringData": b.env})  # fmt: skip
    return b


@pytest.fixture(scope="module")
def tj_operator(tj_cluster: TrainerCluster, tj_bucket: S3Bucket, tmp_path_factory: pytest.TempPathFactory) -> Any:
    install_crds(tj_cluster)
    log = Path(tmp_path_factory.mktemp("tj-operator")) / "operator.log"
    op = Operator(tj_cluster, "default", log, env={**tj_bucket.env, "MINISERIES_BACKENDS": "trainjob"},
                  poll_seconds=2, retry_base_seconds=2, store_roots=[tj_bucket.uri]).start()  # fmt: skip
    yield op
    op.stop()


def sweep_doc(tiny: LocalSweep, bucket: S3Bucket, name: str, depths: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    """tests/e2e/test_e2e.py's sweep (depths 1 and 2, one run at a time), with backend trainjob."""
    doc = e2e_training(yaml.safe_load((REPO / "examples" / "tiny.yaml").read_text()))
    doc["metadata"] = {"name": name, "namespace": "default"}
    doc["spec"]["depths"] = list(depths)
    doc["spec"]["store"] = {"uri": bucket.uri, "credentialsSecret": CREDENTIALS_SECRET}
    doc["spec"]["data"]["shardsUri"] = join_uri(bucket.uri, DATA_KEY)
    doc["spec"]["data"]["tokenizerUri"] = join_uri(bucket.uri, tiny.layout.tokenizer)
    res = doc["spec"]["resources"]
    res.update(backend="trainjob", nodeSelector=NODE_SELECTOR, parallelism=1, cpu="1", memory="2Gi")
    return doc


def s3_store(bucket: S3Bucket) -> Store:
    return S3Store(bucket.bucket, "", bucket.uri, client=bucket.client)


@pytest.mark.slow
@pytest.mark.torch
def test_tiny_sweep_through_trainjobs(tj_cluster: TrainerCluster, tiny: LocalSweep, tj_bucket: S3Bucket,
                                      tj_operator: Any, record_property: Any) -> None:  # fmt: skip
    kc, store = tj_cluster, s3_store(tj_bucket)
    started = time.monotonic()
    kc.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(sweep_doc(tiny, tj_bucket, "tj-sweep")))
    status = wait_sweep(kc, "tj-sweep", 1200)
    seconds = round(time.monotonic() - started, 1)
    record_property("trainjob_sweep_seconds", seconds)
    print(json.dumps({"trainjob_sweep_seconds": seconds}))
    assert status["phase"] == "Succeeded", status
    assert {r["state"] for r in status["runs"]} == {"Succeeded"}
    made = json.loads(kc.kubectl("get", "trainjobs", "-l", f"{jobs.LABEL_SWEEP}=tj-sweep", "-o", "json").stdout)
    assert {r["jobName"] for r in status["runs"]} == {j["metadata"]["name"] for j in made["items"]}
    assert json.loads(kc.kubectl("get", "jobsets", "-o", "json").stdout)["items"]  # the TrainJobs' JobSets
    for r in status["runs"]:
        layout = SweepLayout("default", "tj-sweep").run(r["name"])
        res = read_results(store, layout)
        assert res is not None and res.loss.final is not None and res.steps == r["steps"]
        assert checkpoint_steps(store, layout)
    assert status.get("fit"), status
    assert status["reportUri"].startswith(f"{tj_bucket.uri}/")
    report = json.loads(store.read_bytes(SweepLayout("default", "tj-sweep").report + "report.json"))
    assert report["runs_finished"] == 2


@pytest.mark.slow
@pytest.mark.torch
def test_killed_trainjob_run_resumes_and_matches(tj_cluster: TrainerCluster, tiny: LocalSweep, tj_bucket: S3Bucket,
                                                 tj_operator: Any) -> None:  # fmt: skip
    """SIGKILL of d2's trainer: its pod fails, the runtime's Job (backoffLimit 0) and JobSet fail, the
    TrainJob is Failed; the operator deletes it and creates attempt 2, which resumes from the checkpoint."""
    kc, store = tj_cluster, s3_store(tj_bucket)
    # d2 alone: d1 would only train again what the sweep above trained (the reference is its d2)
    kc.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(sweep_doc(tiny, tj_bucket, "tj-kill", depths=(2,))))
    straight = read_results(store, SweepLayout("default", "tj-sweep").run("d2"))
    assert straight is not None, "the uninterrupted sweep (the test above) has no d2 results"
    got = kill_and_resume(kc, store, "default", "tj-kill", "d2", straight, wait_sweep)
    print(json.dumps(vars(got)))
