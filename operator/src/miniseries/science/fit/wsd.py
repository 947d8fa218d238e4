"""A wsd sweep's answer: the compute-optimal tokens:params ratio with its bootstrap interval, and
each branch against its independent twin.

Approach 3 (chinchilla.fit_chinchilla) on the branch points of every depth; the optimum ratio
D_opt/N_opt at compute C follows from the fit (Hoffmann et al. eq. 4), and its interval from
the resamples that give fit_chinchilla its own intervals (one set of refits for both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from miniseries.contract.doc import json_ready
from miniseries.science.fit.chinchilla import ChinchillaFit, fit_chinchilla
from miniseries.science.fit.common import FitError

#: An interval wider than this many decades (high / low) does not identify the ratio: the sweep's
#: points cannot tell the two terms of the law apart, and the number is not reported.
IDENTIFIED_DECADES = 1.0


@dataclass
class OptimalRatio:
    compute: float
    ratio: float
    low: float  # 2.5th percentile over the resamples
    high: float  # 97.5th percentile
    resamples: int

    @property
    def identified(self) -> bool:
        """The 95% interval spans at most IDENTIFIED_DECADES decades (and is finite and positive)."""
        import math

        ok = all(math.isfinite(v) and v > 0 for v in (self.ratio, self.low, self.high))
        return ok and math.log10(self.high / self.low) <= IDENTIFIED_DECADES

    @property
    def note(self) -> str | None:
        """Why the ratio is not reported, and what would identify it; None when it is identified."""
        if self.identified:
            return None
        return ("not identified by this sweep: its 95% interval spans "
                f"{'an unknown number of' if not self.low > 0 else f'{_decades(self.low, self.high):.0f}'} decades "
                f"(bootstrap over {self.resamples} resamples). To identify it: branches at more tokens-per-parameter "
                "budgets on both sides of the optimum (the loss must turn up again at the high end), and depths "
                "over a wider range of model sizes, so that A/N^alpha and B/D^beta can be told apart")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return json_ready(dict(vars(self)) | {"identified": self.identified, "note": self.note})  # type: ignore[no-any-return]


def _decades(low: float, high: float) -> float:
    import math

    return math.log10(high / low) if low > 0 and high > 0 and math.isfinite(high / low) else float("inf")


def ratio_at(fit: ChinchillaFit, compute: float) -> float:
    """D_opt/N_opt at `compute`; a FitError when the law has no interior optimum (an exponent <= 0: the
    loss does not fall with N or with D, as a resample of a few noisy points can make it)."""
    if fit.alpha <= 0 or fit.beta <= 0:
        raise FitError(f"the fit has no compute-optimal split (alpha {fit.alpha:.3g}, beta {fit.beta:.3g}; "
                       "both must be > 0)")  # fmt: skip
    import math

    try:  # exponents near 0 with A far from B put the optimum at 0 or beyond float range
        n, d = fit.optimum(compute)
        ratio = float(d / n)
    except (ZeroDivisionError, OverflowError):
        ratio = math.nan
    if not (math.isfinite(ratio) and ratio > 0):
        raise FitError(f"the fit has no finite compute-optimal split at C = {compute:.3g} (alpha {fit.alpha:.3g}, "
                       f"beta {fit.beta:.3g}, A {fit.A:.3g}, B {fit.B:.3g})")  # fmt: skip
    return ratio


def optimal_ratio(params: Any, tokens: Any, loss: Any, compute: float, *, bootstrap: int = 100,
                  seed: int = 0, shared_exponent: bool = False) -> tuple[ChinchillaFit, OptimalRatio]:  # fmt: skip
    """The Approach-3 fit of the points (with its bootstrap intervals) and D_opt/N_opt at `compute` with a
    percentile interval over the same resamples. A resample with one model size or one token count, or whose
    law has no optimum, gives no ratio and is left out (`resamples` counts those that did)."""
    n, d, l_ = (np.asarray(x, dtype=float) for x in (params, tokens, loss))
    ratios: list[float] = []

    def take(fit: ChinchillaFit, idx: np.ndarray) -> None:
        if len(set(n[idx].tolist())) < 2 or len(set(d[idx].tolist())) < 2:
            return
        try:
            ratios.append(ratio_at(fit, compute))
        except FitError:
            return

    fit = fit_chinchilla(n, d, l_, bootstrap=bootstrap, seed=seed, on_resample=take, shared_exponent=shared_exponent)
    ratio = ratio_at(fit, compute)
    lo, hi = np.percentile(ratios, [2.5, 97.5]) if ratios else (float("nan"), float("nan"))
    return fit, OptimalRatio(compute, ratio, float(lo), float(hi), len(ratios))


def twin_differences(branches: dict[str, float], twins: dict[str, float]) -> dict[str, float]:
    """Relative difference (branch - twin) / twin of each point's final val bpb, keyed by the twin's budget id."""
    return {k: (branches[k] - twins[k]) / twins[k] for k in twins if k in branches and twins[k]}
