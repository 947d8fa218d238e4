"""Each run's next state, and the actions it calls for: the rules of decide.py, per run.

`decide_runs` is pure: the accepted spec, its plan, the jobs that exist, the store's word on
each run, the runs' previous status and the time in; every run's new RunStatus and the
actions (create, delete, suspend, events) out. The operator calls it through `decide`; the
local runner calls it directly, with its own trainer process as the only job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from miniseries.api.spec import PlannedRun, PlanStatus, RunState, RunStatus, ScalingSweepSpec
from miniseries.contract.exits import EXIT_STORE_DENIED, STORE_DENIED_MARKER
from miniseries.contract.preemption import EXIT_PREEMPTED, PROGRESS_PREEMPTED
from miniseries.control.backends.manifests import job_name
from miniseries.control.decide.observations import (
    DEFAULT_RETRY,
    JobPhase,
    ObservedJob,
    ObservedWorkload,
    QueueState,
    RetryTimings,
    RunObservation,
    TokenizerState,
    parse_time,
    rfc3339,
)
from miniseries.control.decide.pod_troubles import POD_REASONS, PodTrouble

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


def _from_store(rs: RunStatus, obs: RunObservation, price: float) -> None:
    if obs.checkpoint_uri:
        rs.checkpoint_uri = obs.checkpoint_uri
    if obs.progress is not None:
        p = obs.progress
        rs.step, rs.steps, rs.tokens, rs.loss = p.step, p.steps, p.tokens, p.loss
        rs.gpu_seconds = p.elapsed_seconds * p.world_size
    if obs.results is not None:
        r = obs.results
        rs.step, rs.steps, rs.tokens = r.steps, r.steps, r.tokens
        rs.loss = r.loss.final
        rs.val_bpb = r.val_bpb
        rs.core = r.core.core if r.core is not None else None
        rs.gpu_seconds = r.gpu_seconds
        rs.results_uri = obs.results_uri
        if r.checkpoint_uri:
            rs.checkpoint_uri = r.checkpoint_uri
    rs.cost_usd = round(rs.gpu_seconds / 3600.0 * price, 4)


def launch_recorded(old: RunStatus | None) -> bool:
    """Status says this attempt was launched and no job has been seen for it since."""
    return old is not None and old.state is RunState.Pending and old.attempts > 0 and bool(old.job_name)


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


def decide_runs(
    spec: ScalingSweepSpec,
    sweep: str,
    plan: PlanStatus,
    jobs: list[ObservedJob],
    store: dict[str, RunObservation],
    previous: list[RunStatus],
    tokenizer: TokenizerState,
    now: datetime,
    slots: Slots | None = None,
    pods: dict[str, PodTrouble] | None = None,
    workloads: dict[str, ObservedWorkload] | None = None,
    retry: RetryTimings = DEFAULT_RETRY,
) -> RunDecision:
    """Each run's state from what exists, then the launches that fit the free slots, in plan order.

    `pods` (observed.Observations.pods) says why a run's pod cannot start or how its container
    failed; the local runner has no pods and passes none. `workloads` (observed.Observations.workloads)
    is Kueue's word on each queued run's job when spec.resources.queueName is set (see `_kueue`);
    the local runner passes none and queues nothing."""
    pods = pods or {}
    kueue = spec.resources.queue_name is not None and workloads is not None
    by_run: dict[str, ObservedJob] = {}
    for j in jobs:
        # One name per run, so at most one job per run; keep the newest attempt if an
        # older, still-terminating one is listed alongside.
        if j.run not in by_run or j.attempt > by_run[j.run].attempt:
            by_run[j.run] = j
    prev = {r.name: r for r in previous}
    price = spec.cost.price_per_gpu_hour
    d = RunDecision()
    candidates: list[tuple[PlannedRun, RunStatus]] = []
    launching: list[tuple[PlannedRun, RunStatus]] = []

    for run in plan.runs:
        old = prev.get(run.name)
        rs = RunStatus(
            name=run.name,
            depth=run.depth,
            budget_flops=run.budget_flops,
            steps=run.steps,
            attempts=old.attempts if old else 0,
            checkpoint_uri=old.checkpoint_uri if old else None,
            reason=old.reason if old else None,
            retry_at=old.retry_at if old else None,
            message=old.message if old else None,
            preemptions=old.preemptions if old else 0,
        )
        obs = store.get(run.name, RunObservation())
        _from_store(rs, obs, price)
        job = by_run.get(run.name)
        if job is not None:
            rs.job_name = job.name
            rs.attempts = max(rs.attempts, job.attempt)

        if obs.results is not None:
            rs.state = RunState.Succeeded
            rs.retry_at = None
            rs.reason = rs.message = None  # an earlier attempt's failure no longer describes the run
            if old is None or old.state is not RunState.Succeeded:
                d.events.append(Event("RunSucceeded", f"{run.name} finished: {rs.tokens} tokens, val bpb {rs.val_bpb}"))
        elif (
            obs.results_error is not None
            and not (job is not None and (job.active or job.phase is JobPhase.Failed))  # a failure is a failure
            and not (job is None and launch_recorded(old))
        ):
            _results_corrupt(run, rs, old, job, obs.results_error, d, candidates, now)
        elif (
            job is not None
            and job.deleting
            and old is not None
            and old.state in (RunState.Retrying, RunState.Failed, RunState.Preempted)
        ):
            # The operator deleted this job after recording why (a retry, a preemption). While it goes
            # its status says nothing more, and may say the opposite: Trainer v2 drops a TrainJob's
            # Failed condition once its JobSet is deleted, so it reads as starting again. The recorded
            # decision stands; nothing is launched until the job is gone.
            rs.state = old.state
        elif job is not None and job.active:
            rs.state = {
                JobPhase.Created: RunState.Pending,
                JobPhase.Suspended: RunState.Suspended,
            }.get(job.phase, RunState.Running)
            if kueue:
                _kueue(run.name, rs, old, job, (workloads or {}).get(run.name), spec, d)
            elif job.suspended != spec.suspend and not job.deleting:
                d.suspend[job.name] = spec.suspend
            if spec.suspend:
                rs.state = RunState.Suspended
            elif (
                not kueue and job.suspended and old is not None and old.state in (RunState.Running, RunState.Preempted)
            ):
                # (under Kueue, _kueue reads the preemption from the Workload)
                _job_preempted(run, rs, old, obs, "its job was suspended from outside the sweep", d)
            _pod_trouble(run.name, rs, old, pods.get(run.name), d)
        elif job is not None and job.phase is JobPhase.Failed and preempted_exit(pods.get(run.name), obs, job):
            _job_preempted(run, rs, old, obs, f"its trainer checkpointed and exited {EXIT_PREEMPTED}", d)
            if not job.deleting:
                d.delete.append(job.name)  # the same name and attempt is created again once it is gone
        elif job is not None and job.phase is JobPhase.Failed and store_denied(pods.get(run.name)):
            _store_denied(run, rs, old, pods[run.name], spec, d, now, retry)
            if not job.deleting:
                d.delete.append(job.name)  # the same attempt is created again after the wait
        elif job is not None and (job.phase is JobPhase.Failed or job.phase is JobPhase.Succeeded):
            _job_ended(run, rs, old, job, spec.retry_limit, d, now, pods.get(run.name), retry)
        elif old is not None and old.state in (RunState.Retrying, RunState.Failed):
            # The failed job is gone; the decision to retry (or not) was recorded in status.
            rs.state = old.state
            if rs.state is RunState.Retrying:
                candidates.append((run, rs))
        elif old is not None and old.state is RunState.Preempted:
            # The preempted job is gone: relaunched at once (no backoff) from its checkpoint.
            rs.state = RunState.Preempted
            candidates.append((run, rs))
        elif launch_recorded(old):
            # Recorded as launched, job not created yet (or the creator died in between):
            # it holds its slot, and the same attempt is created again (409 if it exists).
            assert old is not None
            rs.state, rs.attempts, rs.job_name = RunState.Pending, old.attempts, old.job_name
            launching.append((run, rs))
        else:
            rs.state = RunState.Pending
            candidates.append((run, rs))
        d.runs.append(rs)

    if tokenizer is TokenizerState.Missing:
        d.create_tokenizer = True
    if spec.suspend or tokenizer not in (TokenizerState.NotNeeded, TokenizerState.Ready):
        return d

    in_flight, gpus = slots_held(plan, jobs, [rs for _, rs in launching], frozenset(d.delete))
    for run, rs in launching:
        d.create.append((run, rs.attempts))
    limit = slots or Slots.of(spec)
    for run, rs in candidates:
        if not trunk_checkpoint_ready(run, store):
            # a wsd branch waits for its trunk's checkpoint (it holds no slot and blocks nobody), or
            # fails when that checkpoint is gone for good: a run never waits without a reason
            _trunk_not_ready(run, rs, prev.get(run.name), store, d)
            continue
        if in_flight >= limit.runs or gpus + run.gpus > limit.gpus:
            break  # plan order: a later, smaller run never jumps the queue
        if rs.state is RunState.Retrying:
            retry_at = parse_time(rs.retry_at)
            if retry_at is not None and now < retry_at:
                continue  # backing off holds no slot
        if (rs.state is RunState.Retrying and rs.reason in (RESULTS_CORRUPT, STORE_ACCESS_DENIED)) or (
            rs.state is RunState.Preempted
        ):
            # a re-evaluation, a run the store refused, or a preempted run resuming: the same attempt,
            # outside retryLimit
            rs.attempts = max(rs.attempts, 1)
        else:
            rs.attempts += 1
        rs.state = RunState.Pending
        rs.retry_at = None
        if rs.reason == WAITING_FOR_TRUNK:
            rs.reason = rs.message = None
        rs.job_name = job_name(sweep, run.name)
        d.create.append((run, rs.attempts))
        in_flight += 1
        gpus += run.gpus
    return d


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
) -> None:
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
        return
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


#: The run states that say where Kueue has a run's job.
QUEUE_STATES = frozenset({RunState.Queued, RunState.Admitted, RunState.Preempted})


def _kueue(
    name: str,
    rs: RunStatus,
    old: RunStatus | None,
    job: ObservedJob,
    wl: ObservedWorkload | None,
    spec: ScalingSweepSpec,
    d: RunDecision,
) -> None:
    """An unfinished job under Kueue: the run shows where Kueue has it, with Kueue's reason.

    Kueue owns runPolicy.suspend of a queued job: it unsuspends the job when it admits its
    Workload and suspends it when it evicts it (and unsuspends again a job someone else
    suspended while its Workload is admitted), so the operator never patches it. spec.suspend
    deactivates the job's Workload instead (Kueue then evicts it and suspends the job), marked as
    the operator's; unsetting it reactivates only those, and Kueue admits them again. A preempted
    run keeps its job and its attempt: Kueue admits it again and it resumes from its checkpoint."""
    if wl is not None and not job.deleting:
        if spec.suspend and wl.active:
            d.activate[wl.name] = False
        elif not spec.suspend and not wl.active and wl.deactivated_by_operator:
            d.activate[wl.name] = True
    if spec.suspend:
        return  # shown Suspended by the caller
    queue = spec.resources.queue_name
    if wl is None:
        if not job.suspended:
            return
        state, reason, message = RunState.Queued, "Pending", f"submitted to LocalQueue {queue}; no Workload yet"
    elif wl.state is QueueState.Admitted and (job.suspended or job.phase in (JobPhase.Created, JobPhase.Suspended)):
        state, reason, message = RunState.Admitted, wl.reason or "Admitted", wl.message
    elif wl.state in (QueueState.Admitted, QueueState.Finished):
        if old is not None and old.state in QUEUE_STATES and rs.state is RunState.Running:
            rs.reason = rs.message = None  # it runs: Kueue's last word no longer applies
        return
    elif wl.state is QueueState.Preempted:
        state, reason, message = RunState.Preempted, wl.reason, wl.message
    elif wl.state is QueueState.Deactivated:
        state, reason, message = RunState.Suspended, wl.reason, wl.message
    else:
        state, reason, message = RunState.Queued, wl.reason, wl.message
    if wl is not None and wl.position is not None and state is RunState.Queued:
        message = f"{message} (position {wl.position} in LocalQueue {queue})"
    rs.state, rs.reason, rs.message = state, reason, message[:500]
    if old is None or old.state is not state:
        where = f"LocalQueue {queue}"
        text = {
            RunState.Queued: f"{name} queued in {where}: {rs.message}",
            RunState.Admitted: f"{name} admitted by Kueue ({where})",
            RunState.Preempted: f"{name} preempted ({reason}): {rs.message}; it resumes from its newest checkpoint "
            "when admitted again (no attempt spent)",
            RunState.Suspended: f"{name}: its Workload is not active ({reason}): {rs.message}",
        }[state]
        kind = "Warning" if state is RunState.Preempted else "Normal"
        d.events.append(Event(f"Run{state.value}", text, kind))


def _pod_trouble(name: str, rs: RunStatus, old: RunStatus | None, trouble: PodTrouble | None, d: RunDecision) -> None:
    """An in-flight run whose pod cannot start (an image that cannot be pulled, a missing Secret,
    no node that fits): the kubelet's or scheduler's reason in its status, and an Event when it
    changes. The job stays: pushing the image or freeing a node lets it start as it is."""
    if trouble is None or not trouble.waiting:
        if rs.reason in POD_REASONS:  # it started after all
            rs.reason = rs.message = None
        return
    rs.reason, rs.message = trouble.reason, trouble.summary()
    d.stuck[name] = trouble
    if old is None or (old.reason, old.message) != (rs.reason, rs.message):
        d.events.append(Event(trouble.reason, f"{name}: {rs.message}", "Warning"))


def preempted_exit(
    trouble: PodTrouble | None, obs: RunObservation | None = None, job: ObservedJob | None = None
) -> bool:
    """The run's trainer caught SIGTERM and wrote a checkpoint before it exited: its container exited
    EXIT_PREEMPTED, or (a pod of several GPUs runs torchrun, which turns every worker's exit into 1)
    this attempt's own progress.json says `preempted`, written after its job was created."""
    if trouble is not None and trouble.exit_code == EXIT_PREEMPTED:
        return True
    progress = obs.progress if obs is not None else None
    if progress is None or progress.state != PROGRESS_PREEMPTED or job is None or job.created is None:
        return False
    return progress.updated_at >= job.created.timestamp()  # not a stale one from an earlier attempt


def _job_preempted(
    run: PlannedRun, rs: RunStatus, old: RunStatus | None, obs: RunObservation, how: str, d: RunDecision
) -> None:
    """A run stopped from outside after checkpointing (Kueue's preemption, a node drain, a deleted pod):
    Preempted, not Failed. It spends no retry (the attempt is not counted) and resumes from its newest
    checkpoint as soon as it may run again, without backoff; one RunPreempted Event per preemption."""
    new = old is None or old.state is not RunState.Preempted
    rs.state, rs.reason, rs.retry_at = RunState.Preempted, PREEMPTED, None
    if new:
        rs.preemptions += 1
    at = f"step {obs.checkpoint_step}" if obs.checkpoint_step is not None else "no checkpoint yet"
    rs.message = (
        f"preempted ({how}) at {at}; resumes from {rs.checkpoint_uri or 'the start'} "
        f"(preemption {rs.preemptions}, not counted against retryLimit)"
    )
    if new:
        d.events.append(Event("RunPreempted", f"{run.name} {rs.message}"))


def store_denied(trouble: PodTrouble | None) -> bool:
    """The run's trainer stopped because the store refused its credentials: it exited EXIT_STORE_DENIED,
    or (several ranks under torchrun, which exits 1) its log ends with STORE_DENIED_MARKER."""
    if trouble is None or trouble.waiting:
        return False
    return trouble.exit_code == EXIT_STORE_DENIED or STORE_DENIED_MARKER in (trouble.log_tail or "")


def _store_denied(
    run: PlannedRun,
    rs: RunStatus,
    old: RunStatus | None,
    trouble: PodTrouble,
    spec: ScalingSweepSpec,
    d: RunDecision,
    now: datetime,
    retry: RetryTimings,
) -> None:
    """Not a training failure (issue 27): a wrong or rotated key failed every retry within a minute and
    the run stayed Failed after the Secret was fixed. No retry is spent; the same attempt is tried again
    every `retry.store_denied_seconds`, so the run resumes by itself once the Secret works; the message
    names the Secret and the operation the store refused (the trainer's last line)."""
    secret = spec.store.credentials_secret
    creds = f"the Secret {secret!r} (spec.store.credentialsSecret)" if secret else "the trainer's environment"
    said = next((ln for ln in reversed((trouble.log_tail or "").splitlines()) if STORE_DENIED_MARKER in ln), "")
    refused = said.split(STORE_DENIED_MARKER, 1)[1].strip() if said else f"exit code {trouble.exit_code}"
    rs.state, rs.reason = RunState.Retrying, STORE_ACCESS_DENIED
    rs.message = (
        f"the store refused the credentials from {creds}: {refused}; not counted against retryLimit, tried "
        f"again every {retry.store_denied_seconds:g} s: fix the Secret and the run resumes from its checkpoint"
    )[:500]
    if old is None or old.state is not RunState.Retrying or old.reason != STORE_ACCESS_DENIED or rs.retry_at is None:
        rs.retry_at = rfc3339(now + timedelta(seconds=retry.store_denied_seconds))
        d.events.append(Event("RunStoreAccessDenied", f"{run.name}: {rs.message}", "Warning"))


def _failure_message(message: str, trouble: PodTrouble | None) -> str:
    """A failed job's message, with what its container said (exit code, the end of its log) when
    the kubelet kept it: the training-operator only says that a replica failed."""
    if trouble is None or trouble.waiting:
        return message[:500]
    return f"{message[:300]}; {trouble.summary()}"


def _job_ended(
    run: PlannedRun,
    rs: RunStatus,
    old: RunStatus | None,
    job: ObservedJob,
    retry_limit: int,
    d: RunDecision,
    now: datetime,
    trouble: PodTrouble | None,
    retry: RetryTimings,
) -> None:
    """The job failed, or "succeeded" without a results.json (then the trainer did not finish its contract)."""
    if job.phase is JobPhase.Succeeded:
        # whatever the backend calls it (the training-operator's PyTorchJobSucceeded, JobSet's), the trainer
        # exited 0 and broke its contract: it wrote no results.json (issue 27)
        reason = NO_RESULTS
        said = f" ({job.reason}: {job.message})" if job.reason or job.message else ""
        message = f"the trainer exited 0 without writing results.json{said}"[:500]
    else:
        reason = job.reason or "Failed"
        message = _failure_message(job.message or "job failed", trouble)
    if rs.attempts <= retry_limit:
        rs.state = RunState.Retrying
        failed_at = job.since or now
        if rs.retry_at is None or old is None or old.state is not RunState.Retrying:
            rs.retry_at = rfc3339(failed_at + timedelta(seconds=retry.backoff_seconds(rs.attempts)))
            d.events.append(
                Event(
                    "RunRetrying",
                    f"{run.name} attempt {rs.attempts} failed ({reason}: {message}); retry "
                    f"{rs.attempts}/{retry_limit} from checkpoint {rs.checkpoint_uri or '(none yet)'} "
                    f"at {rs.retry_at}",
                    "Warning",
                )
            )
        if not job.deleting:
            d.delete.append(job.name)
    else:
        rs.state = RunState.Failed
        if old is None or old.state is not RunState.Failed:
            d.events.append(Event("RunFailed", f"{run.name} failed after {rs.attempts} attempts: {message}", "Warning"))
    rs.reason, rs.message = reason, message


def _results_corrupt(
    run: PlannedRun,
    rs: RunStatus,
    old: RunStatus | None,
    job: ObservedJob | None,
    error: str,
    d: RunDecision,
    candidates: list[tuple[PlannedRun, RunStatus]],
    now: datetime,
) -> None:
    """The run trained to the end (results.json is written last) but its results cannot be read."""
    # The re-evaluation launched for this (Pending/Running with this reason) finished and
    # wrote an unreadable results.json again: do not loop.
    again = (
        job is not None
        and job.phase is JobPhase.Succeeded
        and old is not None
        and old.reason == RESULTS_CORRUPT
        and old.state in (RunState.Pending, RunState.Running)
    )
    rs.reason = RESULTS_CORRUPT
    if again or not rs.checkpoint_uri:
        why = "its re-evaluation wrote an unreadable results.json again" if again else "no checkpoint to evaluate from"
        rs.state, rs.retry_at = RunState.Failed, None
        rs.message = f"{error}; {why}"[:500]
        if old is None or old.state is not RunState.Failed:
            d.events.append(Event("RunFailed", f"{run.name} failed: {rs.message}", "Warning"))
        return
    rs.state = RunState.Retrying
    rs.message = (
        f"{error}; evaluating again from checkpoint {rs.checkpoint_uri} (the same attempt, not counted "
        "against retryLimit)"
    )[:500]
    if old is None or old.state is not RunState.Retrying or old.reason != RESULTS_CORRUPT:
        rs.retry_at = rfc3339(now)
        d.events.append(Event("RunResultsCorrupt", f"{run.name}: {rs.message}", "Warning"))
    if job is not None:
        if not job.deleting:
            d.delete.append(job.name)  # its name is reused by the re-evaluation
    else:
        candidates.append((run, rs))
