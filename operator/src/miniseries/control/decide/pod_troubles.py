"""What the sweep's pods say that its jobs do not: an image that cannot be pulled, a
container that cannot be created, a pod no node will take, and the last lines a failed
trainer printed.

The training-operator reports a PyTorchJob whose pod waits on ErrImagePull as merely
Created, forever; and a failed job's condition says only "1 Master replica(s) failed".
The kubelet knows why, in the pod's status, so the operator lists the sweep's pods (one
`list`, by the sweep label every pod template carries) and reads it from there:

- `state.waiting.reason` of the container: ErrImagePull, ImagePullBackOff, InvalidImageName,
  CreateContainerConfigError (a missing Secret, say), ...; the kubelet's message names the
  image or the missing object.
- `state.terminated` with a non-zero exit code: the container's `terminationMessagePolicy`
  is FallbackToLogsOnError (jobs.py), so the kubelet copies the tail of its log (at most
  80 lines / 2 KiB) into `message`. That is why the operator needs no `pods/log` access.
  Whatever the log says is redacted (contract/redact.py: access key ids, secret/token/password
  assignments, bearer tokens) before it reaches status, Events or the operator's own log: the
  trainer masks the credentials it was given, this catches what bypassed it.
- the PodScheduled condition False with reason Unschedulable: the scheduler's message
  ("0/3 nodes are available: 3 Insufficient nvidia.com/gpu").
- a pod that never came to be: admission (PodSecurity in a `restricted` namespace, a quota, a
  policy) refused it, and only an Event on the job says so (FailedCreate from the Job controller,
  FailedCreatePod from the training-operator): `admission_refusals` reads those for the jobs
  that have no pod at all, so the sweep is Degraded with the admission's words, not Pending.

Pure functions of plain dicts (the API's JSON), so every case is unit-tested without a
cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from miniseries.contract.redact import redact
from miniseries.control.backends.manifests import LABEL_ATTEMPT, LABEL_COMPONENT, LABEL_RUN

# Waiting reasons that mean the container will not start on its own (ContainerCreating and
# PodInitializing are the normal way to start, so they are not trouble).
WAITING_TROUBLE = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
        "CrashLoopBackOff",
    }
)
#: The Events of a job whose pods admission refused: the Job controller's (a tokenizer Job, a
#: TrainJob's JobSet's Jobs) and the training-operator's (a PyTorchJob).
ADMISSION_REASONS = frozenset({"FailedCreate", "FailedCreatePod"})
#: Reasons a run's status carries while its pod cannot start, cleared once it does.
POD_REASONS = WAITING_TROUBLE | {"Unschedulable"} | ADMISSION_REASONS
IMAGE_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
TOKENIZER = "tokenizer"  # the key of the tokenizer job's pod (it has no run)
TAIL_LINES = 8  # of a failed container's log, in status and Events
TAIL_CHARS = 800


@dataclass(frozen=True)
class PodTrouble:
    """Why one pod of the sweep is not doing its work, as the kubelet or scheduler said it."""

    pod: str
    reason: str  # the kubelet's or scheduler's reason: ErrImagePull, Error, OOMKilled, Unschedulable
    message: str
    image: str | None = None
    exit_code: int | None = None
    log_tail: str | None = None

    @property
    def waiting(self) -> bool:
        """The pod is stuck before (or between) running its container; the job has not failed."""
        return self.exit_code is None

    def summary(self) -> str:
        """One message for a run's status and an Event: what, where, and the evidence."""
        if self.reason in IMAGE_REASONS:
            head = f"image {self.image!r} cannot be pulled ({self.reason})"
        elif self.reason in ADMISSION_REASONS:
            head = f"the pods of {self.pod} are refused ({self.reason})"
        elif self.exit_code is not None:
            head = f"container exited with code {self.exit_code} ({self.reason}) in pod {self.pod}"
        else:
            head = f"pod {self.pod}: {self.reason}"
        text = f"{head}: {self.message}" if self.message else head
        if self.log_tail:
            text += f"\nlast lines of its log:\n{self.log_tail}"
        return text


def log_tail(text: str | None, lines: int = TAIL_LINES, chars: int = TAIL_CHARS) -> str | None:
    """The last few lines of a log, short enough for a status message and an Event, redacted (whole,
    before it is cut: a key cut in half no longer looks like one)."""
    if not text or not text.strip():
        return None
    tail = "\n".join(redact(text).rstrip().splitlines()[-lines:])
    return tail if len(tail) <= chars else "…" + tail[-(chars - 1) :]


def _container_status(pod: dict[str, Any]) -> dict[str, Any] | None:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return statuses[0] if statuses else None


def _image(pod: dict[str, Any], cs: dict[str, Any] | None) -> str | None:
    if cs and cs.get("image"):
        return str(cs["image"])
    containers = (pod.get("spec") or {}).get("containers") or []
    return str(containers[0].get("image")) if containers else None


def _unschedulable(pod: dict[str, Any]) -> dict[str, Any] | None:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "PodScheduled" and c.get("status") == "False" and c.get("reason") == "Unschedulable":
            return c
    return None


