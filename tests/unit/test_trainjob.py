"""The Trainer v2 backend without a cluster: spec.resources.backend, the TrainJob manifest (next to
the PyTorchJob one it must match), and the one mapping of both backends' job status into phases.
(The real trainer webhook and controllers: tests/e2e/test_trainjob.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from miniseries.api.errors import SpecError
from miniseries.api.spec import DEFAULT_TRAINING_RUNTIME, Backend, ScalingSweepSpec
from miniseries.api.sweepfile import load_sweep
from miniseries.contract.store.s3 import CREDENTIAL_ENV
from miniseries.control.backends.pytorchjob import pytorchjob
from miniseries.control.backends.registry import backend_for, by_kind, run_job
from miniseries.control.backends.trainjob import RUNTIME_PATCH_MANAGER, trainjob
from miniseries.control.decide.observations import JobPhase, observe_job, observe_workload
from miniseries.control.settings import parse_backends
from miniseries.plan.planner import make_plan

pytestmark = pytest.mark.trainjob

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example(**resources: Any) -> tuple[str, ScalingSweepSpec]:
    sweep = load_sweep(EXAMPLES / "miniseries.yaml")
    doc = sweep.spec.wire()
    doc["resources"].update({"backend": "trainjob", **resources})
    return sweep.name, ScalingSweepSpec.model_validate(doc)


def pod_patch(job: dict[str, Any]) -> dict[str, Any]:
    (patch,) = job["spec"]["runtimePatches"]
    assert patch["manager"] == RUNTIME_PATCH_MANAGER
    (node,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert node["name"] == "node"
    return node["template"]["spec"]["template"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------- the API


def test_backend_defaults_to_pytorchjob_and_the_runtime_to_the_charts() -> None:
    spec = load_sweep(EXAMPLES / "miniseries.yaml").spec
    assert spec.resources.backend is Backend.pytorchjob
    _, tj = example()
    assert tj.resources.backend is Backend.trainjob and tj.resources.runtime_name == DEFAULT_TRAINING_RUNTIME
    _, named = example(trainingRuntime="torch-distributed")
    assert named.resources.runtime_name == "torch-distributed"


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"backend": "mpijob"}, "resources.backend"),
        ({"backend": "pytorchjob", "trainingRuntime": "torch-distributed"}, "needs resources.backend: trainjob"),
        ({"trainingRuntime": "Torch_Distributed"}, "resources.trainingRuntime"),
    ],
    ids=["unknown-backend", "runtime-without-trainjob", "runtime-not-a-name"],
)
def test_invalid_backend_settings_name_the_field(resources: dict[str, Any], message: str) -> None:
    doc = load_sweep(EXAMPLES / "miniseries.yaml").spec.wire()
    doc["resources"].update(resources)
    with pytest.raises((SpecError, ValueError)) as e:
        ScalingSweepSpec.model_validate(doc)
    assert message in str(e.value)


# ---------------------------------------------------------------- the manifest


def test_trainjob_carries_what_the_pytorchjob_carries() -> None:
    name, spec = example()
    pt_spec = ScalingSweepSpec.model_validate({**spec.wire(), "resources": {**spec.wire()["resources"],
                                                                             "backend": "pytorchjob"}})  # fmt: skip
    run = make_plan(spec).runs[2]
    tj = run_job(spec, name, "uid-1", "ns", run, attempt=3)
    pt = run_job(pt_spec, name, "uid-1", "ns", run, attempt=3)
    assert tj["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and tj["kind"] == "TrainJob"
    assert pt["kind"] == "PyTorchJob"
    assert tj["metadata"] == pt["metadata"]  # name, namespace, labels, owner reference
    (container,) = pt["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
    trainer = tj["spec"]["trainer"]
    assert trainer["image"] == container["image"]
    assert trainer["command"] == container["command"] and trainer["args"] == container["args"]
    assert trainer["resourcesPerNode"] == container["resources"]
    assert trainer["numNodes"] == 1 and trainer["numProcPerNode"] == run.gpus == 8
    assert tj["spec"]["runtimeRef"] == {"name": DEFAULT_TRAINING_RUNTIME, "apiGroup": "trainer.kubeflow.org",
                                        "kind": "ClusterTrainingRuntime"}  # fmt: skip
    assert tj["spec"]["suspend"] is False
    pod = pod_patch(tj)
    pt_pod = pt["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    assert pod["metadata"] == pt_pod["metadata"]  # the labels pods.py selects on, the scrape annotations
    assert pod["spec"]["terminationGracePeriodSeconds"] == pt_pod["spec"]["terminationGracePeriodSeconds"]
    # no env in the node container's patch: the v2 webhook refuses it (the trainer's env carries it);
    # the restricted pod security (podsecurity.py) as the PyTorchJob's
    (node,) = pod["spec"]["containers"]
    assert "env" not in node and node["securityContext"] == container["securityContext"]
    assert node["volumeMounts"] == container["volumeMounts"] and pod["spec"]["volumes"] == pt_pod["spec"]["volumes"]
    assert pod["spec"]["securityContext"] == pt_pod["spec"]["securityContext"]
    # the same store credential keys of the same Secret (one optional key per variable the store reads), and HOME
    assert trainer["env"] == container["env"]


def test_credentials_become_optional_secret_keys_not_env_from() -> None:
    name, spec = example()
    spec.store.credentials_secret = "team-s3"
    run = make_plan(spec).runs[0]
    env = [
        e
        for e in trainjob(spec, name, "u", "ns", run)["spec"]["trainer"]["env"]
        if e["name"] not in ("HOME", "OMP_NUM_THREADS")
    ]
    assert [e["name"] for e in env] == list(CREDENTIAL_ENV)
    for e in env:
        assert e["valueFrom"] == {"secretKeyRef": {"name": "team-s3", "key": e["name"], "optional": True}}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_REGION"} <= set(CREDENTIAL_ENV)


def test_node_selector_and_queue_labels_and_suspend() -> None:
    name, spec = example(nodeSelector={"pool": "h100"}, queueName="team-a", priorityClassName="exploratory")
    run = make_plan(spec).runs[0]
    tj = trainjob(spec, name, "u", "ns", run)
    assert tj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert tj["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "exploratory"
    assert tj["spec"]["suspend"] is True  # Kueue unsuspends it on admission
    pod = pod_patch(tj)
    assert pod["spec"]["nodeSelector"] == {"pool": "h100"}
    assert "kueue.x-k8s.io/queue-name" not in pod["metadata"]["labels"]  # the job's label, not the pods'


def test_a_run_over_nodes_is_num_nodes_pods_under_torchrun() -> None:
    """A PyTorchJob's pods of one GPU run `python -m` (the training-operator sets RANK and WORLD_SIZE);
    a TrainJob's pods get only PET_*, so a run over several nodes runs torchrun even at one GPU each."""
    name, spec = example(gpusPerRun=16, nodeGpus=8, nodes=2)
    run = make_plan(spec).runs[0]
    trainer = trainjob(spec, name, "u", "ns", run)["spec"]["trainer"]
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 8
    assert trainer["command"][0] == "torchrun"
    name, spec = example(gpusPerRun=2, nodeGpus=1, nodes=2)
    run = make_plan(spec).runs[0]
    tj = trainjob(spec, name, "u", "ns", run)["spec"]["trainer"]
    pt = pytorchjob(spec, name, "u", "ns", run)["spec"]["pytorchReplicaSpecs"]["Master"]
    assert tj["numNodes"] == 2 and tj["numProcPerNode"] == 1 and tj["command"][0] == "torchrun"
    assert pt["template"]["spec"]["containers"][0]["command"][:2] == ["python", "-m"]
    name, spec = example(gpusPerRun=1, nodeGpus=1)  # on an 8-GPU node, 7 would idle: over the example's budget
    run = make_plan(spec).runs[0]
    assert trainjob(spec, name, "u", "ns", run)["spec"]["trainer"]["command"][:2] == ["python", "-m"]


def test_suspend_patches_address_each_kind() -> None:
    trainjobs, pytorchjobs = backend_for(Backend.trainjob), backend_for(Backend.pytorchjob)
    assert trainjobs.suspend_patch(True) == {"spec": {"suspend": True}}
    assert pytorchjobs.suspend_patch(False) == {"spec": {"runPolicy": {"suspend": False}}}
    assert by_kind("TrainJob") is trainjobs and by_kind("PyTorchJob") is pytorchjobs


# ---------------------------------------------------------------- the one mapping of job status


def trainjob_obj(conditions: list[dict[str, Any]] | None = None, jobs_status: list[dict[str, Any]] | None = None,
                 suspend: bool = False) -> dict[str, Any]:  # fmt: skip
    return {
        "kind": "TrainJob",
        "metadata": {
            "name": "s-d2",
            "uid": "u2",
            "labels": {"miniseries.dev/run": "d2", "miniseries.dev/attempt": "2"},
            "creationTimestamp": "2026-12-06T10:00:00Z",
        },
        "spec": {"suspend": suspend},
        "status": {"conditions": conditions or [], "jobsStatus": jobs_status or []},
    }


def cond(kind: str, status: str = "True", reason: str = "", message: str = "") -> dict[str, Any]:
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-12-06T10:05:00Z"}  # fmt: skip


