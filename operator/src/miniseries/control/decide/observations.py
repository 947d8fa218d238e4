"""What one reconcile saw, as plain data: the single input of `decide`.

Everything the decisions depend on is gathered into one `Observations` before anything is
decided, so `decide` is a pure function of it (and unit-tested without a cluster). The
operator fills it from the API server and the store (observe.py), the local runner from the
store and its own child process (local/runner.py).

Adding an observed input (say, a per-run problem seen on the trainer pods) is three steps:
a field on `Observations` (a dict keyed by run name for a per-run input, empty by default so
every other caller is unaffected), filled in observe.py, and read where it matters in
runs.py (a run's state or message, an Event) or status.py (a condition).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from miniseries.api.spec import PlanStatus, RunForecast, ScalingSweepSpec, ScalingSweepStatus
from miniseries.contract.results import (
    Progress,
    RunResults,
)
from miniseries.control.backends.job_backend import JobPhase
from miniseries.control.backends.registry import BY_KIND, DEFAULT_KIND, by_kind
from miniseries.control.decide.pod_troubles import PodTrouble


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: str | None) -> datetime | None:
    if not s:
        return None
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


# ---------------------------------------------------------------- jobs


@dataclass(frozen=True)
class ObservedJob:
    """A run's job (PyTorchJob or TrainJob) as read from the API server (or a local trainer process),
    reduced to what decisions need."""

    name: str
    run: str
    attempt: int
    phase: JobPhase
    suspended: bool = False
    deleting: bool = False
    since: datetime | None = None
    reason: str = ""
    message: str = ""
    uid: str = ""
    created: datetime | None = None  # metadata.creationTimestamp: what this attempt's store writes postdate
    kind: str = DEFAULT_KIND  # its backend's kind (registry.by_kind): what deleting or suspending it addresses

    @property
    def active(self) -> bool:
        """Not finished: running, about to run, or suspended (so resuming never overcommits)."""
        return self.phase not in (JobPhase.Succeeded, JobPhase.Failed)


def observe_job(obj: dict[str, Any]) -> ObservedJob:
    """Reduce a job object of any backend (a dict from the API) to an ObservedJob: its backend
    (registry.by_kind) reads its phase and whether it is suspended."""
    meta = obj.get("metadata", {})
    labels = meta.get("labels") or {}
    kind = obj.get("kind") or DEFAULT_KIND
    backend = by_kind(kind)
    phase, cond = backend.phase(obj)
    suspended = backend.suspended(obj)
    try:
        attempt = int(labels.get("miniseries.dev/attempt", "1"))
    except ValueError:
        attempt = 1
    return ObservedJob(
        name=meta.get("name", ""),
        run=labels.get("miniseries.dev/run", ""),
        attempt=attempt,
        phase=phase,
        suspended=suspended,
        deleting=bool(meta.get("deletionTimestamp")),
        since=parse_time((cond or {}).get("lastTransitionTime")),
        reason=(cond or {}).get("reason", "") or "",
        message=(cond or {}).get("message", "") or "",
        uid=meta.get("uid", "") or "",
        created=parse_time(meta.get("creationTimestamp")),
        kind=kind,
    )


# ---------------------------------------------------------------- Kueue workloads


class QueueState(StrEnum):
    """Where Kueue has a job (its Workload), as the run's status shows it."""

    Queued = "Queued"  # waiting for quota (with Kueue's reason when its scheduler tried it)
    Admitted = "Admitted"  # quota reserved and admitted: Kueue unsuspends the job
    Preempted = "Preempted"  # evicted (by a higher priority, or another eviction reason), waiting again
    Deactivated = "Deactivated"  # spec.active false (the operator does this for spec.suspend)
    Finished = "Finished"


#: The annotation the operator sets on a Workload it deactivated for spec.suspend: it reactivates
#: only those, never one an administrator (or Kueue) deactivated.
SUSPENDED_BY = "miniseries.dev/deactivated-for"


@dataclass(frozen=True)
class ObservedWorkload:
    """A Kueue Workload (kueue.x-k8s.io/v1beta2) of one of the sweep's jobs, reduced to plain data."""

    name: str
    job: str  # the owning job's name
    job_uid: str
    state: QueueState
    reason: str = ""
    message: str = ""
    active: bool = True
    deactivated_by_operator: bool = False
    position: int | None = None  # positionInLocalQueue from Kueue's visibility API, when it answered


def _true(conds: dict[str, dict[str, Any]], kind: str) -> dict[str, Any] | None:
    c = conds.get(kind)
    return c if c is not None and c.get("status") == "True" else None


