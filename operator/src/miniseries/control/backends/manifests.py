"""Kubernetes manifests for one sweep: a PyTorchJob per planned run, a Job for the tokenizer.

Pure functions of the spec and plan (no API calls), so the exact object the
operator creates is unit-tested and a restart renders byte-identical manifests.

Choices worth knowing:
- Job names are deterministic, `<sweep>-<run>` (d12, or d12-f1e18 in isoflop
  mode). A retry *reuses* the name after the failed job is deleted (foreground,
  and only recreated once it is gone): a suffix like `-a3` would overflow the
  63-character DNS-1035 limit for a 50-character sweep name with an isoflop run
  id, and one name per run means "create, 409 means it exists" stays idempotent.
  The attempt number travels in the `miniseries.dev/attempt` label.
- runPolicy.backoffLimit is 0: restarts are ours, because ours pass
  `--resume=auto` and back off exponentially, where the training-operator would
  restart pods blindly.
- cleanPodPolicy Running: when a job ends, pods still running (stragglers
  holding GPUs) are deleted; terminated pods stay, so `kubectl logs` still
  explains a failure until the job itself is deleted for a retry.
- With spec.resources.queueName every job carries Kueue's queue (and priority) label and is
  created suspended: Kueue unsuspends it on admission (`kueue_labels`, `created_suspended`).
- terminationGracePeriodSeconds is sized for a preemption (`termination_grace_seconds`):
  on SIGTERM the trainer finishes its step and writes a checkpoint before it exits.
- A run of more GPUs than a node has (plan: `run.nodes` > 1) is one Master and
  `nodes - 1` Workers, each pod on its own node with `gpus / nodes` GPUs, the same
  container, env and args. The training-operator gives every pod MASTER_ADDR/PORT
  (the Master's Service, port 23456), WORLD_SIZE (pods x nprocPerNode), RANK and
  PET_NODE_RANK (Master 0, Worker i: i + 1), PET_NNODES, PET_NPROC_PER_NODE and
  PET_MASTER_ADDR/PORT. A pod of one GPU runs `python -m` (those are torch's env
  as they stand: one process per pod is one rank); a pod of more runs torchrun,
  which reads the PET_* variables and starts one rank per GPU with RANK,
  LOCAL_RANK and WORLD_SIZE of its own.
- With spec.resources.backend `trainjob` a run is a Kubeflow Trainer v2 TrainJob instead (`trainjob`):
  the same image, command, args, resources, node count and processes per node, referencing a
  ClusterTrainingRuntime; what a TrainJob cannot say itself (pod labels, annotations, node selector,
  grace period) travels in its runtimePatches under the operator's manager name. Its differences
  from a PyTorchJob are in `trainjob`'s docstring.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

from miniseries.api.spec import API_VERSION, KIND, Backend, PlannedRun, ScalingSweepSpec
from miniseries.contract.layout import SweepLayout
from miniseries.contract.preemption import checkpoint_bytes
from miniseries.contract.store.s3 import CREDENTIAL_ENV
from miniseries.control.backends.podsecurity import (
    TRAINER_HOME,
    container_security_context,
    pod_security_context,
    restrict,
    scratch_mounts,
    scratch_volumes,
)
from miniseries.plan.run_shape import shape_for
from miniseries.plan.trainer_argv import (
    DEFAULT_METRICS_PORT,
    TOKENIZER_MODULE,
    TRAINER_MODULE,
    tokenizer_flags,
    trainer_flags,
)

PYTORCHJOB_GROUP = "kubeflow.org"
PYTORCHJOB_VERSION = "v1"
PYTORCHJOB_PLURAL = "pytorchjobs"
TRAINJOB_GROUP = "trainer.kubeflow.org"
TRAINJOB_VERSION = "v1alpha1"
TRAINJOB_PLURAL = "trainjobs"
#: The replicated job (and its container) that a torch ClusterTrainingRuntime trains in: the torch
#: plugin puts the PET_* env into the container of this name, of the job labelled as the trainer.
TRAINJOB_NODE = "node"
#: runtimePatches are keyed by manager (Kueue adds its own, kueue.x-k8s.io/manager): the operator's.
RUNTIME_PATCH_MANAGER = "miniseries.dev/operator"


@dataclass(frozen=True)
class JobKind:
    """One backend's job resource: what the operator creates, lists, deletes and suspends."""

    backend: Backend
    kind: str
    group: str
    version: str
    plural: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def delete_propagation(self) -> str:
        """How the operator deletes a job of this kind.

        PyTorchJob: Foreground, so its pods go first and a retried run's slot is held until then.
        TrainJob: Background. Under Foreground the TrainJob waits, with a foregroundDeletion
        finalizer, for its JobSet to go, but Trainer v2.3.0 keeps reconciling the terminating
        TrainJob and creates the JobSet again each time the garbage collector deletes it: a CI run
        saw a killed run's TrainJob stay Terminating for 17 minutes while ~400 pods were made and
        removed. Background removes the TrainJob at once, so nothing recreates its JobSet, and the
        collector takes the JobSet, its Job and pods after it. Should the next attempt's TrainJob
        (same name) meet the old JobSet still there, the trainer's apply would change its pod
        template (the attempt label), which JobSet's webhook refuses for a JobSet that is not
        suspended: the trainer retries until the collector has removed the old one."""
        return "Background" if self.backend is Backend.trainjob else "Foreground"

    def suspend_patch(self, suspend: bool) -> dict[str, Any]:
        """The merge patch that suspends (or resumes) a job of this kind."""
        if self.backend is Backend.trainjob:
            return {"spec": {"suspend": suspend}}
        return {"spec": {"runPolicy": {"suspend": suspend}}}


