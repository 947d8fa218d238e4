"""The forecast on real training curves: the tiny sweep's own, not curves drawn from the forecaster's law.

tests/support/tiny_traces.json holds the three runs of examples/tiny.yaml as trained on a CPU
(`make tiny-traces` regenerates it: tests/support/make_tiny_traces.py). Each run is cut at a
fraction of its steps and forecast with `replay` (science/forecast.py, what `miniseries forecast`
runs), its prior from the other two runs; the forecast of the final training loss is compared with
the loss the run really ended at (results.json's loss.final).

The tolerance comes from the data and from what a forecast is for (telling a run on the sweep's
trend from one off it):
- closer to its own final loss than to any other depth's: within half the gap to the nearest
  other run's final loss (d1-d2-d3: 6.34, 5.57, 4.80, so about 0.38, 6-8%);
- better than not forecasting: closer than the loss at the cut itself (the mean of the last tenth
  of the steps before it, as loss.final is of the last tenth), which still has 4-13% to fall.
Both fail for a forecaster that only extrapolates flat, and for one whose fit runs away.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from miniseries.science.forecast import ReplayRow, RunTrace, median_abs, replay

FIXTURE = Path(__file__).resolve().parents[1] / "support" / "tiny_traces.json"
#: Cuts before the warmdown (warmdownRatio 0.4 of examples/tiny.yaml): alpha and C come from the other runs.
BEFORE_WARMDOWN = (0.4, 0.5, 0.6)
#: Cuts inside it, where the run's own warmdown points inform C (shrunk to the other runs').
IN_WARMDOWN = (0.65, 0.7, 0.8, 0.9)


def traces() -> list[RunTrace]:
    doc = json.loads(FIXTURE.read_text())
    return [
        RunTrace(
            run=r["run"],
            multipliers=r["multipliers"],
            steps=r["steps"],
            losses=r["losses"],
            final_loss=r["final_loss"],
            val_bpb=r["val_bpb"],
            finished_at=r["finished_at"],
        )
        for r in doc["runs"]
    ]


def loss_at_cut(run: RunTrace, cut: int) -> float:
    window = max(1, len(run.multipliers) // 10)
    return float(np.mean([loss for s, loss in zip(run.steps, run.losses, strict=True) if cut - window < s <= cut]))


def misses(runs: list[RunTrace], rows: list[ReplayRow]) -> list[str]:
    finals = {r.run: r.final_loss for r in runs}
    out = []
    for row in rows:
        run = next(r for r in runs if r.run == row.run)
        actual = finals[row.run]
        assert actual is not None
        if row.forecast is None:
            out.append(f"{row.run}@{row.cut_step}: refused ({row.refused})")
            continue
        error = abs(row.forecast.final_loss - actual)
        half_gap = min(abs(actual - other) for name, other in finals.items() if name != row.run and other) / 2
        naive = abs(loss_at_cut(run, row.cut_step) - actual)
        if not error < half_gap or not error < naive:
            out.append(
                f"{row.run}@{row.cut_step}/{row.steps} ({row.forecast.method}): forecast {row.forecast.final_loss:.4f}, "
                f"actual {actual:.4f}, error {error:.4f} (allowed: < {half_gap:.4f} and < {naive:.4f}, the cut's own loss)"
            )
    return out


def test_the_fixture_is_real_training() -> None:
    runs = traces()
    assert [r.run for r in runs] == ["d1", "d2", "d3"]
    for r in runs:
        assert r.steps == list(range(1, len(r.multipliers) + 1)), r.run  # every step logged
        assert r.final_loss is not None and r.losses[0] > r.final_loss  # it learned
        # noisy, as real curves are: steps where the loss went up
        assert sum(b > a for a, b in zip(r.losses, r.losses[1:], strict=False)) > len(r.losses) // 10, r.run


@pytest.mark.parametrize("upto", BEFORE_WARMDOWN)
def test_forecast_before_the_warmdown_predicts_the_final_loss(upto: float) -> None:
    runs = traces()
    rows = replay(runs, upto, "others", bootstrap=20)
    assert misses(runs, rows) == []


#: d2 (112 steps) flattens over its last 30 steps (the mean of ten steps: 5.60, 5.62, 5.60, 5.56, 5.56,
#: 5.57) while its learning rate still falls by a third: the law, with any C the data up to the cut
#: support, forecasts more annealing than came. Measured 2026-12-07 (`replay(traces(), upto, "others")`):
#: d2 cut at 89 forecasts 5.485 (-1.6%) where the cut's own loss is 0.050 off; at 100, 5.486 where the
#: cut's own loss is 0.0054 off, less than the law's miss of d2's final loss fitted to its WHOLE curve
#: (0.0126, `fit_curve`). Strict: when a forecast does beat these cuts, the marker has to go.
LATE_D2 = pytest.mark.xfail(
    strict=True,
    reason="d2's last 30 steps flatten: the law forecasts 1.6% more annealing than came, and at 0.9 the "
    "cut's own loss (0.0054 off) beats even the law fitted to d2's whole curve (0.0126 off)",
)


@pytest.mark.parametrize("upto", [pytest.param(u, marks=LATE_D2) if u >= 0.8 else u for u in IN_WARMDOWN])
def test_forecast_in_the_warmdown_predicts_the_final_loss(upto: float) -> None:
    runs = traces()
    rows = replay(runs, upto, "others", bootstrap=20)
    assert misses(runs, rows) == []


@pytest.mark.parametrize("priors", ["others", "earlier"])
def test_forecast_in_the_warmdown_never_runs_away(priors: str) -> None:
    """Every cut inside the warmdown (0.65-0.95) forecasts a final loss closer to the run's own than to
    any other depth's, whatever the prior. C was once fitted to the run's own first warmdown steps
    alone and ran away (d3 cut at 167/258: -2.10 for 4.80; d2 at 84/112: 4.89 for 5.57)."""
    runs = traces()
    finals = {r.run: r.final_loss for r in runs}
    for upto in (0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        for row in replay(runs, upto, priors, bootstrap=20):
            actual = finals[row.run]
            assert actual is not None
            if row.forecast is None:  # "earlier": d1 finished first, and early in its warmdown has no prior
                assert priors == "earlier" and row.run == "d1", row.refused
                continue
            half_gap = min(abs(actual - other) for name, other in finals.items() if name != row.run and other) / 2
            f = row.forecast
            assert abs(f.final_loss - actual) < half_gap, (upto, row.run, f.final_loss, actual, f.fit)
            assert f.final_loss_low < f.final_loss < f.final_loss_high, (upto, row.run)


def test_the_readme_quotes_the_replay_on_these_curves() -> None:
    """docs/science.md's "median |error| of the final loss is X% from half of a run's steps, Y% from 30%"
    is `miniseries forecast --upto 0.5` and `--upto 0.3` (priors: earlier, its default) on this fixture."""
    readme = (Path(__file__).resolve().parents[2] / "docs" / "science.md").read_text().replace("\n", " ")
    said = re.search(
        r"median \|error\| of the final loss is ([\d.]+)% from half of a run's steps, ([\d.]+)% from 30%", readme
    )
    assert said, "docs/science.md no longer quotes the replay: update this test"
    runs = traces()
    for upto, figure in ((0.5, said.group(1)), (0.3, said.group(2))):
        median = median_abs([row.loss_error for row in replay(runs, upto, "earlier", bootstrap=20)])
        assert median is not None and f"{100 * median:.1f}" == figure, (upto, median, figure)


def test_the_fixture_is_the_sweep_examples_tiny_quotes() -> None:
    """examples/tiny.yaml's "Final losses d1 X, d2 Y, d3 Z" (its `make local`) are these runs' results."""
    text = (Path(__file__).resolve().parents[2] / "examples" / "tiny.yaml").read_text().replace("\n#", "")
    said = re.search(r"Final losses[^:]*: d1 (\d+\.\d+),\s*d2 (\d+\.\d+),\s*d3 (\d+\.\d+)", text)
    assert said, "examples/tiny.yaml no longer quotes its final losses: update this test"
    finals = [r.final_loss for r in traces()]
    assert [f"{f:.3f}" for f in finals if f is not None] == list(said.groups())