def observe_workload(obj: dict[str, Any]) -> ObservedWorkload | None:
    """Reduce a Workload to what a run's status shows; None if no job owns it.

    Kueue v0.19's conditions (tests/e2e/README.md): a workload its scheduler tried and could not
    fit has QuotaReserved False, reason Pending, with the message ("couldn't assign flavors ...
    insufficient unused quota for nvidia.com/gpu ..., 4 more needed"); one behind it may have no
    QuotaReserved at all; admitted: Admitted True; preempted: Evicted True reason Preempted and
    Preempted True with the preemptor's message, until it is admitted again."""
    meta = obj.get("metadata") or {}
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("kind") in (*BY_KIND, "Job")), None)
    if owner is None:
        return None
    conds = {c.get("type"): c for c in (obj.get("status") or {}).get("conditions") or []}
    active = (obj.get("spec") or {}).get("active", True) is not False
    ours = (meta.get("annotations") or {}).get(SUSPENDED_BY) is not None
    base = {"name": meta.get("name", ""), "job": owner.get("name", ""), "job_uid": owner.get("uid", ""),
            "active": active, "deactivated_by_operator": ours}  # fmt: skip
    reserved = conds.get("QuotaReserved") or {}
    if c := _true(conds, "Finished"):
        return ObservedWorkload(state=QueueState.Finished, reason=c.get("reason", ""), message=c.get("message", ""),
                                **base)  # fmt: skip
    if not active:
        evicted = conds.get("Evicted") or {}
        return ObservedWorkload(state=QueueState.Deactivated, reason=evicted.get("reason") or "Deactivated",
                                message=evicted.get("message") or "the workload is not active", **base)  # fmt: skip
    # Evicted before Admitted: an evicted workload stays Admitted until its job has stopped; Kueue
    # resets Evicted and Preempted when it reserves quota again.
    if c := _true(conds, "Evicted"):
        why = (_true(conds, "Preempted") or c).get("message", "")
        waiting = reserved.get("message", "") if reserved.get("status") == "False" else ""
        message = f"{why}; {waiting}" if waiting and waiting != why else why
        return ObservedWorkload(state=QueueState.Preempted, reason=c.get("reason", "") or "Evicted", message=message,
                                **base)  # fmt: skip
    if c := _true(conds, "Admitted"):
        return ObservedWorkload(state=QueueState.Admitted, reason=c.get("reason", ""), message=c.get("message", ""),
                                **base)  # fmt: skip
    if reserved.get("status") == "False" and reserved.get("message"):
        return ObservedWorkload(state=QueueState.Queued, reason=reserved.get("reason", "") or "Pending",
                                message=reserved["message"], **base)  # fmt: skip
    if reserved.get("status") == "True":  # quota reserved, admission checks pending
        return ObservedWorkload(state=QueueState.Queued, reason=reserved.get("reason", "") or "QuotaReserved",
                                message=reserved.get("message", ""), **base)  # fmt: skip
    return ObservedWorkload(state=QueueState.Queued, reason="Pending",
                            message="waiting in the queue behind other workloads", **base)  # fmt: skip


# ---------------------------------------------------------------- the store


@dataclass(frozen=True)
class RunObservation:
    """What the store says about a run."""

    results: RunResults | None = None
    progress: Progress | None = None
    checkpoint_uri: str | None = None
    checkpoint_step: int | None = None
    results_uri: str | None = None
    results_error: str | None = None  # results.json exists but does not parse: which object, what error
    checkpoint_steps: tuple[int, ...] = ()  # every complete checkpoint (a wsd trunk's: its branches' starts)


class TokenizerState(StrEnum):
    NotNeeded = "NotNeeded"  # spec.data.tokenizerUri given
    Ready = "Ready"  # manifest in the store
    Missing = "Missing"  # no job, no tokenizer: create the job
    Running = "Running"
    Failed = "Failed"


# ---------------------------------------------------------------- the bundle


@dataclass(frozen=True)
class RetryTimings:
    """How long a run waits before it is tried again: the operator's settings, passed in (tests shorten them)."""

    #: A failed run's first retry waits this long; each further one twice the last ...
    base_seconds: float = 30.0
    #: ... up to this.
    cap_seconds: float = 600.0
    #: A run whose trainer the store refused is tried again this often (no retry spent): it resumes
    #: by itself once the Secret is fixed.
    store_denied_seconds: float = 60.0

    def backoff_seconds(self, attempts: int) -> float:
        """Wait before attempt `attempts + 1`: 30 s, 60 s, 120 s, ... capped at 10 min (by default)."""
        return min(self.base_seconds * 2 ** max(attempts - 1, 0), self.cap_seconds)


#: The production timings.
DEFAULT_RETRY = RetryTimings()


@dataclass(frozen=True)
class Observations:
    """Everything one reconcile of an accepted sweep read, before anything is decided."""

    sweep: str
    #: The spec to reconcile: the accepted one (a refused change keeps the old one, with the
    #: new `suspend`), see spec_changes.py.
    spec: ScalingSweepSpec
    #: Its plan, made once per reconcile.
    plan: PlanStatus
    #: The status as read (launches recorded in it hold slots; see runs.py).
    previous: ScalingSweepStatus
    #: The sweep's run jobs, PyTorchJobs and TrainJobs (owned by this sweep's uid).
    jobs: list[ObservedJob]
    #: Run name -> what the store says about it.
    store: dict[str, RunObservation]
    tokenizer: TokenizerState
    now: datetime
    generation: int | None = None
    #: Why the given spec change was refused (empty: accepted).
    refused: list[str] = field(default_factory=list)
    #: Run name (or pods.TOKENIZER) -> what the kubelet or scheduler says is wrong with its pod
    #: (an image that cannot be pulled, a container that exited with an error and its log tail).
    pods: dict[str, PodTrouble] = field(default_factory=dict)
    #: Run name -> the Kueue Workload of its job (only with spec.resources.queueName).
    workloads: dict[str, ObservedWorkload] = field(default_factory=dict)
    #: Run name -> the forecast made this reconcile for the runs that were due (forecasts.due,
    #: computed by act.forecast); a run without one keeps its last.
    forecasts: dict[str, RunForecast] = field(default_factory=dict)
    #: How long failed and store-refused runs wait before their next try (the operator's settings).
    retry: RetryTimings = DEFAULT_RETRY
