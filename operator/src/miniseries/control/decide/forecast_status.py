"""Forecasts of runs in flight, in the control loop: when one is due, and what a forecast off the
sweep's trend does under spec.training.forecast.policy. Pure, no numpy.

A forecast is an observation the operator makes from the store, like the jobs and the progress
it reads: `due` (pure) says which runs have moved on by FORECAST_EVERY of their steps since their
last forecast (status.runs[].forecast.atStep); act.forecast computes those (the science loads only
there, as for the fit) into `Observations.forecasts`; `decide` records them (`apply`) and acts on
them under the policy:

- none: recorded, nothing else.
- flag: a run whose forecast is off trend (science/trend.py: its forecast final val bpb differs from
  the power law of the sweep's finished runs over FLOPs by more than its interval plus margins
  allow) gets one `RunOffTrend` Warning Event, and Degraded (reason RunOffTrend) names it with the
  numbers while it trains.
- stop: the same, and the run is stopped: its job deleted and the run recorded Failed with reason
  OffTrend, never retried.

A loss curve with a NaN or infinite loss gets no forecast (science.forecast.NonFiniteLoss names the
step) and counts as off trend: flagged under flag, stopped (reason NonFiniteLoss) under stop. The
trainer stops itself on its first NaN; this is the operator's own check of what it reads.
"""

from __future__ import annotations

import math

from miniseries.api.spec import ForecastPolicy, PlanStatus, RunForecast, RunState, RunStatus
from miniseries.control.decide.observations import ObservedJob, RunObservation
from miniseries.control.decide.runs import Actions, Event

#: A run is forecast again once its step moved on by this fraction of its steps.
FORECAST_EVERY = 0.05
OFF_TREND = "OffTrend"
NON_FINITE = "NonFiniteLoss"
#: The reasons `apply` stops a run for (it stays stopped: never retried).
STOPPED = (OFF_TREND, NON_FINITE)
IN_FLIGHT = (RunState.Pending, RunState.Running, RunState.Suspended)


def due(plan: PlanStatus, jobs: list[ObservedJob], store: dict[str, RunObservation],
        previous: list[RunStatus]) -> dict[str, int]:  # fmt: skip
    """Run -> its step now, for every training run (an active job, progress in the store, no results)
    whose step moved on by FORECAST_EVERY of its steps since its last forecast (or that has none)."""
    active = {j.run for j in jobs if j.active and not j.deleting}
    prev = {r.name: r for r in previous}
    out = {}
    for run in plan.runs:
        obs = store.get(run.name)
        old = prev.get(run.name)
        if run.name not in active or obs is None or obs.results is not None or obs.progress is None:
            continue
        if old is not None and old.state is RunState.Failed:
            continue  # stopped (OffTrend): its job is on its way out
        step, steps = obs.progress.step, obs.progress.steps or run.steps
        if step <= 0 or step >= steps:
            continue
        last = old.forecast.at_step if old is not None and old.forecast is not None else None
        if last is None or step - last >= max(1, math.ceil(FORECAST_EVERY * steps)) or step < last:
            out[run.name] = step
    return out


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def describe(run: RunStatus) -> str:
    """'d12: forecast val bpb 1.2340 [1.2200, 1.2480] at step 400/800 is 6.1% above the sweep's trend
    1.1630 (allowed 4.5%)'."""
    f = run.forecast
    assert f is not None
    if f.refused is not None:  # a non-finite loss: the sentence names the step
        return f"{run.name}: {f.refused}"
    what, value, low, high = (
        ("val bpb", f.val_bpb, f.val_bpb_low, f.val_bpb_high)
        if f.metric == "valBpb"
        else ("final loss", f.final_loss, f.final_loss_low, f.final_loss_high)
    )
    dev = f.deviation or 0.0
    return (
        f"{run.name}: forecast {what} {_num(value)} [{_num(low)}, {_num(high)}] at step {f.at_step}/{run.steps} is "
        f"{abs(dev):.1%} {'above' if dev > 0 else 'below'} the sweep's trend {_num(f.trend)} "
        f"(allowed {(f.allowed or 0.0):.1%})"
    )


def apply(
    runs: list[RunStatus],
    previous: list[RunStatus],
    fresh: dict[str, RunForecast],
    policy: ForecastPolicy,
    jobs: list[ObservedJob],
    actions: Actions,
) -> None:
    """Record the fresh forecasts (a run without one keeps its last) and act on those off trend."""
    prev = {r.name: r for r in previous}
    job_of = {j.run: j for j in jobs}
    for rs in runs:
        old = prev.get(rs.name)
        rs.forecast = fresh.get(rs.name) or (old.forecast if old is not None else None)
        stopped = old is not None and old.state is RunState.Failed and old.reason in STOPPED
        if rs.state is RunState.Succeeded:
            continue  # the results are in: the forecast is history
        if stopped:
            rs.state, rs.reason, rs.message, rs.retry_at = RunState.Failed, old.reason, old.message, None
        elif (
            policy is not ForecastPolicy.none
            and rs.state in IN_FLIGHT
            and rs.forecast is not None
            and rs.forecast.off_trend
        ):
            was = old is not None and old.forecast is not None and old.forecast.off_trend
            msg = describe(rs)
            if policy is ForecastPolicy.stop:
                reason = NON_FINITE if rs.forecast.refused is not None else OFF_TREND
                rs.state, rs.reason, rs.retry_at = RunState.Failed, reason, None
                rs.message = f"stopped (spec.training.forecast.policy stop): {msg}"[:500]
                actions.events.append(Event("RunOffTrend", f"{rs.message}", "Warning"))
            elif not was:
                actions.events.append(Event("RunOffTrend", msg, "Warning"))
        else:
            continue
        if rs.state is RunState.Failed:
            job = job_of.get(rs.name)
            if job is not None and not job.deleting and job.name not in actions.delete:
                actions.delete.append(job.name)
            if job is not None:
                actions.suspend.pop(job.name, None)


def off_trend(runs: list[RunStatus], policy: ForecastPolicy) -> str | None:
    """Degraded's message naming every unfinished run off trend (stopped ones too); None if none."""
    if policy is ForecastPolicy.none:
        return None
    flagged = [
        r for r in runs
        if r.forecast is not None and r.forecast.off_trend
        and (r.state in IN_FLIGHT or (r.state is RunState.Failed and r.reason in STOPPED))
    ]  # fmt: skip
    if not flagged:
        return None
    return "; ".join(("stopped " if r.state is RunState.Failed else "") + describe(r) for r in flagged)[:1000]


def summary(runs: list[RunStatus], plan: PlanStatus | None) -> str | None:
    """The printer column: the largest unfinished run's forecast val bpb (its interval), and how many
    runs are off trend, e.g. 'd12 1.234±0.012, 1 off trend'. None while no run has a number."""
    flops = {r.name: r.flops for r in plan.runs} if plan is not None else {}
    live = [r for r in runs if r.state in IN_FLIGHT and r.forecast is not None and r.forecast.val_bpb is not None]
    off = sum(1 for r in runs if r.forecast is not None and r.forecast.off_trend and r.state is not RunState.Succeeded)
    if not live:
        return f"{off} off trend" if off else None
    top = max(live, key=lambda r: (flops.get(r.name, 0.0), r.depth))
    f = top.forecast
    assert f is not None and f.val_bpb is not None
    half = max(f.val_bpb - (f.val_bpb_low or f.val_bpb), (f.val_bpb_high or f.val_bpb) - f.val_bpb)
    return f"{top.name} {f.val_bpb:.3f}±{half:.3f}" + (f", {off} off trend" if off else "")
