"""Forecasts in the control loop: when one is due, the trend check, and the policy (none, flag, stop).

Synthetic numbers throughout: finished runs whose val bpb follows 3.0 (C / 1e12)^-0.08 exactly, and a
run in flight whose curve heads 20% above that (flagged) or onto it (not flagged).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from miniseries.api.spec import RunForecast, RunState, ScalingSweepSpec, ScalingSweepStatus
from miniseries.api.status import PlannedRun
from miniseries.contract.layout import SweepLayout
from miniseries.contract.results import LossSummary, Progress, Provenance, RunResults
from miniseries.contract.schedule import lr_multipliers
from miniseries.contract.store import open_store
from miniseries.control.decide import forecast_status as forecasts
from miniseries.control.decide.observations import JobPhase, Observations, ObservedJob, RunObservation, TokenizerState
from miniseries.control.decide.reconcile import decide
from miniseries.control.decide.spec_changes import refused_changes
from miniseries.control.io import act
from miniseries.plan.planner import make_plan
from miniseries.science.forecast import law, schedule
from miniseries.science.trend import MARGIN, judge, sweep_trend

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WARMUP, WARMDOWN, RATIO = 5, 0.4, 0.58
ALPHA, C_ANNEAL, A = 0.4, 0.5, 1.0


def spec(policy: str = "flag", **over: Any) -> ScalingSweepSpec:
    return ScalingSweepSpec.model_validate({
        "depths": [2, 3, 4, 5],
        "model": {"aspectRatio": 32, "headDim": 32, "vocabSize": 512, "sequenceLength": 64},
        "training": {"warmupSteps": WARMUP, "warmdownRatio": WARMDOWN, "totalBatchTokens": 2048,
                     "deviceBatchSize": 1, "forecast": {"policy": policy}},
        "resources": {"gpusPerRun": 1, "nodeGpus": 4},
        "store": {"uri": "file:///tmp/s"},
        "data": {"shardsUri": "file:///tmp/d", "tokenizerUri": "file:///tmp/t"},
        **over,
    })  # fmt: skip


def trend_bpb(flops: float) -> float:
    return 3.0 * (flops / 1e12) ** -0.08


def finished(p: PlannedRun, bpb: float) -> RunResults:
    """The results a planned run ends with, its val bpb `bpb` (its loss on the trend's ratio)."""
    return RunResults(sweep="s", run=p.name, depth=p.depth, shape={}, params={}, target_tokens=1, tokens=1,
                      steps=p.steps, total_batch_tokens=2048, flops_per_token=1, flops=p.flops, wall_seconds=1.0,
                      gpu_seconds=1.0, world_size=1, device="cpu", loss=LossSummary(final=bpb / RATIO),
                      val_bpb=bpb, provenance=Provenance(lr_schedule={"warmup_steps": WARMUP,
                                                                      "warmdown_ratio": WARMDOWN}))  # fmt: skip


def progress(step: int, steps: int) -> Progress:
    return Progress(sweep="s", run="d5", depth=5, step=step, steps=steps, tokens=step * 2048, loss=3.0,
                    elapsed_seconds=60.0)  # fmt: skip


def running(run: str, attempt: int = 1, **kw: Any) -> ObservedJob:
    return ObservedJob(name=f"s-{run}", run=run, attempt=attempt, phase=JobPhase.Running, **kw)


def flagged(at_step: int = 3160) -> RunForecast:
    """d5 heading 20% above the trend (the numbers of the closing note's example)."""
    return RunForecast(at_step=at_step, val_bpb=2.436, val_bpb_low=2.421, val_bpb_high=2.452, final_loss=4.200,
                       final_loss_low=4.174, final_loss_high=4.228, method="prior", trend=2.030, metric="valBpb",
                       deviation=0.2, allowed=0.061, off_trend=True)  # fmt: skip


def observations(s: ScalingSweepSpec, previous: ScalingSweepStatus | None = None, **kw: Any) -> Observations:
    return Observations(sweep="s", spec=s, plan=make_plan(s), previous=previous or ScalingSweepStatus(),
                        jobs=kw.pop("jobs", []), store=kw.pop("store", {}), tokenizer=TokenizerState.NotNeeded,
                        now=NOW, generation=1, **kw)  # fmt: skip


def test_a_forecast_is_due_every_five_percent_of_a_runs_steps() -> None:
    s = spec()
    plan = make_plan(s)
    steps = {r.name: r.steps for r in plan.runs}  # d5: 6320 steps, so every 316
    store = {"d5": RunObservation(progress=progress(100, steps["d5"])), "d4": RunObservation(progress=None)}
    assert forecasts.due(plan, [running("d5"), running("d4")], store, []) == {"d5": 100}
    assert forecasts.due(plan, [], store, []) == {}  # no active job: not training
    assert forecasts.due(plan, [running("d5", deleting=True)], store, []) == {}
    before = decide(observations(s, jobs=[running("d5")], store=store,
                                 forecasts={"d5": RunForecast(at_step=100, refused="not enough steps yet")})).status  # fmt: skip
    assert before.runs[0].forecast is not None and before.runs[0].forecast.at_step == 100
    later = {"d5": RunObservation(progress=progress(415, steps["d5"]))}
    assert forecasts.due(plan, [running("d5")], later, before.runs) == {}  # 315 steps on: < 5%
    later = {"d5": RunObservation(progress=progress(416, steps["d5"]))}
    assert forecasts.due(plan, [running("d5")], later, before.runs) == {"d5": 416}


def test_flag_posts_one_event_and_degraded_names_the_run_and_the_numbers() -> None:
    s = spec("flag")
    jobs = [running("d5")]
    first = decide(observations(s, jobs=jobs, forecasts={"d5": flagged()}))
    d5 = first.status.runs[0]
    assert d5.name == "d5" and d5.state is RunState.Running and d5.forecast == flagged()
    events = [(e.reason, e.type) for e in first.actions.events]
    assert events == [("RunOffTrend", "Warning")]
    msg = first.actions.events[0].message
    assert msg == ("d5: forecast val bpb 2.4360 [2.4210, 2.4520] at step 3160/6320 is 20.0% above the sweep's "
                   "trend 2.0300 (allowed 6.1%)")  # fmt: skip
    degraded = {c.type: c for c in first.status.conditions}["Degraded"]
    assert (degraded.status, degraded.reason, degraded.message) == ("True", "RunOffTrend", msg)
    assert first.status.forecast_summary == "d5 2.436±0.016, 1 off trend"
    assert first.actions.delete == []
    again = decide(observations(s, first.status, jobs=jobs))  # no new forecast: the last one is kept
    assert again.actions.events == [] and again.status.runs[0].forecast == flagged()
    assert {c.type: c.reason for c in again.status.conditions}["Degraded"] == "RunOffTrend"
    back = flagged(4000).model_copy(
        update={"val_bpb": 2.05, "val_bpb_low": 2.04, "val_bpb_high": 2.06, "deviation": 0.01, "off_trend": False}
    )
    healed = decide(observations(s, again.status, jobs=jobs, forecasts={"d5": back}))
    assert {c.type: c.reason for c in healed.status.conditions}["Degraded"] == "AllHealthy"
    assert healed.status.forecast_summary == "d5 2.050±0.010"


def test_none_records_the_forecast_and_does_nothing_else() -> None:
    d = decide(observations(spec("none"), jobs=[running("d5")], forecasts={"d5": flagged()}))
    assert d.status.runs[0].forecast == flagged() and d.actions.events == [] and d.actions.delete == []
    assert {c.type: c.reason for c in d.status.conditions}["Degraded"] == "AllHealthy"


def test_stop_deletes_the_job_and_records_failed_off_trend_without_retry() -> None:
    s = spec("stop")
    first = decide(observations(s, jobs=[running("d5")], forecasts={"d5": flagged()}))
    d5 = first.status.runs[0]
    assert (d5.state, d5.reason) == (RunState.Failed, "OffTrend")
    assert d5.message is not None and d5.message.startswith("stopped (spec.training.forecast.policy stop): d5: ")
    assert first.actions.delete == ["s-d5"] and first.actions.touch_the_cluster()  # fenced like a launch
    assert [e.reason for e in first.actions.events] == ["RunOffTrend"]
    degraded = {c.type: c for c in first.status.conditions}["Degraded"]
    assert degraded.reason == "RunOffTrend" and degraded.message.startswith("stopped d5: forecast val bpb 2.4360")
    assert first.status.totals.runs_failed == 1
    # its job on its way out, then gone: still Failed, no second Event, never relaunched
    going = decide(observations(s, first.status, jobs=[running("d5", deleting=True)]))
    assert going.status.runs[0].state is RunState.Failed and going.actions.delete == [] and going.actions.events == []
    gone = decide(observations(s, going.status, jobs=[]))
    assert gone.status.runs[0].state is RunState.Failed and gone.status.runs[0].reason == "OffTrend"
    assert "d5" not in [r.name for r, _ in gone.actions.create] and gone.actions.events == []


def test_the_policy_may_change_while_runs_train() -> None:
    started = {"d5"}
    assert refused_changes(spec("flag"), spec("stop"), started, {"d2", "d3", "d4", "d5"}) == []
    assert refused_changes(spec("flag"), spec("flag", training={"seed": 1, "warmupSteps": WARMUP}), started, set())


def test_the_trend_check_with_synthetic_numbers() -> None:
    flops = [1e12, 4e12, 1.6e13]
    pts = [
        (f"r{i}", c, trend_bpb(c) * (1 + e), None)
        for i, (c, e) in enumerate(zip(flops, (0.004, -0.004, 0.002), strict=True))
    ]
    trend = sweep_trend(pts, "valBpb", isoflop=False)
    assert trend is not None and trend.law.exponent == pytest.approx(-0.08, abs=0.01)
    assert sweep_trend(pts[:2], "valBpb", isoflop=False) is None  # two runs: no trend, no flag
    c = 6.4e13  # 4x beyond the largest finished run: an extrapolation
    on = judge(trend, c, trend_bpb(c) * 1.01, trend_bpb(c) * 0.995, trend_bpb(c) * 1.025)
    assert not on.off and on.allowed > MARGIN
    off = judge(trend, c, trend_bpb(c) * 1.2, trend_bpb(c) * 1.19, trend_bpb(c) * 1.21)
    assert off.off and off.deviation == pytest.approx(0.2, rel=0.05) and off.allowed < 0.2
    # isoFLOP: each budget's best run is the frontier, and only above it is flagged
    iso = [("a", 1e12, 3.1, 1e12), ("a2", 1e12, 3.0, 1e12), ("b", 4e12, trend_bpb(4e12), 4e12),
           ("c", 1.6e13, trend_bpb(1.6e13), 1.6e13)]  # fmt: skip
    frontier = sweep_trend(iso, "valBpb", isoflop=True)
    assert frontier is not None and sorted(frontier.runs) == ["a2", "b", "c"]
    assert not judge(frontier, 4e12, trend_bpb(4e12) * 0.7, trend_bpb(4e12) * 0.69, trend_bpb(4e12) * 0.71).off
    assert judge(frontier, 4e12, trend_bpb(4e12) * 1.3, trend_bpb(4e12) * 1.29, trend_bpb(4e12) * 1.31).off


def _curve(steps: int, final: float, upto: int | None = None, seed: int = 0) -> list[dict[str, float]]:
    """A loss curve of the annealing law whose mean over the last tenth is `final` (logged every 4
    steps), with noise of 0.01 nats."""
    mult = lr_multipliers(steps, WARMUP, WARMDOWN)
    sch = schedule(mult)
    shape = law(sch.s1, sch.s2, 0.0, A, ALPHA, C_ANNEAL)
    loss = shape + (final - float(np.mean(shape[-max(1, steps // 10) :])))
    loss = loss + np.random.default_rng(seed).normal(0.0, 0.01, steps)
    last = upto or steps
    return [{"step": s, "tokens": s * 2048, "flops": 0.0, "loss": float(loss[s - 1]), "lr": mult[s - 1]}
            for s in range(1, last + 1) if s % 4 == 0 or s == last]  # fmt: skip


def _write_sweep(root: Path, s: ScalingSweepSpec, d5_above: float) -> dict[str, RunObservation]:
    """d2, d3, d4 finished on the trend; d5 half trained, heading `d5_above` above it."""
    layout = SweepLayout("team", "s")
    obs = {}
    jitter = {"d2": 0.004, "d3": -0.004, "d4": 0.002, "d5": d5_above}  # finished runs: near the trend, not on it
    for i, p in enumerate(make_plan(s).runs):
        run = layout.run(p.name)
        (root / run.root).mkdir(parents=True, exist_ok=True)
        bpb = trend_bpb(p.flops) * (1 + jitter[p.name])
        rows = _curve(p.steps, bpb / RATIO, upto=p.steps // 2 if p.name == "d5" else None, seed=i)
        (root / run.loss_curve).write_text("".join(json.dumps(r) + "\n" for r in rows))
        if p.name == "d5":
            obs[p.name] = RunObservation(progress=progress(p.steps // 2, p.steps))
            continue
        res = finished(p, bpb)
        (root / run.results).write_bytes(res.to_json())
        obs[p.name] = RunObservation(results=res)
    return obs


@pytest.mark.parametrize(("above", "off"), [(0.2, True), (0.0, False)])
def test_the_operator_forecasts_a_run_from_the_store_and_judges_it(tmp_path: Path, above: float, off: bool) -> None:
    s = spec("flag")
    plan = make_plan(s)
    obs = _write_sweep(tmp_path, s, above)
    due = forecasts.due(plan, [running("d5")], obs, [])
    assert due == {"d5": 3160}
    made = act.forecast(open_store(tmp_path.as_uri()), SweepLayout("team", "s"), s, plan, obs, due)
    f = made["d5"]
    assert f.refused is None and f.method == "prior" and f.metric == "valBpb" and f.val_bpb is not None
    d5_flops = next(r.flops for r in plan.runs if r.name == "d5")
    assert f.trend == pytest.approx(trend_bpb(d5_flops), rel=0.02)
    assert f.val_bpb == pytest.approx(trend_bpb(d5_flops) * (1 + above), rel=0.02)
    assert f.val_bpb_low is not None and f.val_bpb_low < f.val_bpb < (f.val_bpb_high or 0)
    assert f.off_trend is off and f.deviation == pytest.approx(above, abs=0.03)
    d = decide(observations(s, jobs=[running("d5")], store=obs, forecasts=made))
    off_events = [e.message for e in d.actions.events if e.reason == "RunOffTrend"]
    assert len(off_events) == int(off)
    if off:
        print("example flagged run:", off_events[0])


def test_a_short_trace_is_recorded_as_refused_with_the_sentence(tmp_path: Path) -> None:
    s = spec("flag")
    plan = make_plan(s)
    obs = _write_sweep(tmp_path, s, 0.0)
    run = SweepLayout("team", "s").run("d5")
    rows = (tmp_path / run.loss_curve).read_text().splitlines()[:2]  # steps 4 and 8
    (tmp_path / run.loss_curve).write_text("\n".join(rows) + "\n")
    made = act.forecast(open_store(tmp_path.as_uri()), SweepLayout("team", "s"), s, plan, obs, {"d5": 8})
    assert made["d5"] == RunForecast(at_step=8, refused="not enough steps yet (have 8, need 13)")
    d = decide(observations(s, jobs=[running("d5")], store=obs, forecasts=made))
    assert d.status.runs[0].forecast == made["d5"] and d.status.forecast_summary is None


@pytest.mark.parametrize("policy", ["flag", "stop"])
def test_a_nan_in_the_curve_is_refused_naming_the_step_and_flags_or_stops_the_run(tmp_path: Path, policy: str) -> None:
    """Issue 27 item 5: a NaN at step 80 was dropped and the run forecast as if nothing happened."""
    s = spec(policy)
    plan = make_plan(s)
    obs = _write_sweep(tmp_path, s, 0.0)
    run = SweepLayout("team", "s").run("d5")
    rows = [json.loads(r) for r in (tmp_path / run.loss_curve).read_text().splitlines()]
    for r in rows:
        if r["step"] == 80:
            r["loss"] = float("nan")
    (tmp_path / run.loss_curve).write_text("".join(json.dumps(r) + "\n" for r in rows))
    made = act.forecast(open_store(tmp_path.as_uri()), SweepLayout("team", "s"), s, plan, obs, {"d5": 3160})
    f = made["d5"]
    assert f.val_bpb is None and f.final_loss is None and f.off_trend
    assert f.refused is not None and "nan at step 80" in f.refused
    d = decide(observations(s, jobs=[running("d5")], store=obs, forecasts=made))
    d5 = d.status.runs[0]
    assert [e.reason for e in d.actions.events if e.reason == "RunOffTrend"] == ["RunOffTrend"]
    assert "nan at step 80" in {c.type: c for c in d.status.conditions}["Degraded"].message
    if policy == "stop":
        assert (d5.state, d5.reason) == (RunState.Failed, "NonFiniteLoss") and "s-d5" in d.actions.delete
        gone = decide(observations(s, d.status, jobs=[]))
        assert gone.status.runs[0].state is RunState.Failed and gone.status.runs[0].reason == "NonFiniteLoss"
        assert "d5" not in [r.name for r, _ in gone.actions.create]
    else:
        assert d5.state is RunState.Running and "s-d5" not in d.actions.delete
