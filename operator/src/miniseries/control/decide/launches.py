"""Which waiting runs start now: the free slots (runs and GPUs in flight), counted from what exists,
and the launch of each candidate in plan order, with the steps a candidate can take (LAUNCH_STEPS).
A wsd branch waits for its trunk's checkpoint, or fails when that checkpoint is gone for good. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from miniseries.api.spec import PlannedRun, PlanStatus, RunState, RunStatus, ScalingSweepSpec
from miniseries.control.backends.manifests import job_name
from miniseries.control.decide.observations import ObservedJob, RunObservation, parse_time
from miniseries.control.decide.run_decision import (
    RESULTS_CORRUPT,
    STORE_ACCESS_DENIED,
    TRUNK_CHECKPOINT_MISSING,
    WAITING_FOR_TRUNK,
    Event,
    RunDecision,
)
from miniseries.control.decide.run_seen import Seen

BRANCH_WAITS = "branch_waits_for_its_trunk_checkpoint"
BRANCH_FAILS = "branch_whose_trunk_checkpoint_is_gone_fails"
NO_FREE_SLOT = "no_free_slot_holds_the_queue"
BACKING_OFF = "retry_backs_off_until_its_time"
SAME_ATTEMPT = "resumed_run_launches_the_same_attempt"
NEW_ATTEMPT = "run_launches_a_new_attempt"
#: What a candidate for a launch (run_transitions.After.MAY_LAUNCH) can do, in plan order.
LAUNCH_STEPS = (BRANCH_WAITS, BRANCH_FAILS, NO_FREE_SLOT, BACKING_OFF, SAME_ATTEMPT, NEW_ATTEMPT)


@dataclass(frozen=True)
class Slots:
    """How many runs and GPUs may be in flight at once.

    GPUs count every node the sweep may use (`resources.nodes` x `nodeGpus`). A run over several
    nodes holds whole nodes (its gpusPerRun is a multiple of nodeGpus), so its GPUs are its nodes'
    GPUs; how many runs the nodes hold at once (whole nodes for a multi-node run, packed GPUs of
    one node otherwise) is `runs`, from `ResourceSpec.max_runs_in_flight`."""

    runs: int
    gpus: int

    @classmethod
    def of(cls, spec: ScalingSweepSpec) -> Slots:
        r = spec.resources
        return cls(r.max_runs_in_flight, r.node_gpus * r.nodes)


def slots_held(
    plan: PlanStatus, jobs: list[ObservedJob], launching: list[RunStatus], retiring: frozenset[str] = frozenset()
) -> tuple[int, int]:
    """(runs in flight, GPUs in flight), counted from what exists in the cluster: every job
    that is not finished or is being deleted, every failed job about to be deleted for a
    retry (`retiring`: it holds its slot until its foreground deletion has removed its pods),
    and every launch recorded in status whose job is not visible yet. Whichever attempt or
    run a job belongs to (even one no longer in the plan), it counts: what exists holds GPUs."""
    gpus_of = {p.name: p.gpus for p in plan.runs}
    default = plan.runs[0].gpus if plan.runs else 0
    holding = [j for j in jobs if j.active or j.deleting or j.name in retiring]
    seen = {j.run for j in holding}
    pending = [r for r in launching if r.name not in seen]
    runs = len(holding) + len(pending)
    gpus = sum(gpus_of.get(j.run, default) for j in holding) + sum(gpus_of.get(r.name, default) for r in pending)
    return runs, gpus


def trunk_checkpoint_ready(run: PlannedRun, store: dict[str, RunObservation]) -> bool:
    """A wsd branch can start: it has a checkpoint of its own, or its trunk's checkpoint at the
    branch's start step is in the store. Every other run can always start."""
    if run.trunk is None or run.start_step is None:
        return True
    own = store.get(run.name, RunObservation())
    return bool(own.checkpoint_steps) or run.start_step in store.get(run.trunk, RunObservation()).checkpoint_steps


def trunk_checkpoint_gone(run: PlannedRun, store: dict[str, RunObservation]) -> bool:
    """A wsd branch's start checkpoint will never be written again: its trunk finished, or checkpointed
    a later step (the trunk pins its branches' start steps, so a later checkpoint means it passed that
    step and wrote it), and the checkpoint at the branch's start step is not in the store."""
    if run.trunk is None or run.start_step is None or trunk_checkpoint_ready(run, store):
        return False
    trunk = store.get(run.trunk, RunObservation())
    return trunk.results is not None or any(s > run.start_step for s in trunk.checkpoint_steps)


