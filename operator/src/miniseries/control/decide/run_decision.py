"""What deciding the runs produces: the actions the handlers carry out, every run's new status, and
the reasons a run's status can give. Plain data, shared by runs.py (which decides), its transitions
(run_transitions.py, launches.py) and the other decisions that add actions (forecast_status.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from miniseries.api.spec import PlannedRun, RunStatus
from miniseries.control.decide.pod_troubles import PodTrouble

RESULTS_CORRUPT = "ResultsCorrupt"
#: RunStatus.reason of a preempted run: its trainer exited EXIT_PREEMPTED, or its job was suspended from outside.
PREEMPTED = "Preempted"
#: A run whose trainer the store refused (contract.exits.EXIT_STORE_DENIED): its credentials, not its training.
STORE_ACCESS_DENIED = "StoreAccessDenied"
#: A job that succeeded (its trainer exited 0) without results.json: the trainer broke its contract.
NO_RESULTS = "NoResults"
#: A wsd branch waiting for its trunk to reach (and checkpoint) the branch's start step.
WAITING_FOR_TRUNK = "WaitingForTrunk"
#: A wsd branch whose trunk went past the branch's start step and whose checkpoint there is gone.
TRUNK_CHECKPOINT_MISSING = "TrunkCheckpointMissing"


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: str = "Normal"


@dataclass
class Actions:
    """What the handlers carry out, in this order, after status is recorded."""

    create: list[tuple[PlannedRun, int]] = field(default_factory=list)  # (run, attempt)
    delete: list[str] = field(default_factory=list)  # failed jobs, deleted before their retry
    suspend: dict[str, bool] = field(default_factory=dict)  # job -> runPolicy.suspend
    create_tokenizer: bool = False
    #: Kueue Workload -> spec.active (under a queue, spec.suspend deactivates the workloads: Kueue
    #: would unsuspend an admitted job the operator suspended).
    activate: dict[str, bool] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    #: Every run finished and no fit is recorded: fit and report now (the science loads only then).
    fit: bool = False

    def touch_the_cluster(self) -> bool:
        """Creates, deletes or patches objects: recorded first, under the optimistic lock."""
        return bool(self.create or self.delete or self.suspend or self.create_tokenizer or self.activate)


@dataclass
class RunDecision(Actions):
    """Every planned run's new status, in plan order, and the actions they call for."""

    runs: list[RunStatus] = field(default_factory=list)
    #: In-flight runs (and pods.TOKENIZER) whose pod cannot start, and why: status.py makes it Degraded.
    stuck: dict[str, PodTrouble] = field(default_factory=dict)
    #: Run -> the names of the transitions it took in this decision (run_transitions.TRANSITIONS, then
    #: launches.LAUNCH_STEPS when it was a candidate for a launch): why its status reads as it does.
    transitions: dict[str, list[str]] = field(default_factory=dict)
