"""The PyTorchJob backend: a run is a Kubeflow training-operator v1 PyTorchJob (kubeflow.org/v1).

Choices worth knowing:
- runPolicy.backoffLimit is 0: restarts are ours, because ours pass
  `--resume=auto` and back off exponentially, where the training-operator would
  restart pods blindly.
- cleanPodPolicy Running: when a job ends, pods still running (stragglers
  holding GPUs) are deleted; terminated pods stay, so `kubectl logs` still
  explains a failure until the job itself is deleted for a retry.
- terminationGracePeriodSeconds is sized for a preemption (pod_template.termination_grace_seconds):
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
"""

from __future__ import annotations

import copy
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
from miniseries.control.backends.podsecurity import restrict
from miniseries.plan.trainer_argv import DEFAULT_METRICS_PORT


class PyTorchJobBackend(JobBackend):
    backend = Backend.pytorchjob
    kind = "PyTorchJob"
    group = "kubeflow.org"
    version = "v1"
    plural = "pytorchjobs"
    #: Foreground: its pods go first, and a retried run's slot is held until then.
    delete_propagation = "Foreground"
    #: training-operator v1.9 sets Created, Running, Restarting, Suspended, Succeeded, Failed and keeps
    #: old ones in the list: the strongest True one wins.
    condition_phases = (
        ("Succeeded", JobPhase.Succeeded),
        ("Failed", JobPhase.Failed),
        ("Suspended", JobPhase.Suspended),
        ("Restarting", JobPhase.Restarting),
        ("Running", JobPhase.Running),
        ("Created", JobPhase.Created),
    )

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
        return pytorchjob(spec, sweep, uid, namespace, run, attempt=attempt, metrics_port=metrics_port)

    def suspended(self, obj: dict[str, Any]) -> bool:
        return bool(((obj.get("spec") or {}).get("runPolicy") or {}).get("suspend"))

    def suspend_patch(self, suspend: bool) -> dict[str, Any]:
        return {"spec": {"runPolicy": {"suspend": suspend}}}


PYTORCHJOB = PyTorchJobBackend()


def job_phase(conditions: list[Condition] | None) -> tuple[JobPhase, Condition | None]:
    """A PyTorchJob's phase from its status.conditions (Created if it has none yet)."""
    return PYTORCHJOB.phase({"status": {"conditions": conditions}})


def replica_specs(template: dict[str, Any], nodes: int) -> dict[str, Any]:
    """Master (rank 0's node) and, for a run over several nodes, nodes - 1 Workers from the same template."""
    specs = {"Master": {"replicas": 1, "restartPolicy": "Never", "template": template}}
    if nodes > 1:
        specs["Worker"] = {"replicas": nodes - 1, "restartPolicy": "Never", "template": copy.deepcopy(template)}
    return specs


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
    image, command, args = trainer_container(spec, sweep, uid, namespace, run, metrics_port)
    container: dict[str, Any] = {
        "name": "pytorch",  # the training-operator finds the container by this name
        "image": image,
        "imagePullPolicy": res.image_pull_policy,
        "command": command,
        "args": args,
        "env": trainer_env(spec, run),
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
        "metadata": {"labels": run_labels(sweep, run, attempt), "annotations": scrape_annotations(metrics_port)},
        "spec": pod_spec,
    }
    return {
        "apiVersion": PYTORCHJOB.api_version,
        "kind": PYTORCHJOB.kind,
        "metadata": run_job_metadata(spec, sweep, uid, namespace, run, attempt),
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
