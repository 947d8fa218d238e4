"""What every fit shares: its error, its confidence level, JSON-ready results, input checks, and
the one least-squares line with a t-interval on its slope (power laws and the CORE fit use it)."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

import numpy as np
from scipy import stats

from miniseries.contract.doc import json_ready

#: Confidence level of every interval the fits report.
CONFIDENCE = 0.95


class FitError(ValueError):
    """The data cannot support this fit; the message says why and what would."""


class _Result:
    def to_dict(self) -> dict[str, Any]:
        return json_ready(asdict(self))  # type: ignore[call-overload,no-any-return]


def _positive_finite(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    bad = ~np.isfinite(x) | (x <= 0)
    if bad.any():
        raise FitError(
            f"{name} must be positive and finite; got {x[bad][:3].tolist()} at rows {np.flatnonzero(bad)[:3].tolist()}"
        )
    return x


def _line_fit(lx: Any, ly: Any) -> tuple[float, float, tuple[float, float], float, int]:
    """Ordinary least squares ly = intercept + slope * lx: (slope, intercept, the
    CONFIDENCE t-interval on the slope, r^2, n). Two points: a line, but no interval (nan)."""
    slope, intercept = np.polyfit(lx, ly, 1)
    pred = intercept + slope * lx
    ss_res = float(np.sum((ly - pred) ** 2))
    ss_tot = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    n = len(lx)
    if n > 2:
        se = math.sqrt(ss_res / (n - 2) / float(np.sum((lx - lx.mean()) ** 2)))
        t = float(stats.t.ppf(0.5 + CONFIDENCE / 2, n - 2))
        ci = (float(slope - t * se), float(slope + t * se))
    else:
        ci = (float("nan"), float("nan"))
    return float(slope), float(intercept), ci, float(r2), n
