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

from miniseries.api.spec import API_VERSION, KIND, PlannedRun, ScalingSweepSpec
from miniseries.contract.layout import SweepLayout
from miniseries.control.trainer_args import (
    DEFAULT_METRICS_PORT,
    TOKENIZER_MODULE,
    TRAINER_MODULE,
    tokenizer_flags,
    trainer_flags,
)

PYTORCHJOB_GROUP = "kubeflow.org"
PYTORCHJOB_VERSION = "v1"
PYTORCHJOB_PLURAL = "pytorchjobs"

LABEL_SWEEP = "miniseries.dev/sweep"
LABEL_RUN = "miniseries.dev/run"
LABEL_DEPTH = "miniseries.dev/depth"
LABEL_ATTEMPT = "miniseries.dev/attempt"
LABEL_COMPONENT = "miniseries.dev/component"
MAX_NAME = 63


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


def _env_from(spec: ScalingSweepSpec) -> list[dict[str, Any]]:
    secret = spec.store.credentials_secret
    return [{"secretRef": {"name": secret}}] if secret else []


def gpus_per_pod(run: PlannedRun) -> int:
    """GPUs (and trainer processes) in each of a run's pods: one pod per node the run spans."""
    return run.gpus // run.nodes


def trainer_command(processes: int) -> list[str]:
    """One process per pod: the trainer itself, its rank and world from the training-operator's env.
    More: torchrun, which reads PET_NNODES, PET_NODE_RANK, PET_NPROC_PER_NODE and PET_MASTER_ADDR/PORT.
    Its `--` ends torchrun's own options: without it argparse reads the trainer's flags as abbreviations
    of torchrun's (`--run=d2` is "ambiguous: --run-path, --run_path") and torchrun exits with usage."""
    if processes == 1:
        return ["python", "-m", TRAINER_MODULE]
    return ["torchrun", "-m", "--", TRAINER_MODULE]


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
    labels = {
        LABEL_SWEEP: sweep,
        LABEL_RUN: run.name,
        LABEL_DEPTH: str(run.depth),
        LABEL_ATTEMPT: str(attempt),
        LABEL_COMPONENT: "trainer",
    }
    container: dict[str, Any] = {
        "name": "pytorch",  # the training-operator finds the container by this name
        "image": res.image,
        "imagePullPolicy": res.image_pull_policy,
        "command": trainer_command(gpus_per_pod(run)),
        "args": trainer_flags(spec, SweepLayout(namespace, sweep), run, metrics_port=metrics_port),
        "envFrom": _env_from(spec),
        # a failed trainer's last log lines land in its status, where the operator reads them (pods.py)
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "ports": [{"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": res.cpu, "memory": res.memory, "nvidia.com/gpu": str(gpus_per_pod(run))},
            "limits": {"nvidia.com/gpu": str(gpus_per_pod(run))},
        },
    }
    pod_spec: dict[str, Any] = {"containers": [container], "restartPolicy": "Never"}
    if res.node_selector:
        pod_spec["nodeSelector"] = dict(res.node_selector)
    template = {
        "metadata": {
            "labels": dict(labels),
            "annotations": {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(metrics_port),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": pod_spec,
    }
    return {
        "apiVersion": f"{PYTORCHJOB_GROUP}/{PYTORCHJOB_VERSION}",
        "kind": "PyTorchJob",
        "metadata": {
            "name": job_name(sweep, run.name),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(sweep, uid)],
        },
        "spec": {
            "nprocPerNode": str(gpus_per_pod(run)),
            "runPolicy": {
                "backoffLimit": 0,
                "cleanPodPolicy": "Running",
                "suspend": bool(spec.suspend),
            },
            "pytorchReplicaSpecs": replica_specs(template, run.nodes),
        },
    }


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
        "envFrom": _env_from(spec),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {"requests": {"cpu": res.cpu, "memory": res.memory}},
    }
    pod_spec: dict[str, Any] = {"containers": [container], "restartPolicy": "Never"}
    if res.node_selector:
        pod_spec["nodeSelector"] = dict(res.node_selector)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": tokenizer_job_name(sweep),
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(sweep, uid)],
        },
        "spec": {
            "backoffLimit": 2,  # the tokenizer is deterministic and restartable from scratch
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        },
    }
