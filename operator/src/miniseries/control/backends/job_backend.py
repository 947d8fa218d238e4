"""The one interface every job backend meets: what a run's job is on the cluster, as Kueue's
jobframework has one interface (GenericJob) for its integrations.

A backend says, as plain data and pure functions: which resource its jobs are (kind, group, version,
plural), the job that trains one planned run, how that job's status reads as a `JobPhase`, whether it
is suspended and the patch that suspends it, how it is deleted (propagation), the RBAC rules the
operator needs for it and what the operator watches. The I/O is elsewhere, taking a backend: create,
list and delete in control/io (act.py, observe.py), the watch in handlers.py. A backend is one module
here (pytorchjob.py, trainjob.py) and one line in registry.py.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from miniseries.api.spec import Backend, PlannedRun, ScalingSweepSpec
from miniseries.plan.trainer_argv import DEFAULT_METRICS_PORT


class JobPhase(StrEnum):
    """Where a run's job is, whatever its backend: the one vocabulary runs.py turns into run states
    (Created -> Pending, Running, Suspended, Restarting -> Retrying, Succeeded, Failed; a Failed job
    whose trainer checkpointed and exited for a preemption -> Preempted)."""

    Created = "Created"
    Running = "Running"
    Restarting = "Restarting"
    Suspended = "Suspended"
    Succeeded = "Succeeded"
    Failed = "Failed"


@dataclass(frozen=True)
class Resource:
    """An API resource the operator addresses: a backend's jobs, or something it watches."""

    group: str
    version: str
    plural: str


@dataclass(frozen=True)
class RbacRule:
    """One rule the operator's (Cluster)Role must grant for a backend (the chart's _helpers.tpl)."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]


#: What the operator does with every backend's jobs: create one per run attempt; get, list and watch
#: them (by the sweep label); delete a failed one to retry its run; patch one to suspend or resume it.
JOB_VERBS = ("get", "list", "watch", "create", "delete", "patch")

#: A condition from a job's status.conditions (type, status, reason, message, lastTransitionTime).
Condition = dict[str, Any]


def true_conditions(conditions: list[Condition] | None) -> dict[str, Condition]:
    """The conditions whose status is True, by type."""
    return {c.get("type", ""): c for c in conditions or [] if c.get("status") == "True"}


class JobBackend(ABC):
    """A job backend: one subclass per backend, one instance of it in the registry."""

    backend: ClassVar[Backend]
    kind: ClassVar[str]
    group: ClassVar[str]
    version: ClassVar[str]
    plural: ClassVar[str]
    #: How the operator deletes a job of this kind (DeleteOptions.propagationPolicy): see each backend.
    delete_propagation: ClassVar[str]
    #: Condition type -> phase, strongest first: a controller keeps old conditions in the list, and the
    #: first of these that is True is the job's phase. Every condition type the backend's controller
    #: sets has its entry (tests/unit/test_backends.py reads them from the controller's source).
    condition_phases: ClassVar[Sequence[tuple[str, JobPhase]]]

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def resource(self) -> Resource:
        return Resource(self.group, self.version, self.plural)

    @abstractmethod
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
        """The job that trains one planned run (attempt `attempt`), owned by the sweep `uid`."""

    def phase(self, obj: dict[str, Any]) -> tuple[JobPhase, Condition | None]:
        """The job's phase from its object, and the condition that says so (its reason, message and
        transition time reach the run's status); Created with no condition when none applies yet."""
        true = true_conditions((obj.get("status") or {}).get("conditions"))
        for kind, phase in self.condition_phases:
            if kind in true:
                return phase, true[kind]
        return JobPhase.Created, None

    @abstractmethod
    def suspended(self, obj: dict[str, Any]) -> bool:
        """Whether the job's spec asks it to be suspended (by the operator, or by Kueue)."""

    @abstractmethod
    def suspend_patch(self, suspend: bool) -> dict[str, Any]:
        """The merge patch that suspends (or resumes) a job of this kind."""

    def rbac_rules(self) -> tuple[RbacRule, ...]:
        """What the operator's Role needs for this backend: its jobs, every verb of JOB_VERBS."""
        return (RbacRule(self.group, self.plural, JOB_VERBS),)

    def watches(self) -> tuple[Resource, ...]:
        """The resources whose events (of objects with the sweep label) reconcile their sweep."""
        return (self.resource,)
