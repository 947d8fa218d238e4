"""Power laws across a sweep: ratio mode (N, D, loss against C), isoFLOP mode (Chinchilla's
Approach 2: a parabola per budget, then power laws across budgets), CORE against compute and
the extrapolation to target CORE scores; and the check whether an exponent is 0.5."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from miniseries.science.fit.common import FitError, _line_fit, _positive_finite, _Result

# ---------------------------------------------------------------- power laws


@dataclass
class PowerLaw(_Result):
    """y = coefficient * x^exponent, fitted by least squares on log y over log x."""

    exponent: float
    coefficient: float
    exponent_ci: tuple[float, float]
    r2: float
    points: int

    def __call__(self, x: float | np.ndarray) -> Any:
        return self.coefficient * np.asarray(x, dtype=float) ** self.exponent

    def solve(self, y: float) -> float:
        """The x at which the law reaches y."""
        return float((y / self.coefficient) ** (1.0 / self.exponent))


def fit_power_law(x: Any, y: Any, what: str = "y over x") -> PowerLaw:
    """Log-log least squares with a t-interval on the slope.

    With the 3-10 points a sweep has, the t-interval of ordinary least squares
    is the honest interval; a bootstrap over so few points understates it.
    """
    x = _positive_finite(f"{what}: x", x)
    y = _positive_finite(f"{what}: y", y)
    if len(x) < 2 or len(set(x.tolist())) < 2:
        raise FitError(f"power law {what} needs at least 2 distinct x values, got {len(set(x.tolist()))}")
    slope, intercept, ci, r2, n = _line_fit(np.log(x), np.log(y))
    if not -700 < intercept < 700:  # exp() would overflow: no coefficient a float can hold
        raise FitError(f"power law {what}: coefficient e^{intercept:.4g} is out of range (slope {slope:.4g})")
    return PowerLaw(slope, float(math.exp(intercept)), ci, r2, n)


# ---------------------------------------------------------------- isoFLOP (Approach 2)


@dataclass
class IsoflopOptimum(_Result):
    budget_flops: float
    params: float  # N_opt, the vertex of the parabola
    tokens: float  # D_opt, interpolated in log space between the runs
    tokens_per_param: float
    loss: float
    curvature: float
    runs: int
    inside_range: bool  # the vertex lies between the smallest and largest model sampled
    message: str | None = None


@dataclass
class IsoflopFit(_Result):
    optima: list[IsoflopOptimum]
    params_law: PowerLaw | None
    tokens_law: PowerLaw | None
    loss_law: PowerLaw | None
    ratio_law: PowerLaw | None  # D_opt / N_opt ~ C^(b - a): the drift of the optimal ratio
    message: str | None = None


def isoflop_optimum(budget: float, params: Any, tokens: Any, loss: Any) -> IsoflopOptimum:
    """Vertex of loss = p2 (log N)^2 + p1 log N + p0 at one budget."""
    n_ = _positive_finite("params", params)
    d_ = _positive_finite("tokens", tokens)
    l_ = np.asarray(loss, dtype=float)
    if not np.isfinite(l_).all():
        raise FitError(f"budget {budget:.3g}: loss has NaN/inf values")
    if len(set(n_.tolist())) < 3:
        raise FitError(f"budget {budget:.3g}: a parabola needs at least 3 model sizes, got {len(set(n_.tolist()))}")
    order = np.argsort(n_)
    n_, d_, l_ = n_[order], d_[order], l_[order]
    x = np.log(n_)
    p2, p1, p0 = np.polyfit(x, l_, 2)
    if p2 <= 0:
        i = int(np.argmin(l_))
        return IsoflopOptimum(budget, float(n_[i]), float(d_[i]), float(d_[i] / n_[i]), float(l_[i]), float(p2), len(n_), False,
                              "the parabola opens downward (no minimum): the lowest measured run is reported; widen the depth range")  # fmt: skip
    xv = -p1 / (2 * p2)
    inside = bool(x[0] <= xv <= x[-1])
    span = float(x[-1] - x[0])
    if xv < x[0] - span or xv > x[-1] + span:
        # A vertex farther outside than the sampled sizes span is the parabola's shape, not the
        # runs' (a monotone loss curve bends slightly: the 2026-12-07 tiny isoFLOP sweep put one at
        # N = 1e-42 with loss -18, and the power laws across budgets overflowed): the best run stands.
        i = int(np.argmin(l_))
        side = "below the smallest" if xv < x[0] else "above the largest"
        return IsoflopOptimum(budget, float(n_[i]), float(d_[i]), float(d_[i] / n_[i]), float(l_[i]), float(p2), len(n_), False,
                              f"the parabola's vertex (N = {math.exp(xv) if xv < 700 else math.inf:.3g}) lies far {side} "
                              f"sampled model, beyond what the runs support: the lowest measured run is reported; "
                              f"add depths on that side")  # fmt: skip
    n_opt = math.exp(xv)
    d_opt = math.exp(float(np.interp(xv, x, np.log(d_))))
    if not inside:
        # Extrapolate D along the isoFLOP line D ~ N^-1 (C fixed) rather than clamp.
        d_opt = float(d_[0] * n_[0] / n_opt) if xv < x[0] else float(d_[-1] * n_[-1] / n_opt)
    msg = None if inside else "the optimum lies outside the sampled model sizes (extrapolated); add depths on that side"
    return IsoflopOptimum(
        budget, n_opt, d_opt, d_opt / n_opt, float(p0 + p1 * xv + p2 * xv**2), float(p2), len(n_), inside, msg
    )


def fit_isoflop(rows: list[dict[str, float]]) -> IsoflopFit:
    """rows: {budget_flops, params, tokens, loss} per run."""
    budgets = sorted({r["budget_flops"] for r in rows})
    optima, problems = [], []
    for c in budgets:
        rs = [r for r in rows if r["budget_flops"] == c]
        try:
            optima.append(
                isoflop_optimum(c, [r["params"] for r in rs], [r["tokens"] for r in rs], [r["loss"] for r in rs])
            )
        except FitError as e:
            problems.append(str(e))
    laws: list[PowerLaw | None] = [None, None, None, None]
    if len(optima) >= 2:
        cs = [o.budget_flops for o in optima]
        for i, (ys, what) in enumerate(
            (
                ([o.params for o in optima], "N_opt over C"),
                ([o.tokens for o in optima], "D_opt over C"),
                ([o.loss for o in optima], "loss at optimum over C"),
                ([o.tokens_per_param for o in optima], "D_opt/N_opt over C"),
            )
        ):
            try:  # one law the optima cannot carry is a problem of the report, not its end
                laws[i] = fit_power_law(cs, ys, what)
            except FitError as e:
                problems.append(str(e))
    else:
        problems.append(f"power laws across budgets need optima at 2 or more budgets, got {len(optima)}")
    return IsoflopFit(optima, *laws, message="; ".join(problems) or None)


# ---------------------------------------------------------------- CORE and extrapolation


@dataclass
class CoreFit(_Result):
    """CORE = intercept + slope * log10(C)."""

    slope: float  # CORE per decade of compute
    intercept: float
    slope_ci: tuple[float, float]
    r2: float
    points: int

    def predict(self, compute: Any) -> Any:
        return self.intercept + self.slope * np.log10(np.asarray(compute, dtype=float))

    def compute_for(self, core: float) -> float:
        return float(10 ** ((core - self.intercept) / self.slope))


def fit_core(compute: Any, core: Any) -> CoreFit:
    """CORE linear in log10 compute.

    Why this form: CORE is a mean of centered accuracies, 0 at chance, and over
    the one to three decades of compute a sweep spans it rises roughly linearly
    in log C (nanochat's miniseries and the GPT-2 family, 0.114 -> 0.257 over
    ~1.1 decades of parameters). A sigmoid would need the saturation level and
    the midpoint, which runs far below saturation cannot pin down; its extra
    two parameters would fit noise. The linear form extrapolates conservatively
    in the near range and says plainly when it is being stretched (the report
    marks targets more than one decade beyond the data).
    """
    c = _positive_finite("compute", compute)
    y = np.asarray(core, dtype=float)
    if not np.isfinite(y).all():
        raise FitError("CORE values must be finite")
    if len(set(c.tolist())) < 2:
        raise FitError(
            f"CORE over compute needs at least 2 runs with CORE at distinct compute, got {len(set(c.tolist()))}"
        )
    slope, intercept, ci, r2, n = _line_fit(np.log10(c), y)
    return CoreFit(slope, intercept, ci, r2, n)


@dataclass
class Extrapolation(_Result):
    target: str
    core: float
    flops: float | None
    gpu_hours: float | None
    cost_usd: float | None
    params: float | None  # compute-optimal N at that compute, from N_opt ~ C^a when known
    tokens: float | None
    decades_beyond_data: float | None
    message: str | None = None
    depth: int | None = None  # the family's depth that spends this compute at the sweep's ratio (report fills it)
    #: The compute is uncertain by this factor either way: the CORE law's rollout error (fit/rollout.py)
    #: in decades of compute; None when no rollout could be made (the uncertainty is unknown).
    rollout_factor: float | None = None


def extrapolate(
    core_fit: Any,
    targets: dict[str, float],
    *,
    peak_flops_per_gpu: float,
    mfu: float,
    price_per_gpu_hour: float,
    max_compute_seen: float,
    params_law: PowerLaw | None = None,
    tokens_law: PowerLaw | None = None,
) -> list[Extrapolation]:
    """FLOPs, GPU-hours and dollars to reach each target CORE. `core_fit`: a CoreFit, or anything with its
    `slope` and `compute_for` (core_route.TwoStepCore)."""
    out = []
    for name, target in targets.items():
        if core_fit.slope <= 0:
            out.append(Extrapolation(name, target, None, None, None, None, None, None,
                                     "CORE does not rise with compute in this sweep; no extrapolation"))  # fmt: skip
            continue
        flops = core_fit.compute_for(target)
        if not math.isfinite(flops):  # the two-step route saturates below the target (fit/core_route.py)
            out.append(Extrapolation(name, target, None, None, None, None, None, None,
                                     "not reached by the CORE law at any compute (it saturates below the target)"))  # fmt: skip
            continue
        hours = flops / (peak_flops_per_gpu * mfu) / 3600.0
        beyond = math.log10(flops / max_compute_seen)
        msg = "more than one decade beyond the data: an order-of-magnitude guess" if beyond > 1 else None
        out.append(Extrapolation(
            name, target, flops, hours, hours * price_per_gpu_hour,
            float(params_law(flops)) if params_law else None,
            float(tokens_law(flops)) if tokens_law else None,
            beyond, msg,
        ))  # fmt: skip
    return out


# ---------------------------------------------------------------- checks


def exponent_near_half(law: PowerLaw | None, tolerance: float = 0.0) -> bool | None:
    """Is 0.5 inside the exponent's confidence interval (widened by tolerance)?"""
    if law is None or not all(math.isfinite(v) for v in law.exponent_ci):
        return None
    lo, hi = law.exponent_ci
    return lo - tolerance <= 0.5 <= hi + tolerance
