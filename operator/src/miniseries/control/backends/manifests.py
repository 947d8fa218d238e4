"""What every object the operator makes for a sweep carries (names, labels, owner, Kueue's queue),
and the tokenizer's Job. Pure functions of the spec and plan (no API calls), so the exact object the
operator creates is unit-tested and a restart renders byte-identical manifests.

A run's job is a backend's (base.py, registry.py: a PyTorchJob in pytorchjob.py, a TrainJob in
trainjob.py); the trainer pod's pieces they share are in pod_template.py.

Choices worth knowing:
- Job names are deterministic, `<sweep>-<run>` (d12, or d12-f1e18 in isoflop
  mode). A retry *reuses* the name after the failed job is deleted (foreground,
  and only recreated once it is gone): a suffix like `-a3` would overflow the
  63-character DNS-1035 limit for a 50-character sweep name with an isoflop run
  id, and one name per run means "create, 409 means it exists" stays idempotent.
  The attempt number travels in the `miniseries.dev/attempt` label.
- With spec.resources.queueName every job carries Kueue's queue (and priority) label and is
  created suspended: Kueue unsuspends it on admission (`kueue_labels`, `created_suspended`).
"""

from __future__ import annotations

from typing import Any

from miniseries.api.spec import API_VERSION, KIND, PlannedRun, ScalingSweepSpec
from miniseries.contract.layout import SweepLayout
from miniseries.control.backends.pod_template import credential_env
from miniseries.control.backends.podsecurity import restrict
from miniseries.plan.trainer_argv import TOKENIZER_MODULE, tokenizer_flags

LABEL_SWEEP = "miniseries.dev/sweep"
LABEL_RUN = "miniseries.dev/run"
LABEL_DEPTH = "miniseries.dev/depth"
LABEL_ATTEMPT = "miniseries.dev/attempt"
LABEL_COMPONENT = "miniseries.dev/component"
MAX_NAME = 63
# Kueue (spec.resources.queueName): the LocalQueue and WorkloadPriorityClass a job is queued with.
LABEL_KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
LABEL_KUEUE_PRIORITY = "kueue.x-k8s.io/priority-class"


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


def run_labels(sweep: str, run: PlannedRun, attempt: int) -> dict[str, str]:
    """The labels of a run's job and of every one of its pods (pods.py and the PodMonitor select on them)."""
    return {
        LABEL_SWEEP: sweep,
        LABEL_RUN: run.name,
        LABEL_DEPTH: str(run.depth),
        LABEL_ATTEMPT: str(attempt),
        LABEL_COMPONENT: "trainer",
    }


def run_job_metadata(spec: ScalingSweepSpec, sweep: str, uid: str, namespace: str, run: PlannedRun,
                     attempt: int) -> dict[str, Any]:  # fmt: skip
    """The metadata of a run's job, whatever its backend: its name, the run's labels and Kueue's,
    owned by the sweep."""
    return {
        "name": job_name(sweep, run.name),
        "namespace": namespace,
        "labels": {**run_labels(sweep, run, attempt), **kueue_labels(spec)},
        "ownerReferences": [owner_reference(sweep, uid)],
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
