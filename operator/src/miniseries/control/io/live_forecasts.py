"""The forecasts of runs in flight, made from the store: what the operator's act.forecast and the local
runner both call (no Kubernetes imports here; numpy and scipy load only when a forecast is due)."""

from __future__ import annotations

import logging

from miniseries.api.spec import PlanStatus, RunForecast, ScalingSweepSpec
from miniseries.contract.layout import SweepLayout
from miniseries.contract.store import Store
from miniseries.control.decide.observations import RunObservation

log = logging.getLogger(__name__)


def make_forecasts(
    store: Store, layout: SweepLayout, spec: ScalingSweepSpec, plan: PlanStatus,
    observed: dict[str, RunObservation], due: dict[str, int],
) -> dict[str, RunForecast]:  # fmt: skip
    """The forecasts `forecasts.due` asked for (run -> its step now), each judged against the trend of
    the sweep's finished runs: what `decide` records. A forecast that cannot be made is recorded with
    the reason (`refused`), never a number, and tried again 5% of its steps later."""
    if not due:
        return {}
    # numpy and scipy load only when a forecast is due, as for the fit
    from miniseries.plan.wsd_branches import warmdown_of
    from miniseries.science.forecast import ForecastRefused, NonFiniteLoss, live_forecast
    from miniseries.science.trend import judge, sweep_trend

    planned = {r.name: r for r in plan.runs}
    finished = {n: o.results for n, o in observed.items() if o.results is not None and n in planned}
    isoflop = spec.training.mode.value == "isoflop"
    trends = {
        metric: sweep_trend([(n, r.flops, v, r.budget_flops) for n, r in finished.items()
                             if (v := (r.val_bpb if metric == "valBpb" else r.loss.final)) is not None],
                            metric, isoflop=isoflop)
        for metric in ("valBpb", "finalLoss")
    }  # fmt: skip
    out: dict[str, RunForecast] = {}
    tr = spec.training
    for run, step in due.items():
        p = planned[run]
        try:
            shape, warmdown_steps = warmdown_of(p.role, p.cooldown_steps)  # a wsd run's (1-sqrt) cooldown
            f = live_forecast(store, layout.namespace, layout.sweep, run, steps=p.steps, warmup_steps=tr.warmup_steps,
                              warmdown_ratio=tr.warmdown_ratio, shape=shape, warmdown_steps=warmdown_steps,
                              finished_runs=sorted(finished))  # fmt: skip
        except NonFiniteLoss as e:  # a diverged run: flagged (stopped under stop) by forecasts.apply
            out[run] = RunForecast(at_step=step, refused=str(e)[:500], off_trend=True)
            continue
        except ForecastRefused as e:
            out[run] = RunForecast(at_step=step, refused=str(e)[:500])
            continue
        except Exception as e:  # a curve the law cannot take is no reason to stop reconciling
            log.warning("forecast of %s/%s failed: %s", layout.root, run, e)
            out[run] = RunForecast(at_step=step, refused=f"the forecast failed: {e}"[:500])
            continue
        rf = RunForecast(
            at_step=step, val_bpb=f.val_bpb, val_bpb_low=f.val_bpb_low, val_bpb_high=f.val_bpb_high,
            final_loss=f.final_loss, final_loss_low=f.final_loss_low, final_loss_high=f.final_loss_high,
            method=f.method + (" (degenerate: log-linear limit)" if f.fit.degenerate else ""),
        )  # fmt: skip
        metric = "valBpb" if f.val_bpb is not None else "finalLoss"
        trend = trends[metric]
        value, low, high = (
            (f.val_bpb, f.val_bpb_low, f.val_bpb_high) if metric == "valBpb"
            else (f.final_loss, f.final_loss_low, f.final_loss_high)
        )  # fmt: skip
        if trend is not None and value is not None and run not in trend.runs:
            j = judge(trend, p.flops, value, low if low is not None else value, high if high is not None else value)
            rf.trend, rf.metric, rf.deviation, rf.allowed, rf.off_trend = j.trend, metric, j.deviation, j.allowed, j.off
        out[run] = rf
    return out
