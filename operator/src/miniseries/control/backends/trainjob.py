"""The TrainJob backend: a run is a Kubeflow Trainer v2 TrainJob (trainer.kubeflow.org/v1alpha1) on a
JobSet, referencing a ClusterTrainingRuntime: the same image, command, args, resources, node count and
processes per node as a PyTorchJob; what a TrainJob cannot say itself (pod labels, annotations, node
selector, grace period) travels in its runtimePatches under the operator's manager name.
"""

from __future__ import annotations

from typing import Any

from miniseries.api.spec import Backend, PlannedRun, ScalingSweepSpec
from miniseries.control.backends.job_backend import Condition, JobBackend, JobPhase
from miniseries.control.backends.manifests import created_suspended, run_job_metadata, run_labels
from miniseries.control.backends.pod_template import (
    gpus_per_pod,
    pod_resources,
    scrape_annotations,
    termination_grace_seconds,
    trainer_container,
    trainer_env,
)
from miniseries.control.backends.podsecurity import (
    TRAINER_HOME,
    container_security_context,
    pod_security_context,
    scratch_mounts,
    scratch_volumes,
)
from miniseries.plan.trainer_argv import DEFAULT_METRICS_PORT

#: The replicated job (and its container) that a torch ClusterTrainingRuntime trains in: the torch
#: plugin puts the PET_* env into the container of this name, of the job labelled as the trainer.
TRAINJOB_NODE = "node"
#: runtimePatches are keyed by manager (Kueue adds its own, kueue.x-k8s.io/manager): the operator's.
RUNTIME_PATCH_MANAGER = "miniseries.dev/operator"


class TrainJobBackend(JobBackend):
    backend = Backend.trainjob
    kind = "TrainJob"
    group = "trainer.kubeflow.org"
    version = "v1alpha1"
    plural = "trainjobs"
    #: Background. Under Foreground the TrainJob waits, with a foregroundDeletion finalizer, for its
    #: JobSet to go, but Trainer v2.3.0 keeps reconciling the terminating TrainJob and creates the
    #: JobSet again each time the garbage collector deletes it: a CI run saw a killed run's TrainJob
    #: stay Terminating for 17 minutes while ~400 pods were made and removed. Background removes the
    #: TrainJob at once, so nothing recreates its JobSet, and the collector takes the JobSet, its Job
    #: and pods after it. Should the next attempt's TrainJob (same name) meet the old JobSet still
    #: there, the trainer's apply would change its pod template (the attempt label), which JobSet's
    #: webhook refuses for a JobSet that is not suspended: the trainer retries until the collector
    #: has removed the old one.
    delete_propagation = "Background"
    #: Trainer v2.3 sets only Suspended, Complete and Failed (the last two copied from its JobSet's
    #: Completed/Failed, reason and message included). Nothing says "running": see `phase`.
    condition_phases = (("Complete", JobPhase.Succeeded), ("Failed", JobPhase.Failed),
                        ("Suspended", JobPhase.Suspended))  # fmt: skip

    def manifest(
        self,
        spec: ScalingSweepSpec,
        sweep: str,
        uid: str,
        namespace: str,
        run: PlannedRun,
        *,
        attempt: int = 1,
        metrics_port: int = DEFAULT_METRICS_PORT,
    ) -> dict[str, Any]:
        return trainjob(spec, sweep, uid, namespace, run, attempt=attempt, metrics_port=metrics_port)

    def phase(self, obj: dict[str, Any]) -> tuple[JobPhase, Condition | None]:
        """The conditions first; then status.jobsStatus, the JobSet's per-replicated-job counts: a job
        whose pods are all ready (`ready`, JobSet's count of Jobs with ready + succeeded pods >=
        parallelism) is Running, one with active pods not yet ready is Created (its pods are scheduled
        or starting: pod_troubles.py says why one cannot start). No Restarting: the operator's runtime
        lets no JobSet restart (the runtime's failurePolicy), and a TrainJob has no condition for one."""
        phase, cond = super().phase(obj)
        if cond is not None:
            return phase, cond
        status = obj.get("status") or {}
        if any((j.get("ready") or 0) > 0 for j in status.get("jobsStatus") or []):
            # the Resumed condition (Suspended False) is the only transition time a TrainJob records
            resumed = next((c for c in status.get("conditions") or [] if c.get("type") == "Suspended"), None)
            return JobPhase.Running, resumed
        return JobPhase.Created, None

    def suspended(self, obj: dict[str, Any]) -> bool:
        return bool((obj.get("spec") or {}).get("suspend"))

    def suspend_patch(self, suspend: bool) -> dict[str, Any]:
        return {"spec": {"suspend": suspend}}


