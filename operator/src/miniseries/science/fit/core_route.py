"""CORE against compute by two steps, as the OLMo ladder predicts task accuracy (Bhagia et al. 2024):
compute -> loss by the sweep's power law, loss -> CORE by a fitted sigmoid.

    CORE(L) = top / (1 + exp(k (L - L_mid)))

CORE is centred accuracy (0 at chance), so the sigmoid's floor is 0 and only its ceiling `top`
(<= 1), steepness k and midpoint L_mid are fitted: three parameters, at least MIN_POINTS runs.
Unlike the direct law (CORE linear in log C, laws.fit_core) it saturates: a target above `top`
is not reached at any compute, and the extrapolation says so. Which route a report uses is
decided by rollout error (fit/rollout.py): each is refitted without the largest run and asked
for its CORE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

from miniseries.science.fit.common import FitError, _positive_finite, _Result
from miniseries.science.fit.laws import PowerLaw, fit_power_law

#: Runs a sigmoid of three parameters needs (one more than it has).
MIN_POINTS = 4


@dataclass
class CoreSigmoid(_Result):
    top: float
    k: float
    l_mid: float
    points: int

    def predict(self, loss: Any) -> Any:
        return self.top / (1.0 + np.exp(self.k * (np.asarray(loss, dtype=float) - self.l_mid)))

    def loss_for(self, core: float) -> float | None:
        """The loss at which CORE reaches `core`; None above the ceiling (never reached)."""
        if not 0.0 < core < self.top:
            return None
        return self.l_mid + math.log(self.top / core - 1.0) / self.k


def fit_core_sigmoid(loss: Any, core: Any) -> CoreSigmoid:
    """Least squares of CORE on the sigmoid of loss, top in (0, 1], k > 0."""
    x = _positive_finite("loss", loss)
    y = np.asarray(core, dtype=float)
    if len(x) < MIN_POINTS or len(set(x.tolist())) < MIN_POINTS:
        raise FitError(f"CORE over loss (sigmoid) needs {MIN_POINTS} runs with CORE at distinct losses, got {len(x)}")
    if not np.isfinite(y).all():
        raise FitError("CORE values must be finite")
    mid0 = float(np.median(x))
    span = float(x.max() - x.min()) or 1.0

    def f(v: np.ndarray, top: float, k: float, mid: float) -> np.ndarray:
        return top / (1.0 + np.exp(k * (v - mid)))

    try:
        (top, k, mid), _ = optimize.curve_fit(
            f, x, y, p0=(min(1.0, max(0.05, 2 * float(y.max()))), 4.0 / span, mid0),
            bounds=([1e-6, 1e-6, float(x.min()) - 10 * span], [1.0, 1e3, float(x.max()) + 10 * span]), maxfev=20000,
        )  # fmt: skip
    except (RuntimeError, ValueError) as e:
        raise FitError(f"CORE over loss (sigmoid) did not converge: {e}") from None
    return CoreSigmoid(float(top), float(k), float(mid), len(x))


@dataclass
class TwoStepCore(_Result):
    """compute -> loss (power law) -> CORE (sigmoid): the same interface as laws.CoreFit where the
    extrapolation needs it (`slope`, `compute_for`, `predict`)."""

    loss_law: PowerLaw
    sigmoid: CoreSigmoid
    at_compute: float  # where `slope` is taken: the largest compute fitted

    def predict(self, compute: Any) -> Any:
        return self.sigmoid.predict(self.loss_law(compute))

    @property
    def slope(self) -> float:
        """CORE per decade of compute at `at_compute` (a finite difference)."""
        c = self.at_compute
        return float(self.predict(c * 10**0.05) - self.predict(c * 10**-0.05)) / 0.1

    def compute_for(self, core: float) -> float:
        """The compute at which the route reaches `core`; inf when it never does (above the ceiling,
        or a loss the power law reaches only as C -> inf)."""
        loss = self.sigmoid.loss_for(core)
        if loss is None or loss <= 0:
            return math.inf
        return self.loss_law.solve(loss)


def fit_two_step(compute: Any, loss: Any, core: Any) -> TwoStepCore:
    c = _positive_finite("compute", compute)
    return TwoStepCore(fit_power_law(c, loss, "loss over C"), fit_core_sigmoid(loss, core), float(c.max()))
