"""The wsd answer: Approach 3 on branch points recovers a known law's optimal ratio inside its interval."""

from __future__ import annotations

import numpy as np
import pytest

from miniseries.science.fit.chinchilla import ChinchillaFit
from miniseries.science.fit.common import FitError
from miniseries.science.fit.wsd import optimal_ratio, ratio_at, twin_differences


def test_optimal_ratio_of_a_known_law_is_inside_the_interval() -> None:
    law = ChinchillaFit(E=1.8, A=400.0, B=400.0, alpha=0.34, beta=0.34, points=0, huber_objective=0.0)
    rng = np.random.default_rng(1)
    n = np.repeat([2e7, 5e7, 1e8, 2e8], 4)
    d = n * np.tile([4.0, 8.0, 16.0, 32.0], 4)
    loss = law.loss(n, d) * (1 + rng.normal(0, 0.002, len(n)))
    c = 6 * 1e8 * 8e8
    fit, r = optimal_ratio(n, d, loss, c, bootstrap=40)
    truth = ratio_at(law, c)  # alpha == beta and A == B: D_opt = N_opt, ratio 1
    assert abs(truth - 1.0) < 1e-9
    assert r.low <= truth <= r.high, r
    assert r.low < r.ratio < r.high and r.resamples >= 35
    assert abs(fit.alpha - 0.34) < 0.1


def test_twin_differences_are_relative() -> None:
    assert twin_differences({"8": 1.01, "16": 0.9}, {"8": 1.0}) == {"8": 0.010000000000000009}


def test_a_law_without_an_optimum_has_no_ratio() -> None:
    """An exponent <= 0 (the loss does not fall with D: a resample of a few noisy tiny-model points can fit
    that) has no compute-optimal split: a FitError naming the exponents, never a complex "ratio"."""
    flat = ChinchillaFit(E=1.8, A=4.0, B=15.0, alpha=0.15, beta=-0.02, points=9, huber_objective=0.0)
    with pytest.raises(FitError, match=r"no compute-optimal split \(alpha 0.15, beta -0.02"):
        ratio_at(flat, 1e12)


def test_an_interval_over_decades_is_not_identified_and_never_a_number() -> None:
    """Issue 32: the tiny WSD report stated "1.29e12 [9.4e-4, 2.3e20]". Two close depths at three noisy
    budgets cannot tell A/N^alpha from B/D^beta: the ratio is reported as not identified, with what would."""
    from miniseries.science.fit.wsd import OptimalRatio
    from miniseries.science.report.document import fit_status

    tiny = OptimalRatio(compute=1e12, ratio=1.29e12, low=9.4e-4, high=2.3e20, resamples=100)
    assert not tiny.identified and tiny.note is not None
    assert tiny.note.startswith("not identified by this sweep: its 95% interval spans 23 decades")
    assert "budgets on both sides of the optimum" in tiny.note
    assert tiny.to_dict()["identified"] is False
    good = OptimalRatio(compute=1e12, ratio=10.0, low=6.0, high=25.0, resamples=100)
    assert good.identified and good.note is None
    assert not OptimalRatio(1e12, 10.0, float("nan"), float("nan"), 0).identified
    doc = {"fits": {"wsd_optimal_ratio": tiny.to_dict()}, "runs": [], "problems": [tiny.note], "partial": True,
           "checks": {"curves_cross": None}, "runs_finished": 6}  # fmt: skip
    assert fit_status(doc).tokens_per_param is None  # never the number in status.fit
    doc["fits"]["wsd_optimal_ratio"] = good.to_dict()
    assert fit_status(doc).tokens_per_param == 10.0


def test_a_fit_flags_each_parameter_on_a_bound() -> None:
    """Every Approach-3 fit in the report says when a parameter sits at the edge of its range."""
    healthy = ChinchillaFit(E=1.8, A=400.0, B=400.0, alpha=0.34, beta=0.28, points=9, huber_objective=0.0)
    assert healthy.on_bounds == [] and healthy.to_dict()["on_bounds"] == []
    bad = ChinchillaFit(E=1e-9, A=4.0, B=15.0, alpha=3.1, beta=-0.02, points=9, huber_objective=0.0)
    flags = bad.on_bounds
    assert len(flags) == 3 and flags[0].startswith("E = 1e-09: the irreducible loss went to its bound 0")
    assert "alpha = 3.1 beyond 2" in flags[1] and "beta = -0.02 <= 0: the loss does not fall with D" in flags[2]


def test_an_optimum_beyond_float_range_is_a_fit_error_not_a_crash() -> None:
    """Found on the tiny WSD sweep: a shared-exponent resample with alpha = beta near 0 put N_opt beyond
    float range and the report died on a ZeroDivisionError; now that resample gives no ratio."""
    edge = ChinchillaFit(E=1.0, A=1e6, B=1e-6, alpha=1e-3, beta=1e-3, points=9, huber_objective=0.0)
    with pytest.raises(FitError, match="no finite compute-optimal split"):
        ratio_at(edge, 1e12)