PYTORCHJOB = JobKind(Backend.pytorchjob, "PyTorchJob", PYTORCHJOB_GROUP, PYTORCHJOB_VERSION, PYTORCHJOB_PLURAL)
TRAINJOB = JobKind(Backend.trainjob, "TrainJob", TRAINJOB_GROUP, TRAINJOB_VERSION, TRAINJOB_PLURAL)
JOB_KINDS: dict[Backend, JobKind] = {PYTORCHJOB.backend: PYTORCHJOB, TRAINJOB.backend: TRAINJOB}
#: By `kind`: what an object read back (or a Workload's owner) is.
BY_KIND: dict[str, JobKind] = {k.kind: k for k in JOB_KINDS.values()}

LABEL_SWEEP = "miniseries.dev/sweep"
LABEL_RUN = "miniseries.dev/run"
LABEL_DEPTH = "miniseries.dev/depth"
LABEL_ATTEMPT = "miniseries.dev/attempt"
LABEL_COMPONENT = "miniseries.dev/component"
MAX_NAME = 63
# Kueue (spec.resources.queueName): the LocalQueue and WorkloadPriorityClass a job is queued with.
LABEL_KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
LABEL_KUEUE_PRIORITY = "kueue.x-k8s.io/priority-class"

#: Checkpoint bytes per second assumed when sizing the grace period: the trainer's own save
#: (torch.save, sha256, the store's write) measured by bench/preemption.py on the 2-core dev box
#: under load 11-14, three runs: 127-192 MB/s to a local disk, 55-101 MB/s to S3 (versitygw on
#: loopback); the slowest S3 run, rounded down. A GPU node writes faster, so the grace period errs
#: long, which costs nothing: the pod exits as soon as its checkpoint is written.
CHECKPOINT_WRITE_BYTES_PER_SECOND = 50e6
#: Margin on the estimate, and seconds for what is not the write: the stop is noticed after the
#: step in flight, the process group is torn down, the interpreter exits.
GRACE_MARGIN = 1.5
GRACE_FIXED_SECONDS = 30
#: Kubernetes' own default: never less.
MIN_GRACE_SECONDS = 30


def termination_grace_seconds(spec: ScalingSweepSpec, run: PlannedRun) -> int:
    """Seconds a trainer pod gets between SIGTERM and SIGKILL: enough to finish the step in flight
    and write a checkpoint (miniseries_trainer/preemption.py), so a preemption loses no step.

        GRACE_MARGIN x (one step + checkpoint bytes / CHECKPOINT_WRITE_BYTES_PER_SECOND) + GRACE_FIXED_SECONDS

    The step is the plan's own estimate (est_hours / steps: FLOPs over GPUs x peak x assumed MFU).
    The bytes are all ranks' files together (`checkpoint_bytes`: fp32 weights, AdamW's moments once,
    Muon's sharded momentum) as if written one after another, although each rank writes its own
    files at once: that covers ranks that share one NIC or disk. A d20 with the default model dials
    on 8 GPUs: 4.15 GB, ~83 s at 50 MB/s, a ~1 s step: 157 s (bench/preemption.py prints it).
    """
    step_seconds = run.est_hours * 3600.0 / run.steps if run.steps else 0.0
    write_seconds = checkpoint_bytes(shape_for(spec, run.depth)) / CHECKPOINT_WRITE_BYTES_PER_SECOND
    return max(MIN_GRACE_SECONDS, math.ceil(GRACE_MARGIN * (step_seconds + write_seconds) + GRACE_FIXED_SECONDS))