def _trunk_not_ready(
    run: PlannedRun, rs: RunStatus, old: RunStatus | None, store: dict[str, RunObservation], d: RunDecision
) -> str:
    """Why a wsd branch does not start. Still waiting: it says for which checkpoint. Gone for good: the
    branch fails, naming the checkpoint. Retraining the trunk to that step would cost as much as the trunk
    up to it and needs a run the plan does not have (the trunk finished, or is past it); a failed branch is
    visible at once (the sweep Degraded, an Event), the other branches and the fit carry on, and deleting
    the trunk's results and checkpoints (or the sweep) trains it again."""
    assert run.trunk is not None and run.start_step is not None
    want = f"{run.trunk}'s checkpoint at step {run.start_step}"
    trunk = store.get(run.trunk, RunObservation())
    if not trunk_checkpoint_gone(run, store):
        at = f"step {trunk.progress.step}" if trunk.progress is not None else "not started"
        rs.reason, rs.message = WAITING_FOR_TRUNK, f"waits for {want} (the trunk is at {at})"
        return BRANCH_WAITS
    newest = max(trunk.checkpoint_steps, default=None)
    rs.state, rs.retry_at, rs.reason = RunState.Failed, None, TRUNK_CHECKPOINT_MISSING
    rs.message = (
        f"{want}, where this branch starts, is gone from the store (the trunk "
        f"{'finished' if trunk.results is not None else f'checkpointed step {newest}'}); nothing will write it "
        f"again, so this branch fails instead of waiting. To train it, delete {run.trunk}'s results and checkpoints "
        "so that the trunk trains again, or re-create the sweep"
    )[:500]
    if old is None or old.state is not RunState.Failed:
        d.events.append(Event("RunFailed", f"{run.name} failed: {rs.message}", "Warning"))
    return BRANCH_FAILS


@dataclass
class InFlight:
    """The runs and GPUs in flight, counted up as runs launch."""

    runs: int
    gpus: int


def _launch_step(
    s: Seen, held: InFlight, limit: Slots, sweep: str, store: dict[str, RunObservation], d: RunDecision
) -> str:
    """One candidate's step: wait or fail for its trunk, hold the queue, back off, or launch."""
    run, rs = s.run, s.rs
    if not trunk_checkpoint_ready(run, store):
        # a wsd branch waits for its trunk's checkpoint (it holds no slot and blocks nobody), or
        # fails when that checkpoint is gone for good: a run never waits without a reason
        return _trunk_not_ready(run, rs, s.old, store, d)
    if held.runs >= limit.runs or held.gpus + run.gpus > limit.gpus:
        return NO_FREE_SLOT  # plan order: a later, smaller run never jumps the queue
    if rs.state is RunState.Retrying:
        retry_at = parse_time(rs.retry_at)
        if retry_at is not None and s.now < retry_at:
            return BACKING_OFF  # backing off holds no slot
    # a re-evaluation, a run the store refused, or a preempted run resuming: the same attempt, outside retryLimit
    same = (rs.state is RunState.Retrying and rs.reason in (RESULTS_CORRUPT, STORE_ACCESS_DENIED)) or (
        rs.state is RunState.Preempted
    )
    rs.attempts = max(rs.attempts, 1) if same else rs.attempts + 1
    rs.state, rs.retry_at = RunState.Pending, None
    if rs.reason == WAITING_FOR_TRUNK:
        rs.reason = rs.message = None
    rs.job_name = job_name(sweep, run.name)
    d.create.append((run, rs.attempts))
    held.runs, held.gpus = held.runs + 1, held.gpus + run.gpus
    return SAME_ATTEMPT if same else NEW_ATTEMPT


def launch(
    candidates: list[Seen],
    held: tuple[int, int],
    limit: Slots,
    sweep: str,
    store: dict[str, RunObservation],
    d: RunDecision,
) -> None:
    """Launch the candidates that fit the free slots, in plan order; record each one's step."""
    counted = InFlight(*held)
    for s in candidates:
        taken = _launch_step(s, counted, limit, sweep, store, d)
        d.transitions[s.run.name].append(taken)
        if taken == NO_FREE_SLOT:
            break
