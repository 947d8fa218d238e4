"""`decide` as one decision point: observations in, the whole new status and the actions out."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from miniseries.api.spec import FitStatus, RunState, ScalingSweepSpec, ScalingSweepStatus
from miniseries.contract.results import LossSummary, RunResults
from miniseries.control.decide.observations import JobPhase, Observations, ObservedJob, RunObservation, TokenizerState
from miniseries.control.decide.reconcile import decide
from miniseries.control.decide.spec_changes import accept
from miniseries.control.decide.sweep_status import changed, with_fit
from miniseries.plan.planner import make_plan

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def spec(**over: Any) -> ScalingSweepSpec:
    base: dict[str, Any] = {
        "depths": [4, 6, 8],
        "resources": {"gpusPerRun": 2, "nodeGpus": 4},
        "store": {"uri": "file:///tmp/s"},
        "data": {"shardsUri": "file:///tmp/d", "tokenizerUri": "file:///tmp/t"},
        **over,
    }
    return ScalingSweepSpec.model_validate(base)


def results(run: str) -> RunResults:
    return RunResults(
        sweep="s", run=run, depth=int(run[1:]), shape={}, params={}, target_tokens=100, tokens=100, steps=10,
        total_batch_tokens=10, flops_per_token=1, flops=100.0, wall_seconds=60, gpu_seconds=3600.0,
        world_size=2, device="cpu", loss=LossSummary(final=3.0), val_bpb=1.2,
    )  # fmt: skip


def observations(s: ScalingSweepSpec, previous: ScalingSweepStatus | None = None, **kw: Any) -> Observations:
    return Observations(sweep="s", spec=s, plan=make_plan(s), previous=previous or ScalingSweepStatus(),
                        jobs=kw.pop("jobs", []), store=kw.pop("store", {}),
                        tokenizer=kw.pop("tokenizer", TokenizerState.NotNeeded), now=kw.pop("now", NOW),
                        generation=kw.pop("generation", 1), **kw)  # fmt: skip


def test_a_new_sweep_gets_its_whole_status_and_its_first_wave() -> None:
    s = spec()
    d = decide(observations(s))
    st = d.status
    assert [(r.name, a) for r, a in d.actions.create] == [("d8", 1), ("d6", 1)]  # 4 GPUs, 2 per run
    assert st.plan == make_plan(s) and st.phase == "Pending" and st.progress == "0/3"
    assert st.totals.runs == 3 and st.observed_generation == 1
    conds = {c.type: (c.status, c.reason) for c in st.conditions}
    assert conds == {"Ready": ("True", "SpecValid"), "Degraded": ("False", "AllHealthy"),
                     "Progressing": ("True", "RunsInFlight"), "StoreReachable": ("True", "StoreReadable"),
                     "IdleGpus": ("False", "NodesFullyUsed")}  # fmt: skip
    assert d.actions.touch_the_cluster() and not d.actions.fit


def test_deciding_again_from_what_was_recorded_changes_nothing() -> None:
    """The poll's case: the same observations a minute later give the same status, so nothing is patched."""
    s = spec()
    first = decide(observations(s))
    jobs = [
        ObservedJob(name=f"s-{r.name}", run=r.name, attempt=1, phase=JobPhase.Running) for r, _ in first.actions.create
    ]
    second = decide(observations(s, first.status, jobs=jobs, now=NOW + timedelta(seconds=10)))
    third = decide(observations(s, second.status, jobs=jobs, now=NOW + timedelta(seconds=70)))
    assert changed(second.status, first.status)  # Pending -> Running
    assert not changed(third.status, second.status)
    assert not third.actions.touch_the_cluster() and third.actions.events == []


def test_a_finished_sweep_asks_for_its_fit_once() -> None:
    s = spec()
    store = {r: RunObservation(results=results(r), results_uri=f"file:///tmp/s/{r}/results.json")
             for r in ("d4", "d6", "d8")}  # fmt: skip
    d = decide(observations(s, store=store))
    assert d.actions.fit and d.status.phase == "Fitting" and d.actions.create == []
    fitted = with_fit(d.status, FitStatus(), "file:///tmp/s/report/", None, NOW)
    assert fitted.phase == "Succeeded" and fitted.report_uri == "file:///tmp/s/report/"
    again = decide(observations(s, fitted, store=store))
    assert not again.actions.fit and not changed(again.status, fitted) and again.actions.events == []
    failed = with_fit(d.status, None, None, "scipy exploded", NOW)
    assert failed.phase == "Fitting" and {c.type: c.reason for c in failed.conditions}["Degraded"] == "FitFailed"


def test_a_refused_change_keeps_the_accepted_plan_and_says_so_once() -> None:
    old, new = spec(), spec(model={"sequenceLength": 1024}, suspend=True)
    jobs = [ObservedJob(name="s-d8", run="d8", attempt=1, phase=JobPhase.Running)]
    acc = accept(old, new, make_plan(new), jobs, ScalingSweepStatus())
    assert acc.refused and not acc.save and acc.spec.suspend and acc.spec.model == old.model
    o = replace(observations(acc.spec, jobs=jobs), plan=acc.plan, refused=acc.refused)
    d = decide(o)
    ready = {c.type: c for c in d.status.conditions}["Ready"]
    assert (ready.status, ready.reason) == (
        "False",
        "SpecChangeRefused",
    ) and "spec.model.sequenceLength" in ready.message
    assert [e.reason for e in d.actions.events] == ["SpecChangeRefused"]
    assert d.actions.suspend == {"s-d8": True} and d.status.runs[0].state is RunState.Suspended
    again = decide(replace(o, previous=d.status))
    assert again.actions.events == [] and not changed(again.status, d.status)


def test_an_unchanged_spec_is_neither_saved_nor_planned_again() -> None:
    s = spec()
    plan = make_plan(s)
    acc = accept(s, s, plan, [], ScalingSweepStatus())
    assert acc.plan is plan and not acc.save and not acc.refused
    assert accept(None, s, plan, [], ScalingSweepStatus()).save


def test_a_non_finite_number_is_not_a_change_on_every_poll() -> None:
    s = spec()
    d = decide(observations(s))
    d.status.runs[0].loss = float("nan")  # written as absent, so read back without it
    assert not changed(d.status, d.status.model_copy(update={"runs": [r.model_copy(update={"loss": None})
                                                                       for r in d.status.runs]}))  # fmt: skip


def test_deciding_an_unfinished_sweep_loads_no_numerical_science() -> None:
    """In a clean interpreter: the control loop's modules, and a whole decision for a sweep still
    running, leave numpy, scipy, matplotlib and the science package unloaded."""
    code = """
import json, sys
from dataclasses import replace
from datetime import UTC, datetime
import miniseries.control.io.handlers  # the kopf side: observe, decide, act
from miniseries.api.spec import ScalingSweepSpec, ScalingSweepStatus
from miniseries.control.decide.reconcile import decide
from miniseries.control.decide.observations import JobPhase, Observations, ObservedJob, TokenizerState
from miniseries.plan.planner import make_plan
s = ScalingSweepSpec.model_validate({"depths": [4, 6], "store": {"uri": "file:///tmp/s"},
                                     "data": {"shardsUri": "file:///tmp/d"}})
o = Observations(sweep="s", spec=s, plan=make_plan(s), previous=ScalingSweepStatus(),
                 jobs=[ObservedJob(name="s-d6", run="d6", attempt=1, phase=JobPhase.Running)], store={},
                 tokenizer=TokenizerState.Ready, now=datetime.now(UTC))
d = decide(o)
assert d.status.phase == "Running" and not d.actions.fit, d
# d6 trains: a forecast is due (deciding that is pure); computing it is act.forecast's, like the fit
from miniseries.contract.results import Progress
from miniseries.control.decide import forecast_status as forecasts
from miniseries.control.decide.observations import RunObservation
steps = o.plan.runs[0].steps
store = {"d6": RunObservation(progress=Progress(sweep="s", run="d6", depth=6, step=steps // 2, steps=steps, tokens=1))}
assert forecasts.due(o.plan, o.jobs, store, d.status.runs) == {"d6": steps // 2}
d = decide(replace(o, store=store, previous=d.status))
assert d.status.runs[0].step == steps // 2, d.status.runs[0]
watched = ["numpy", "scipy", "matplotlib", "miniseries.science"]
print(json.dumps(sorted({w for w in watched for m in sys.modules if m == w or m.startswith(w + ".")})))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []
