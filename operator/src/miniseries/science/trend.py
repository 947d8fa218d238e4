"""Is a run heading off its sweep's trend? The forecast of a run in flight against a power law of
the sweep's finished runs over compute (numpy; called by the operator's act.py, never by decide).

The trend is the report's own law, y = k * C^e by least squares on logs (science.fit.fit_power_law),
of the finished runs' final val bpb (else final training loss, when a forecast has no bpb) over
their training FLOPs. In an isoFLOP sweep the runs of one budget legitimately differ (the valley),
so the trend is fitted to each budget's best finished run (the frontier) and a run above it by
more than allowed is "far up the valley's wall" (below the frontier is a better model: not flagged).

A forecast is off trend when |forecast - trend| / trend exceeds what is allowed:

- the forecast's own interval, on the side toward the trend (its relative half-width);
- twice the finished runs' rms relative scatter around the trend;
- the trend's extrapolation: the slope's 95% half-width times |ln C - mean ln C of the finished
  runs| (a run larger than any finished one is an extrapolation, and its allowance grows with it);
- a margin, MARGIN (ISOFLOP_MARGIN in an isoFLOP sweep): the forecast intervals ignore model
  error and are too narrow (the replay's median |error| of the final val bpb is about 1% from 50%
  of the steps and 4% from 30%, more than the intervals say), and a pure power law without an
  irreducible term bends away from a sweep's curve at its ends.

Fewer than MIN_RUNS finished runs (or budgets) with distinct FLOPs: no trend, no flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from miniseries.science.fit import FitError, fit_power_law
from miniseries.science.fit.laws import PowerLaw

#: Finished runs (isoFLOP: budgets) a trend needs: two points fit any line exactly.
MIN_RUNS = 3
#: Margin over the forecast's interval and the trend's own uncertainty (relative).
MARGIN = 0.03
#: In an isoFLOP sweep runs sit on the valley's walls by design: only far up a wall is flagged.
ISOFLOP_MARGIN = 0.10


@dataclass(frozen=True)
class Trend:
    law: PowerLaw
    metric: str  # "valBpb" | "finalLoss"
    runs: list[str]
    scatter: float  # rms of the finished runs' relative residuals
    mean_log_flops: float
    isoflop: bool

    @property
    def margin(self) -> float:
        return ISOFLOP_MARGIN if self.isoflop else MARGIN

    def describe(self) -> str:
        what = "the isoFLOP frontier" if self.isoflop else "the sweep's trend"
        return f"{what} ({self.metric} ∝ C^{self.law.exponent:.3f}, {len(self.runs)} finished runs)"


def sweep_trend(points: list[tuple[str, float, float, float | None]], metric: str, *, isoflop: bool) -> Trend | None:
    """The trend of finished runs, `points` = (run, FLOPs, value, isoFLOP budget or None); None when
    there are too few (fewer than MIN_RUNS distinct FLOPs) or the law cannot be fitted."""
    pts = [(n, c, v, b) for n, c, v, b in points if c > 0 and v > 0 and math.isfinite(c) and math.isfinite(v)]
    if isoflop:
        best: dict[float | None, tuple[str, float, float, float | None]] = {}
        for p in pts:
            if p[3] not in best or p[2] < best[p[3]][2]:
                best[p[3]] = p
        pts = list(best.values())
    if len({c for _, c, _, _ in pts}) < MIN_RUNS:
        return None
    c = np.array([p[1] for p in pts])
    v = np.array([p[2] for p in pts])
    try:
        law = fit_power_law(c, v, f"{metric} over C")
    except FitError:
        return None
    resid = v / law(c) - 1
    return Trend(law, metric, [p[0] for p in pts], float(np.sqrt(np.mean(resid**2))),
                 float(np.mean(np.log(c))), isoflop)  # fmt: skip


@dataclass(frozen=True)
class Judgement:
    trend: float
    deviation: float  # (forecast - trend) / trend
    allowed: float
    off: bool


def judge(trend: Trend, flops: float, value: float, low: float, high: float) -> Judgement:
    """The forecast `value` [low, high] of a run of `flops` against the trend."""
    expected = float(trend.law(flops))
    deviation = (value - expected) / expected
    half = (value - low) / value if deviation > 0 else (high - value) / value
    lo_e, hi_e = trend.law.exponent_ci
    slope_half = (hi_e - lo_e) / 2 if math.isfinite(hi_e - lo_e) else float("inf")
    extrapolation = slope_half * abs(math.log(flops) - trend.mean_log_flops)
    allowed = max(half, 0.0) + 2 * trend.scatter + extrapolation + trend.margin
    # below the isoFLOP frontier is a better model, not a wasted run: only above is flagged there
    off = deviation > allowed if trend.isoflop else abs(deviation) > allowed
    return Judgement(expected, deviation, allowed, off)