def trouble_of(pod: dict[str, Any]) -> PodTrouble | None:
    """The trouble one pod is in, or None when it is starting, running or has succeeded."""
    name = str((pod.get("metadata") or {}).get("name", "?"))
    cs = _container_status(pod)
    image = _image(pod, cs)
    if cs is not None:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in WAITING_TROUBLE:
            last = ((cs.get("lastState") or {}).get("terminated")) or {}
            return PodTrouble(name, waiting["reason"], redact(str(waiting.get("message") or "").strip()), image,
                              log_tail=log_tail(last.get("message")))  # fmt: skip
        terminated = (cs.get("state") or {}).get("terminated") or {}
        code = terminated.get("exitCode")
        if terminated and code not in (None, 0):
            reason = str(terminated.get("reason") or "Error")
            message = memory_limit(pod, cs) if reason == "OOMKilled" else ""
            return PodTrouble(name, reason, message, image, int(code),
                              log_tail(terminated.get("message")))  # fmt: skip
        return None
    cond = _unschedulable(pod)
    if cond is not None:
        return PodTrouble(name, "Unschedulable", redact(str(cond.get("message") or "").strip()), image)
    return None


#: The annotation the API server's LimitRanger admission plugin sets on a pod whose resources it defaulted.
LIMIT_RANGER_ANNOTATION = "kubernetes.io/limit-ranger"


def memory_limit(pod: dict[str, Any], cs: dict[str, Any] | None = None) -> str:
    """What an OOMKilled container's memory limit was and where it came from: the namespace's LimitRange
    (the operator sets no memory limit, so LimitRanger's default is what killed it), or the container's
    own spec. The operator asks only for a memory request (spec.resources.memory)."""
    name = (cs or {}).get("name")
    containers = (pod.get("spec") or {}).get("containers") or []
    container = next((c for c in containers if c.get("name") == name), containers[0] if containers else {})
    limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    if not limit:
        return "the node ran out of memory (the container had no memory limit)"
    ranger = ((pod.get("metadata") or {}).get("annotations") or {}).get(LIMIT_RANGER_ANNOTATION, "")
    if "memory limit" in ranger:
        where = "the namespace's LimitRange default (the sweep sets none; raise the LimitRange's default or its max)"
    else:
        where = "the container's spec (resources.limits.memory)"
    return f"memory limit {limit}, set by {where}"


def _key(pod: dict[str, Any]) -> str | None:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    if labels.get(LABEL_RUN):
        return str(labels[LABEL_RUN])
    return TOKENIZER if labels.get(LABEL_COMPONENT) == TOKENIZER else None


def _attempt(pod: dict[str, Any]) -> int:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    try:
        return int(labels.get(LABEL_ATTEMPT, 0))
    except (TypeError, ValueError):
        return 0


def troubles_by_run(pods: list[dict[str, Any]]) -> dict[str, PodTrouble]:
    """Per run (and TOKENIZER), the trouble of its newest attempt's pods, if any.

    Pods of an older attempt may linger while their job is deleted for a retry; what they
    say is history, already recorded when that attempt failed."""
    newest: dict[str, int] = {}
    for pod in pods:
        key = _key(pod)
        if key is not None:
            newest[key] = max(newest.get(key, 0), _attempt(pod))
    out: dict[str, PodTrouble] = {}
    for pod in sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name", ""))):
        key = _key(pod)
        if key is None or _attempt(pod) != newest[key] or key in out:
            continue
        trouble = trouble_of(pod)
        if trouble is not None:
            out[key] = trouble
    return out


def _when(event: dict[str, Any]) -> datetime | None:
    """When an Event last happened: core/v1 Events carry lastTimestamp, events.k8s.io ones eventTime."""
    raw = event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
    return datetime.fromisoformat(str(raw).replace("Z", "+00:00")) if raw else None


def admission_refusals(
    events: list[dict[str, Any]], jobs: Mapping[str, tuple[str, datetime | None]], with_pods: set[str]
) -> dict[str, PodTrouble]:
    """Per run (and TOKENIZER), the newest refusal of its job's pods, from the namespace's Events.

    `jobs`: key -> (job name, its creation time): an Event older than the job is an earlier
    attempt's. A TrainJob's pods are its JobSet's Jobs' (`<name>-node-<i>`), so an Event on one of
    those counts for the TrainJob. A key in `with_pods` has a pod, whose own status says more."""
    by_name = {name: (key, created) for key, (name, created) in jobs.items() if key not in with_pods}
    newest: dict[str, tuple[datetime | None, PodTrouble]] = {}
    for e in events:
        if e.get("reason") not in ADMISSION_REASONS:
            continue
        obj = e.get("involvedObject") or {}
        name = str(obj.get("name", ""))
        hit = by_name.get(name) or by_name.get(name.rsplit("-node-", 1)[0] if "-node-" in name else "")
        if hit is None:
            continue
        key, created = hit
        when = _when(e)
        if created is not None and when is not None and when < created:
            continue
        trouble = PodTrouble(f"{obj.get('kind', 'job')} {name}", str(e["reason"]),
                             redact(str(e.get("message") or "").strip())[:TAIL_CHARS])  # fmt: skip
        old = newest.get(key)
        if old is None or (when is not None and (old[0] is None or when >= old[0])):
            newest[key] = (when, trouble)
    return {key: t for key, (_, t) in newest.items()}


def pod_keys(pods: list[dict[str, Any]]) -> set[str]:
    """The runs (and TOKENIZER) that have at least one pod."""
    return {k for k in (_key(p) for p in pods) if k is not None}
