"""One run as a reconcile sees it (`Seen`): what each transition of run_transitions.py and each launch
step of launches.py reads, and the new status they write."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from miniseries.api.spec import PlannedRun, RunState, RunStatus, ScalingSweepSpec
from miniseries.control.decide.observations import JobPhase, ObservedJob, ObservedWorkload, RetryTimings, RunObservation
from miniseries.control.decide.pod_troubles import PodTrouble


@dataclass
class Seen:
    """One run as this reconcile sees it: everything a transition reads, and `rs`, the new status
    it writes (already filled from the store: progress, results, checkpoint, cost, its job's name)."""

    run: PlannedRun
    rs: RunStatus
    old: RunStatus | None  # the status recorded by the previous reconcile, None for a new run
    obs: RunObservation  # the store's word on the run
    job: ObservedJob | None  # its job (the newest attempt), None when there is none
    trouble: PodTrouble | None  # why its pod cannot start, or how its container exited
    workload: ObservedWorkload | None  # Kueue's Workload of its job, when the sweep is queued
    spec: ScalingSweepSpec
    kueue: bool  # the sweep is queued in Kueue and the Workloads were read
    now: datetime
    retry: RetryTimings

    def newly(self, state: RunState) -> bool:
        """The run enters `state` now (an Event is due), rather than staying in it."""
        return self.old is None or self.old.state is not state

    def was(self, *states: RunState) -> bool:
        return self.old is not None and self.old.state in states

    def job_in(self, *phases: JobPhase) -> bool:
        return self.job is not None and self.job.phase in phases

    def job_active(self) -> bool:
        return self.job is not None and self.job.active