def job_name(sweep: str, run: str) -> str:
    name = f"{sweep}-{run}"
    # api.SWEEP_NAME_RE caps sweep names at 50 so this holds for every run id plan.run_name makes.
    if len(name) > MAX_NAME:
        raise ValueError(f"job name {name!r} is longer than {MAX_NAME} characters")
    return name


def tokenizer_job_name(sweep: str) -> str:
    return f"{sweep}-tokenizer"


def owner_reference(sweep: str, uid: str) -> dict[str, Any]:
    """The sweep owns its jobs: deleting it garbage-collects them."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": sweep,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def kueue_labels(spec: ScalingSweepSpec) -> dict[str, str]:
    """The labels that put a job in the sweep's Kueue LocalQueue (none without spec.resources.queueName)."""
    res = spec.resources
    if res.queue_name is None:
        return {}
    labels = {LABEL_KUEUE_QUEUE: res.queue_name}
    if res.priority_class_name is not None:
        labels[LABEL_KUEUE_PRIORITY] = res.priority_class_name
    return labels


def created_suspended(spec: ScalingSweepSpec) -> bool:
    """A queued job is created suspended: Kueue unsuspends it when it admits it (and suspends it
    again when it evicts it); without a queue, a job is suspended when the sweep is."""
    return spec.resources.queue_name is not None or bool(spec.suspend)


def gpus_per_pod(run: PlannedRun) -> int:
    """GPUs (and trainer processes) in each of a run's pods: one pod per node the run spans."""
    return run.gpus // run.nodes


def trainer_command(processes: int, grace_seconds: int = 30, *, torchrun_for_nodes: bool = False) -> list[str]:
    """One process per pod: the trainer itself, its rank and world from the training-operator's env
    (a TrainJob's pods get no RANK/WORLD_SIZE, only PET_*: `torchrun_for_nodes` for a run over
    several nodes starts torchrun there even for one process per pod).
    More: torchrun, which reads PET_NNODES, PET_NODE_RANK, PET_NPROC_PER_NODE and PET_MASTER_ADDR/PORT.
    Its `--` ends torchrun's own options: without it argparse reads the trainer's flags as abbreviations
    of torchrun's (`--run=d2` is "ambiguous: --run-path, --run_path") and torchrun exits with usage.
    On SIGTERM torchrun passes the signal on and SIGKILLs its workers after --shutdown-timeout (30 s by
    default), shorter than a large checkpoint's write: it gets the pod's grace period, less a margin
    for its own exit, so a preempted worker finishes its checkpoint. (torchrun exits 1 whatever its
    workers' codes: runs.preempted_exit reads the attempt's progress.json instead.)"""
    if processes == 1 and not torchrun_for_nodes:
        return ["python", "-m", TRAINER_MODULE]
    return ["torchrun", f"--shutdown-timeout={max(grace_seconds - 10, 30)}", "-m", "--", TRAINER_MODULE]


def replica_specs(template: dict[str, Any], nodes: int) -> dict[str, Any]:
    """Master (rank 0's node) and, for a run over several nodes, nodes - 1 Workers from the same template."""
    specs = {"Master": {"replicas": 1, "restartPolicy": "Never", "template": template}}
    if nodes > 1:
        specs["Worker"] = {"replicas": nodes - 1, "restartPolicy": "Never", "template": copy.deepcopy(template)}
    return specs


def run_labels(sweep: str, run: PlannedRun, attempt: int) -> dict[str, str]:
    """The labels of a run's job and of every one of its pods (pods.py and the PodMonitor select on them)."""
    return {
        LABEL_SWEEP: sweep,
        LABEL_RUN: run.name,
        LABEL_DEPTH: str(run.depth),
        LABEL_ATTEMPT: str(attempt),
        LABEL_COMPONENT: "trainer",
    }


def scrape_annotations(metrics_port: int) -> dict[str, str]:
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(metrics_port), "prometheus.io/path": "/metrics"}


def pod_resources(spec: ScalingSweepSpec, run: PlannedRun) -> dict[str, Any]:
    """Requests and limits of each of a run's pods (one per node it spans)."""
    res, gpus = spec.resources, str(gpus_per_pod(run))
    return {
        "requests": {"cpu": res.cpu, "memory": res.memory, "nvidia.com/gpu": gpus},
        "limits": {"nvidia.com/gpu": gpus},
    }


def pytorchjob(
    spec: ScalingSweepSpec,
    sweep: str,
    uid: str,
    namespace: str,
    run: PlannedRun,
    *,
    attempt: int = 1,
    metrics_port: int = DEFAULT_METRICS_PORT,
) -> dict[str, Any]:
    """The PyTorchJob that trains one planned run (one node: the Master only; more: Master + Workers)."""
    res = spec.resources
    labels = run_labels(sweep, run, attempt)
    container: dict[str, Any] = {
        "name": "pytorch",  # the training-operator finds the container by this name
        "image": res.image,
        "imagePullPolicy": res.image_pull_policy,
        "command": trainer_command(gpus_per_pod(run), termination_grace_seconds(spec, run)),
        "args": trainer_flags(spec, SweepLayout(namespace, sweep), run, metrics_port=metrics_port, sweep_uid=uid),
        "env": credential_env(spec),  # only the store credential keys, never the whole Secret (issue 27)
        # a failed trainer's last log lines land in its status, where the operator reads them (pods.py)
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "ports": [{"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"}],
        "resources": pod_resources(spec, run),
    }
    pod_spec: dict[str, Any] = restrict({"containers": [container], "restartPolicy": "Never"})
    if res.node_selector:
        pod_spec["nodeSelector"] = dict(res.node_selector)
    pod_spec["terminationGracePeriodSeconds"] = termination_grace_seconds(spec, run)
    template = {
        "metadata": {"labels": dict(labels), "annotations": scrape_annotations(metrics_port)},
        "spec": pod_spec,
    }
    return {
        "apiVersion": PYTORCHJOB.api_version,
        "kind": PYTORCHJOB.kind,
        "metadata": {
            "name": job_name(sweep, run.name),
            "namespace": namespace,
            "labels": {**labels, **kueue_labels(spec)},
            "ownerReferences": [owner_reference(sweep, uid)],
        },
        "spec": {
            "nprocPerNode": str(gpus_per_pod(run)),
            "runPolicy": {
                "backoffLimit": 0,
                "cleanPodPolicy": "Running",
                "suspend": created_suspended(spec),
            },
            "pytorchReplicaSpecs": replica_specs(template, run.nodes),
        },
    }


