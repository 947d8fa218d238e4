"""The one decision point of a reconcile: what the operator should do next. Pure, no I/O.

`decide` takes everything one reconcile observed (observed.Observations: the accepted spec
and its plan, the PyTorchJobs that exist, what the store says about each run, the tokenizer,
the previous status and the time) and returns the sweep's whole new status (runs, totals,
conditions, phase) and the actions to take (launch, delete, suspend, create the tokenizer
Job, fit now, Events). The kopf handlers only observe and carry out, so every rule below is
unit-tested without a cluster, and a restarted operator reaches the same decisions from what
exists. The pieces: runs.py (each run's state and the launches), status.py (totals, phase,
conditions), spec_changes.py (which spec is reconciled).

Rules:
- results.json in the store is the truth that a run finished.
- Never more GPUs in flight than nodeGpus, never more runs than parallelism;
  runs start in plan order as soon as a slot frees. What holds a slot is counted
  from the cluster, level-triggered (`runs.slots_held`): every PyTorchJob of the sweep
  that is unfinished or being deleted (a failed one that is retried holds its slot
  until its foreground deletion has removed its pods), plus every launch recorded in status
  whose job is not visible yet (the handler records a launch under an optimistic
  lock on the sweep *before* creating the job, so two deciders can never both
  spend the same slot). The slot count never comes from a run's state in status.
- A failed attempt is retried while attempts <= retryLimit, after an exponential
  backoff; the failed job is deleted first (its name is reused, see jobs.py) and
  the retry resumes from the newest checkpoint (`--resume=auto`). Checkpoints
  are never deleted here.
- No run starts before the tokenizer exists when the sweep trains its own.
- A results.json that exists but cannot be read (`RunObservation.results_error`) is not a
  training failure: the run is evaluated again from its final checkpoint (the same attempt,
  outside retryLimit), once; if that one is unreadable too, or there is no checkpoint, the
  run fails with reason ResultsCorrupt and the message naming the object and the parse error.
- A spec change that would make a started run a different experiment is refused
  (spec_changes.py): the accepted spec is reconciled, Ready=False says why, once as an Event.
- Under Kueue (spec.resources.queueName) the slots above bound the jobs that exist; Kueue admits
  them (run_queue.py `kueue_state`): a run is Queued, Admitted or Preempted with Kueue's reason, the
  operator never unsuspends a queued job, spec.suspend deactivates its Workloads, and a
  preempted run keeps its job and attempt.
- A run in flight is forecast (forecasts.py) once its step moved on by 5% of its steps: the
  handler computes the due forecasts (`forecasts.due`, then act.forecast, which alone imports the
  science) into `Observations.forecasts`; decide records them and, under
  spec.training.forecast.policy, flags (RunOffTrend Event, Degraded) or stops (Failed, reason
  OffTrend, no retry) a run whose forecast lies off the sweep's trend.
- The fit runs when every run finished, one at least succeeded and none is recorded: decide
  says `fit`, the handler runs it (only then is the science imported) and status.with_fit
  records it.
"""

from __future__ import annotations

from dataclasses import dataclass

from miniseries.api.spec import RunState, ScalingSweepStatus
from miniseries.control.decide import forecast_status as forecasts
from miniseries.control.decide.observations import Observations, TokenizerState
from miniseries.control.decide.pod_troubles import TOKENIZER
from miniseries.control.decide.runs import STORE_ACCESS_DENIED, Actions, Event, decide_runs
from miniseries.control.decide.sweep_status import condition, fit_due, idle_gpus_condition, set_condition, sweep_status


@dataclass
class Decision:
    """The sweep's whole new status, and what to do to get the cluster there."""

    status: ScalingSweepStatus
    actions: Actions


def decide(o: Observations) -> Decision:
    spec, now, gen = o.spec, o.now, o.generation
    runs = decide_runs(
        spec,
        o.sweep,
        o.plan,
        o.jobs,
        o.store,
        o.previous.runs,
        o.tokenizer,
        now,
        pods=o.pods,
        workloads=o.workloads,
        retry=o.retry,
    )
    tokenizer_pod = o.pods.get(TOKENIZER)
    if tokenizer_pod is not None and (tokenizer_pod.waiting or o.tokenizer is TokenizerState.Failed):
        runs.stuck[TOKENIZER] = tokenizer_pod
    s = o.previous.model_copy(deep=True)
    if s.plan is None or not o.refused:
        s.plan = o.plan
    policy = spec.training.forecast.policy
    forecasts.apply(runs.runs, o.previous.runs, o.forecasts, policy, o.jobs, runs)
    s = sweep_status(
        s, runs.runs, suspended=spec.suspend, tokenizer=o.tokenizer, now=now, generation=gen, stuck=runs.stuck,
        off_trend=forecasts.off_trend(runs.runs, policy),
    )  # fmt: skip
    s.forecast_summary = forecasts.summary(runs.runs, s.plan)
    # what the runs see, not only the operator's own credentials: a trainer the store refused says so
    denied = [r for r in runs.runs if r.reason == STORE_ACCESS_DENIED and r.state is RunState.Retrying]
    if denied:
        msg = f"the store refused runs {', '.join(r.name for r in denied)}: {denied[0].message}"
        s.conditions = set_condition(s.conditions, "StoreReachable", False, "RunsDenied", msg[:1000], now, gen)
    else:
        s.conditions = set_condition(
            s.conditions, "StoreReachable", True, "StoreReadable", f"{spec.store.uri} read and written", now, gen
        )
    s.conditions = idle_gpus_condition(s, now, gen)
    if o.refused:
        msg = "; ".join(o.refused)[:1000]
        before = condition(o.previous, "Ready")
        s.conditions = set_condition(s.conditions, "Ready", False, "SpecChangeRefused", msg, now, gen)
        if before is None or before.reason != "SpecChangeRefused" or before.message != msg:
            runs.events.append(Event("SpecChangeRefused", msg, "Warning"))
    runs.fit = fit_due(s)
    return Decision(status=s, actions=runs)