@pytest.mark.parametrize(
    ("obj", "phase"),
    [
        (trainjob_obj(), JobPhase.Created),
        (trainjob_obj(jobs_status=[{"name": "node", "active": 1, "ready": 0}]), JobPhase.Created),
        (trainjob_obj(jobs_status=[{"name": "node", "active": 1, "ready": 1}]), JobPhase.Running),
        (trainjob_obj([cond("Suspended", reason="Suspended")], suspend=True), JobPhase.Suspended),
        (trainjob_obj([cond("Suspended", "False", "Resumed")], [{"name": "node", "ready": 1}]), JobPhase.Running),
        (trainjob_obj([cond("Complete", reason="AllJobsCompleted")]), JobPhase.Succeeded),
        (
            trainjob_obj(
                [cond("Failed", reason="FailedJobs", message="jobset failed due to one or more job failures")]
            ),
            JobPhase.Failed,
        ),
        # the controller keeps Suspended True's successor False; a failure wins over everything
        (
            trainjob_obj([cond("Suspended", "False", "Resumed"), cond("Failed", reason="DeadlineExceeded")]),
            JobPhase.Failed,
        ),
    ],
    ids=["new", "pods-starting", "pods-ready", "suspended", "resumed-running", "complete", "failed", "deadline"],
)
def test_trainjob_status_maps_into_the_same_phases(obj: dict[str, Any], phase: JobPhase) -> None:
    job = observe_job(obj)
    assert job.phase is phase and job.kind == "TrainJob" and job.run == "d2" and job.attempt == 2
    assert job.suspended == bool(obj["spec"]["suspend"])
    if phase is JobPhase.Failed:
        failed = next(c for c in obj["status"]["conditions"] if c["type"] == "Failed")
        assert job.reason == failed["reason"] and job.message == failed["message"]


def test_pytorchjob_mapping_is_unchanged() -> None:
    obj = {"kind": "PyTorchJob", "metadata": {"name": "s-d2", "labels": {"miniseries.dev/run": "d2"}},
           "spec": {"runPolicy": {"suspend": True}},
           "status": {"conditions": [cond("Created"), cond("Running", "False"), cond("Suspended")]}}  # fmt: skip
    job = observe_job(obj)
    assert job.phase is JobPhase.Suspended and job.suspended and job.kind == "PyTorchJob"
    obj.pop("kind")  # objects from a list carry no kind: observe.owned_jobs sets it; alone it means PyTorchJob
    assert observe_job(obj).kind == "PyTorchJob"


def test_a_trainjobs_workload_is_matched_by_its_owner() -> None:
    wl = {"metadata": {"name": "trainjob-s-d2-abc", "ownerReferences": [
        {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob", "name": "s-d2", "uid": "u2"}]},
        "spec": {"active": True}, "status": {"conditions": [cond("Admitted")]}}  # fmt: skip
    observed = observe_workload(wl)
    assert observed is not None and observed.job == "s-d2" and observed.job_uid == "u2"


def test_a_backend_the_operator_does_not_serve_is_refused_naming_the_field() -> None:
    from miniseries.control.io import observe

    _, spec = example()
    err = observe.backend_problem(spec, (Backend.pytorchjob,))
    assert err is not None
    (problem,) = err.problems
    assert problem.field == "spec.resources.backend" and "serves: pytorchjob" in str(problem)
    served = parse_backends(["pytorchjob", "trainjob", "trainjob"])
    assert observe.backend_problem(spec, served) is None
    assert [k.kind for k in observe.served_kinds(served)] == ["PyTorchJob", "TrainJob"]


def test_a_queued_trainjob_is_refused_naming_the_queue_until_kueue_can_start_one() -> None:
    """tests/e2e/test_trainjob_kueue.py: the tested Kueue admits TrainJobs but no pod starts, so the
    operator refuses the combination before it creates a job; a queued PyTorchJob is still fine."""
    from miniseries.control.io import observe

    _, spec = example()
    served = (Backend.pytorchjob, Backend.trainjob)
    queued = spec.model_copy(update={"resources": spec.resources.model_copy(update={"queue_name": "team-a"})})
    err = observe.backend_problem(queued, served)
    assert err is not None
    (problem,) = err.problems
    assert problem.field == "spec.resources.queueName" and "allowed: backend pytorchjob" in str(problem)
    as_pytorchjob = queued.resources.model_copy(update={"backend": Backend.pytorchjob})
    assert observe.backend_problem(queued.model_copy(update={"resources": as_pytorchjob}), served) is None


def test_a_failed_trainjob_being_deleted_stays_retrying_and_its_retry_is_the_next_attempt() -> None:
    """Found on the real trainer (tests/e2e/test_trainjob.py's kill test): once the operator deletes a
    Failed TrainJob (foreground: the JobSet goes first), the trainer controller re-reads the JobSet,
    finds none, and drops the Failed condition, so the deleting TrainJob reads as new. Its run must
    stay Retrying (not Pending), and the retry must be attempt 2, counted against retryLimit."""
    from datetime import UTC, datetime, timedelta

    from miniseries.api.spec import RunState
    from miniseries.control.decide import runs

    _, spec = example(gpusPerRun=8, nodeGpus=8, parallelism=1)
    spec = spec.model_copy(update={"depths": [12]})
    plan = make_plan(spec)
    now = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
    failed = trainjob_obj(
        [cond("Failed", reason="FailedJobs", message="jobset failed due to one or more job failures")]
    )
    failed["metadata"]["name"] = "s-d12"
    failed["metadata"]["labels"].update({"miniseries.dev/run": "d12", "miniseries.dev/attempt": "1"})
    d = runs.decide_runs(spec, "s", plan, [observe_job(failed)], {}, [], runs.TokenizerState.NotNeeded, now)
    (r,) = d.runs
    assert r.state is RunState.Retrying and r.attempts == 1 and d.delete == ["s-d12"]
    going = trainjob_obj([cond("Suspended", "False", "Resumed")])  # Failed dropped, JobSet gone
    going["metadata"].update(name="s-d12", deletionTimestamp="2026-12-06T18:00:01Z")
    going["metadata"]["labels"].update({"miniseries.dev/run": "d12", "miniseries.dev/attempt": "1"})
    assert observe_job(going).phase is JobPhase.Created  # what the mapping alone sees
    d = runs.decide_runs(spec, "s", plan, [observe_job(going)], {}, d.runs, runs.TokenizerState.NotNeeded,
                         now + timedelta(seconds=1))  # fmt: skip
    (r,) = d.runs
    assert r.state is RunState.Retrying and d.create == [] and d.events == []
    later = now + timedelta(seconds=runs.RetryTimings().backoff_seconds(1) + 5)
    d = runs.decide_runs(spec, "s", plan, [], {}, d.runs, runs.TokenizerState.NotNeeded, later)
    assert [(p.name, a) for p, a in d.create] == [("d12", 2)]