def credential_env(spec: ScalingSweepSpec) -> list[dict[str, Any]]:
    """The store credentials as env entries, one optional secretKeyRef per variable the store reads
    (CREDENTIAL_ENV), for every container the operator creates. Never envFrom: every key of the Secret
    would reach the trainer, and a MINISERIES_<FLAG> key there would change training without a spec
    change (issue 27). (A TrainJob's trainer also has `env` but no `envFrom`, and runtimePatches may not
    add env to the trainer's container.) A key the Secret lacks is left unset; a key the Secret has
    beyond these does not reach the trainer."""
    secret = spec.store.credentials_secret
    if not secret:
        return []
    return [{"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": k, "optional": True}}}
            for k in CREDENTIAL_ENV]  # fmt: skip


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
    goes into one runtimePatch (manager `miniseries.dev/operator`) on the runtime's `node` job: the
    pod labels (the sweep label pods.py lists by, run, attempt), the scrape annotations, the node
    selector and the grace period. Kueue: the queue labels on the TrainJob and `spec.suspend`, as for
    a PyTorchJob; Kueue adds its own runtimePatch on admission.

    What the runtime decides, not this manifest (the chart's miniseries-torch-distributed sets each
    as the PyTorchJob path has it; another runtime may not): restartPolicy and the Job's backoffLimit
    (0: the operator retries, from the checkpoint), terminationMessagePolicy FallbackToLogsOnError,
    the named `metrics` container port, imagePullPolicy (spec.resources.imagePullPolicy has no
    TrainJob field), and how the JobSet fails (any Job failed: the TrainJob Failed).
    """
    res = spec.resources
    labels = run_labels(sweep, run, attempt)
    grace = termination_grace_seconds(spec, run)
    # restricted (podsecurity.py): the runtime's pods get the security contexts and scratch volumes
    # here; automountServiceAccountToken is no patchable field (the chart's runtime sets it)
    pod_spec_patch: dict[str, Any] = {
        "terminationGracePeriodSeconds": grace,
        "securityContext": pod_security_context(),
        "volumes": scratch_volumes(),
        "containers": [
            {"name": TRAINJOB_NODE, "securityContext": container_security_context(), "volumeMounts": scratch_mounts()}
        ],
    }
    if res.node_selector:
        pod_spec_patch["nodeSelector"] = dict(res.node_selector)
    node_patch = {
        "name": TRAINJOB_NODE,
        "template": {
            "spec": {
                "template": {
                    "metadata": {"labels": dict(labels), "annotations": scrape_annotations(metrics_port)},
                    "spec": pod_spec_patch,
                }
            }
        },
    }
    trainer: dict[str, Any] = {
        "image": res.image,
        "command": trainer_command(gpus_per_pod(run), grace, torchrun_for_nodes=run.nodes > 1),
        "args": trainer_flags(spec, SweepLayout(namespace, sweep), run, metrics_port=metrics_port, sweep_uid=uid),
        "numNodes": run.nodes,
        "numProcPerNode": gpus_per_pod(run),
        "resourcesPerNode": pod_resources(spec, run),
    }
    trainer["env"] = [*credential_env(spec), {"name": "HOME", "value": TRAINER_HOME}]
    return {
        "apiVersion": TRAINJOB.api_version,
        "kind": TRAINJOB.kind,
        "metadata": {
            "name": job_name(sweep, run.name),
            "namespace": namespace,
            "labels": {**labels, **kueue_labels(spec)},
            "ownerReferences": [owner_reference(sweep, uid)],
        },
        "spec": {
            "runtimeRef": {"name": res.runtime_name, "apiGroup": TRAINJOB_GROUP, "kind": "ClusterTrainingRuntime"},
            "suspend": created_suspended(spec),
            "trainer": trainer,
            "runtimePatches": [
                {
                    "manager": RUNTIME_PATCH_MANAGER,
                    "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [node_patch]}}},
                }
            ],
        },
    }


def run_job(
    spec: ScalingSweepSpec,
    sweep: str,
    uid: str,
    namespace: str,
    run: PlannedRun,
    *,
    attempt: int = 1,
    metrics_port: int = DEFAULT_METRICS_PORT,
) -> dict[str, Any]:
    """The job that trains one planned run, of the kind spec.resources.backend names."""
    make = trainjob if spec.resources.backend is Backend.trainjob else pytorchjob
    return make(spec, sweep, uid, namespace, run, attempt=attempt, metrics_port=metrics_port)


def tokenizer_job(spec: ScalingSweepSpec, sweep: str, uid: str, namespace: str) -> dict[str, Any]:
    """A CPU-only batch Job that trains the sweep's BPE into `<store>/<namespace>/<sweep>/tokenizer/`.

    A separate stage rather than the first run's first step: every run of the
    first wave needs the tokenizer before step 1, and BPE training is CPU work
    that should not hold eight GPUs idle while it runs.
    """
    labels = {LABEL_SWEEP: sweep, LABEL_COMPONENT: "tokenizer"}
    res = spec.resources
    container = {
        "name": "tokenizer",
        "image": res.image,
        "imagePullPolicy": res.image_pull_policy,
        "command": ["python", "-m", TOKENIZER_MODULE],
        "args": tokenizer_flags(spec, SweepLayout(namespace, sweep)),
        "env": credential_env(spec),  # only the store credential keys, never the whole Secret (issue 27)
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": res.cpu, "memory": res.memory}},
    }
    pod_spec: dict[str, Any] = restrict({"containers": [container], "restartPolicy": "Never"})
    if res.node_selector:
        pod_spec["nodeSelector"] = dict(res.node_selector)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": tokenizer_job_name(sweep),
            "namespace": namespace,
            "labels": {**labels, **kueue_labels(spec)},
            "ownerReferences": [owner_reference(sweep, uid)],
        },
        "spec": {
            "backoffLimit": 2,  # the tokenizer is deterministic and restartable from scratch
            **({"suspend": True} if spec.resources.queue_name is not None else {}),  # Kueue admits it
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }
