"""The local runner forecasts as the operator does: the same code (control/io/live_forecasts.py), shown in
its status line and in `miniseries status`'s forecast column, and an off-trend run is said."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest

from miniseries.api.sweepfile import parse_sweep
from miniseries.contract.store import open_store
from miniseries.control.io import act
from miniseries.control.io.store_reads import observe_runs
from miniseries.local.runner import Display, LocalForecaster, LocalSweep, run_states
from tests.unit.test_forecast_wiring import RATIO, _curve, finished, progress, spec, trend_bpb


def _sweep(tmp_path: Path, d5_above: float) -> LocalSweep:
    """d2-d4 finished on the trend, d5 half trained heading `d5_above` above it, in a local store."""
    s = spec("flag").model_dump(by_alias=True, exclude_none=True)
    ls = LocalSweep(parse_sweep({"apiVersion": "miniseries.dev/v1alpha1", "kind": "ScalingSweep",
                                 "metadata": {"name": "s"}, "spec": s}), tmp_path / "store", eval_bundle=None)  # fmt: skip
    jitter = {"d2": 0.004, "d3": -0.004, "d4": 0.002, "d5": d5_above}
    for i, p in enumerate(ls.plan.runs):
        run = ls.layout.run(p.name)
        bpb = trend_bpb(p.flops) * (1 + jitter[p.name])
        rows = _curve(p.steps, bpb / RATIO, upto=p.steps // 2 if p.name == "d5" else None, seed=i)
        ls.store.write_bytes(run.loss_curve, "".join(json.dumps(r) + "\n" for r in rows).encode())
        if p.name == "d5":
            pr = progress(p.steps // 2, p.steps)
            pr.updated_at = time.time()  # moved lately: training now, the local "job"
            ls.store.write_bytes(run.progress, pr.to_json())
            continue
        res = finished(p, bpb)
        ls.store.write_bytes(run.results, res.to_json())
    ls.store.write_bytes(ls.layout.tokenizer + "manifest.json", b"{}")
    return ls


@pytest.mark.parametrize(("above", "off"), [(0.2, True), (0.0, False)])
def test_the_local_runner_forecasts_as_the_operator_does(tmp_path: Path, above: float, off: bool) -> None:
    ls = _sweep(tmp_path, above)
    d5 = next(r for r in ls.plan.runs if r.name == "d5")
    said: list[str] = []
    fc = LocalForecaster(ls, d5)
    p = progress(d5.steps // 2, d5.steps)
    text = fc.update(p, said.append)
    operator = act.forecast(open_store(ls.store.uri), ls.layout, ls.spec, ls.plan,
                            observe_runs(ls.store, ls.layout, ls.runs()), {"d5": p.step})["d5"]  # fmt: skip
    assert fc.forecast == operator and operator.val_bpb is not None  # the same numbers, the same judgement
    half = max(operator.val_bpb - (operator.val_bpb_low or 0), (operator.val_bpb_high or 0) - operator.val_bpb)
    assert text == f"forecast val bpb {operator.val_bpb:.3f}±{half:.3f}" + (" OFF TREND" if off else "")
    assert (len(said) == 1 and said[0].startswith("warning: d5: forecast val bpb")) is off
    assert fc.update(p, said.append) == text and len(said) == int(off)  # not again within 5% of the steps
    line = Display(total_runs=4, total_flops=1.0, out=io.StringIO()).line(d5, p)
    assert "d5:" in line  # the status line the tick shows is that line + " | " + the forecast
    rows = {r["run"]: r for r in run_states(ls)}
    assert rows["d5"]["state"] == "Running" and rows["d5"]["forecast"] == text
    assert "forecast" not in rows["d2"]