TRAINJOB = TrainJobBackend()


def trainjob_phase(status: dict[str, Any]) -> tuple[JobPhase, Condition | None]:
    """A TrainJob's phase from its status (conditions, then jobsStatus)."""
    return TRAINJOB.phase({"status": status})


def node_patch(spec: ScalingSweepSpec, sweep: str, run: PlannedRun, attempt: int, metrics_port: int) -> dict[str, Any]:
    """The operator's runtimePatch of the runtime's `node` job: what the TrainJob cannot say itself.

    Restricted pods (podsecurity.py): the runtime's pods get the security contexts and scratch volumes
    here; automountServiceAccountToken is no patchable field (the chart's runtime sets it)."""
    pod_spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": termination_grace_seconds(spec, run),
        "securityContext": pod_security_context(),
        "volumes": scratch_volumes(),
        "containers": [
            {"name": TRAINJOB_NODE, "securityContext": container_security_context(), "volumeMounts": scratch_mounts()}
        ],
    }
    if spec.resources.node_selector:
        pod_spec["nodeSelector"] = dict(spec.resources.node_selector)
    metadata = {"labels": run_labels(sweep, run, attempt), "annotations": scrape_annotations(metrics_port)}
    return {"name": TRAINJOB_NODE, "template": {"spec": {"template": {"metadata": metadata, "spec": pod_spec}}}}


def trainjob(
    spec: ScalingSweepSpec,
    sweep: str,
    uid: str,
    namespace: str,
    run: PlannedRun,
    *,
    attempt: int = 1,
    metrics_port: int = DEFAULT_METRICS_PORT,
) -> dict[str, Any]:
    """The Trainer v2 TrainJob that trains one planned run: `trainer.numNodes` pods (one per node the run
    spans) of `numProcPerNode` processes, from the ClusterTrainingRuntime spec.resources names.

    The trainer section carries what the PyTorchJob's container does: image, the same command
    (torchrun reads the PET_* env the v2 torch plugin sets: PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK
    from the Job's completion index, PET_MASTER_ADDR the first pod's name under the JobSet's headless
    Service, port 29500; a single process needs none of it), args, env, resourcesPerNode. The rest
    goes into one runtimePatch (manager `miniseries.dev/operator`) on the runtime's `node` job
    (`node_patch`): the pod labels (the sweep label pods.py lists by, run, attempt), the scrape
    annotations, the node selector and the grace period. Kueue: the queue labels on the TrainJob and
    `spec.suspend`, as for a PyTorchJob; Kueue adds its own runtimePatch on admission.

    What the runtime decides, not this manifest (the chart's miniseries-torch-distributed sets each
    as the PyTorchJob path has it; another runtime may not): restartPolicy and the Job's backoffLimit
    (0: the operator retries, from the checkpoint), terminationMessagePolicy FallbackToLogsOnError,
    the named `metrics` container port, imagePullPolicy (spec.resources.imagePullPolicy has no
    TrainJob field), and how the JobSet fails (any Job failed: the TrainJob Failed).
    """
    res = spec.resources
    image, command, args = trainer_container(
        spec, sweep, uid, namespace, run, metrics_port, torchrun_for_nodes=run.nodes > 1
    )
    trainer: dict[str, Any] = {
        "image": image,
        "command": command,
        "args": args,
        "numNodes": run.nodes,
        "numProcPerNode": gpus_per_pod(run),
        "resourcesPerNode": pod_resources(spec, run),
        "env": [*trainer_env(spec, run), {"name": "HOME", "value": TRAINER_HOME}],
    }
    patch = {
        "manager": RUNTIME_PATCH_MANAGER,
        "trainingRuntimeSpec": {
            "template": {"spec": {"replicatedJobs": [node_patch(spec, sweep, run, attempt, metrics_port)]}}
        },
    }
    return {
        "apiVersion": TRAINJOB.api_version,
        "kind": TRAINJOB.kind,
        "metadata": run_job_metadata(spec, sweep, uid, namespace, run, attempt),
        "spec": {
            "runtimeRef": {"name": res.runtime_name, "apiGroup": TRAINJOB.group, "kind": "ClusterTrainingRuntime"},
            "suspend": created_suspended(spec),
            "trainer": trainer,
            "runtimePatches": [patch],
        },
    }
