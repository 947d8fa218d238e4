"""Scaling-law fits and extrapolation (numpy/scipy only, no torch).

Three ways to read a sweep, each the standard one for its design:

- ratio mode (every depth at tokens = r x N): power laws across the family,
  N ~ C^a, D ~ C^b and loss ~ C^-c, by least squares in log-log space.
- isoFLOP mode (every depth at each budget C): per budget a parabola of loss
  over log N gives the compute-optimal N_opt (Chinchilla's Approach 2, as
  nanochat's dev/scaling_analysis.ipynb does it); across budgets N_opt ~ C^a,
  D_opt ~ C^b, and the optimal tokens:params ratio D/N ~ C^(b-a).
- Chinchilla Approach 3: L(N, D) = E + A/N^alpha + B/D^beta fitted to all
  (N, D, L) points with a Huber loss (delta = 1e-3) on log-loss, in the
  log-sum-exp parametrisation of Hoffmann et al. (2022) and Besiroglu et al.
  (2024, "Chinchilla Scaling: A replication attempt", arXiv:2404.10102),
  L-BFGS from a grid of initialisations, bootstrap confidence intervals.

Plus CORE against compute (linear in log10 C, see `fit_core`) and the
extrapolation to target CORE scores in FLOPs, GPU-hours and dollars.

Every fit returns plain dataclasses (`to_dict()` gives JSON) and raises
`FitError` with a sentence a user can act on when the data cannot support it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, stats
from threadpoolctl import threadpool_limits

#: Huber delta on log-loss residuals (Hoffmann et al. 2022; Besiroglu et al. 2024).
HUBER_DELTA = 1e-3
#: Confidence level of every interval the fits report.
CONFIDENCE = 0.95
#: nanochat's reference points for CORE (dev/LOG.md; eval_bundle/reference/*.csv).
GPT2_CORE = {"GPT-2 small (124M)": 0.113891, "GPT-2 medium (355M)": 0.184903,
             "GPT-2 large (774M)": 0.214641, "GPT-2 XL (1.5B)": 0.256525}  # fmt: skip
DEFAULT_CORE_TARGETS = {"GPT-2 small": GPT2_CORE["GPT-2 small (124M)"], "GPT-2 XL": GPT2_CORE["GPT-2 XL (1.5B)"]}


class FitError(ValueError):
    """The data cannot support this fit; the message says why and what would."""


def _clean(d: Any) -> Any:
    """NaN/inf -> None so that report.json is valid JSON."""
    if isinstance(d, float):
        return d if math.isfinite(d) else None
    if isinstance(d, dict):
        return {k: _clean(v) for k, v in d.items()}
    if isinstance(d, list | tuple):
        return [_clean(v) for v in d]
    return d


class _Result:
    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))  # type: ignore[call-overload,no-any-return]


def _positive_finite(name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    bad = ~np.isfinite(x) | (x <= 0)
    if bad.any():
        raise FitError(
            f"{name} must be positive and finite; got {x[bad][:3].tolist()} at rows {np.flatnonzero(bad)[:3].tolist()}"
        )
    return x


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
    return PowerLaw(slope, float(math.exp(intercept)), ci, r2, n)


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


# ---------------------------------------------------------------- Chinchilla Approach 3


@dataclass
class ChinchillaFit(_Result):
    """L(N, D) = E + A / N^alpha + B / D^beta."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    points: int
    huber_objective: float
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    bootstrap_samples: int = 0

    @property
    def a(self) -> float:
        """N_opt ~ C^a with a = beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """D_opt ~ C^b with b = alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    def loss(self, n: Any, d: Any) -> Any:
        n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
        return self.E + self.A / n**self.alpha + self.B / d**self.beta

    def optimum(self, compute: float, flops_per_param_token: float = 6.0) -> tuple[float, float]:
        """(N_opt, D_opt) at compute C = k N D (Hoffmann et al. eq. 4, k = 6)."""
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        n = g * (compute / flops_per_param_token) ** self.a
        return n, compute / flops_per_param_token / n

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["a"], d["b"] = self.a, self.b
        return _clean(d)  # type: ignore[no-any-return]


def _huber_objective(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """Sum of Huber(log L_pred - log L) and its analytic gradient in (a, b, e, alpha, beta).

    log L_pred = LSE(a - alpha log N, b - beta log D, e), written out for three
    terms (scipy's general logsumexp costs several times more per call, and
    L-BFGS calls this a few hundred times per start).
    """
    a, b, e, alpha, beta = theta
    t0 = a - alpha * log_n
    t1 = b - beta * log_d
    m = np.maximum(np.maximum(t0, t1), e)
    x0, x1, x2 = np.exp(t0 - m), np.exp(t1 - m), np.exp(e - m)
    s = x0 + x1 + x2
    r = m + np.log(s) - log_l
    ar = np.abs(r)
    value = float(np.sum(np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta))))
    dr = np.clip(r, -delta, delta) / s  # d huber / d r, times the softmax's 1/s
    w0, w1 = dr * x0, dr * x1
    grad = np.array([w0.sum(), w1.sum(), float(np.dot(dr, x2)), -float(np.dot(w0, log_n)), -float(np.dot(w1, log_d))])
    return value, grad


def _huber_objective_many(
    thetas: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float, chunk: int = 512
) -> np.ndarray:
    """The objective at many parameter vectors at once (rows of `thetas`), in chunks of `chunk` rows."""
    out = np.empty(len(thetas))
    for i in range(0, len(thetas), chunk):
        a, b, e, alpha, beta = (thetas[i : i + chunk, j : j + 1] for j in range(5))
        t0 = a - alpha * log_n
        t1 = b - beta * log_d
        m = np.maximum(np.maximum(t0, t1), e)
        r = m + np.log(np.exp(t0 - m) + np.exp(t1 - m) + np.exp(e - m)) - log_l
        ar = np.abs(r)
        out[i : i + chunk] = np.sum(np.where(ar <= delta, 0.5 * r * r, delta * (ar - 0.5 * delta)), axis=1)
    return out


def _init_grid() -> np.ndarray:
    """Hoffmann et al.'s grid of initialisations (as Besiroglu et al. use it), rows (a, b, e, alpha, beta)."""
    alphas = np.arange(0.0, 2.01, 0.5)
    betas = np.arange(0.0, 2.01, 0.5)
    es = np.arange(-1.0, 1.51, 0.5)
    as_ = np.arange(0.0, 25.1, 5.0)
    bs = np.arange(0.0, 25.1, 5.0)
    mesh = np.meshgrid(as_, bs, es, alphas, betas, indexing="ij")
    return np.stack([g.ravel() for g in mesh], axis=1)


def _minimise(
    starts: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float
) -> tuple[np.ndarray, float]:
    """L-BFGS from each start; the best end point. Call it under `_one_blas_thread`."""
    best, best_val = starts[0], math.inf
    for x0 in starts:
        res = optimize.minimize(
            _huber_objective, x0, args=(log_n, log_d, log_l, delta), jac=True, method="L-BFGS-B",
            options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12},
        )  # fmt: skip
        if res.fun < best_val:
            best, best_val = res.x, float(res.fun)
    return best, best_val


def _one_blas_thread() -> Any:
    """BLAS limited to one thread for the duration of a fit.

    L-BFGS-B calls BLAS/LAPACK on 5-dimensional vectors and 20x20 matrices;
    a multi-threaded OpenBLAS hands each of those calls to its worker threads,
    and on a machine whose cores are busy (a CI runner, the operator's pod
    under a CPU limit) every hand-off waits for a core: the same fit took
    25-40x longer with 2 BLAS threads on 2 busy cores than with one.
    """
    return threadpool_limits(limits=1, user_api="blas")


def _theta_to_fit(theta: np.ndarray, n: int, objective: float) -> ChinchillaFit:
    a, b, e, alpha, beta = theta
    return ChinchillaFit(
        float(math.exp(e)), float(math.exp(a)), float(math.exp(b)), float(alpha), float(beta), n, objective
    )


_CI_NAMES = ("E", "A", "B", "alpha", "beta", "a", "b")


def _percentile_ci(samples: np.ndarray) -> np.ndarray:
    """(7, 2): the CONFIDENCE percentile interval of each column of `samples`."""
    q = [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2]
    return np.percentile(samples, q, axis=0).T


def fit_chinchilla(
    params: Any,
    tokens: Any,
    loss: Any,
    *,
    bootstrap: int = 200,
    delta: float = HUBER_DELTA,
    top_starts: int = 64,
    seed: int = 0,
) -> ChinchillaFit:
    """Approach 3 with bootstrap CIs for E, A, B, alpha, beta, a and b.

    The objective is evaluated at all 4,500 points of the initialisation grid
    at once (one array expression), and L-BFGS, with the analytic gradient,
    runs from the `top_starts` best of them: the grid's job is to avoid local
    minima, and starts far up the objective end in the same basins as the
    good ones or worse. Fewer starts are not enough in general: with the 8
    best, Epoch's data and the Gadre et al. testbeds land on the same optimum,
    but 12 of 25 random small sweeps (6-30 points, some with D proportional
    to N) ended in a worse one.

    Bootstrap: each of the `bootstrap` resamples is refitted from the
    full-data optimum and from the best grid start (a resample occasionally
    has its optimum in another basin), exactly as before the fit was made
    fast, so the intervals are the same numbers for the same seed. Not fewer
    resamples: on Epoch's data and on a synthetic law the 2.5%/97.5% endpoints
    still moved by 5-15% of the interval's width between batches of 50 up to
    400 resamples, so a stopping rule at any useful tolerance would stop on
    noise; instead each resample is cheap (one BLAS thread, analytic gradient).
    """
    n_ = _positive_finite("params", params)
    d_ = _positive_finite("tokens", tokens)
    l_ = _positive_finite("loss", loss)
    if not len(n_) == len(d_) == len(l_):
        raise FitError(f"params, tokens and loss differ in length: {len(n_)}, {len(d_)}, {len(l_)}")
    if len(n_) < 6:
        raise FitError(f"Approach 3 fits 5 parameters and needs at least 6 (N, D, loss) points, got {len(n_)}")
    if len(set(n_.tolist())) < 2 or len(set(d_.tolist())) < 2:
        raise FitError("Approach 3 needs at least 2 distinct model sizes and 2 distinct token counts")
    if bootstrap < 0:
        raise FitError(f"bootstrap must be 0 (no intervals) or a number of resamples, got {bootstrap}")
    log_n, log_d, log_l = np.log(n_), np.log(d_), np.log(l_)

    with _one_blas_thread():
        grid = _init_grid()
        values = _huber_objective_many(grid, log_n, log_d, log_l, delta)
        starts = grid[np.argsort(values)[: max(1, top_starts)]]
        theta, obj = _minimise(starts, log_n, log_d, log_l, delta)
        fit = _theta_to_fit(theta, len(n_), obj)
        if bootstrap == 0:
            return fit

        rng = np.random.default_rng(seed)
        boot_starts = np.vstack([theta, starts[:1]])
        samples = np.empty((bootstrap, len(_CI_NAMES)))
        for i in range(bootstrap):
            idx = rng.integers(0, len(n_), len(n_))
            t, o = _minimise(boot_starts, log_n[idx], log_d[idx], log_l[idx], delta)
            f = _theta_to_fit(t, len(idx), o)
            samples[i] = [getattr(f, name) for name in _CI_NAMES]
    for name, (lo, hi) in zip(_CI_NAMES, _percentile_ci(samples), strict=True):
        fit.ci[name] = (float(lo), float(hi))
    fit.bootstrap_samples = bootstrap
    return fit


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
        laws = [
            fit_power_law(cs, [o.params for o in optima], "N_opt over C"),
            fit_power_law(cs, [o.tokens for o in optima], "D_opt over C"),
            fit_power_law(cs, [o.loss for o in optima], "loss at optimum over C"),
            fit_power_law(cs, [o.tokens_per_param for o in optima], "D_opt/N_opt over C"),
        ]
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


def extrapolate(
    core_fit: CoreFit,
    targets: dict[str, float],
    *,
    peak_flops_per_gpu: float,
    mfu: float,
    price_per_gpu_hour: float,
    max_compute_seen: float,
    params_law: PowerLaw | None = None,
    tokens_law: PowerLaw | None = None,
) -> list[Extrapolation]:
    """FLOPs, GPU-hours and dollars to reach each target CORE."""
    out = []
    for name, target in targets.items():
        if core_fit.slope <= 0:
            out.append(Extrapolation(name, target, None, None, None, None, None, None,
                                     "CORE does not rise with compute in this sweep; no extrapolation"))  # fmt: skip
            continue
        flops = core_fit.compute_for(target)
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


@dataclass
class Crossing(_Result):
    smaller: str
    larger: str
    kind: str  # final_order | tokens_axis
    detail: str


def _local_linear(t: np.ndarray, y: np.ndarray, at: np.ndarray, half_width: float = math.log(1.25)) -> np.ndarray:
    """Loss at `at`, smoothed by a local straight line in log-tokens (LOESS of degree 1).

    A moving average in step index would be biased upward wherever the logged
    points are sparse relative to the curve's bend (early training, large runs);
    a local line in log t has no slope bias and averages out step noise.
    """
    lt, la = np.log(t), np.log(at)
    out = np.interp(la, lt, y)
    for i, x in enumerate(la):
        m = np.abs(lt - x) <= half_width
        if m.sum() >= 3 and np.ptp(lt[m]) > 0:
            slope, icept = np.polyfit(lt[m], y[m], 1)
            out[i] = icept + slope * x
    return out


def check_crossings(
    runs: list[dict[str, Any]],
    *,
    warmdown_ratio: float = 0.4,
    tolerance: float = 0.01,
) -> list[Crossing]:
    """Flag pairs of runs whose losses are in the wrong order.

    runs: {name, params, final_loss, curve: [(tokens, loss), ...], warmup_tokens}.
    Two definitions, each chosen so that an honest setup never trips it:

    1. final_order: in a ratio sweep a larger model also trains on more tokens,
       so its final loss must be lower. Any inversion is flagged.
    2. tokens_axis: at an equal number of training tokens a larger model must
       have the lower loss (it has seen the same data with more capacity). We
       compare smoothed curves on the shared token range after both warmups
       and before the smaller run's warmdown begins: during warmdown the two
       runs sit at different points of their LR schedules by design, and the
       smaller one's annealing drop says nothing about the setup. The curves
       "cross" if the larger model is worse by more than `tolerance` (relative)
       on more than 10% of that range.

    Not a check: loss against FLOPs. There a larger model starts above a
    smaller one (it spends more FLOPs per token) and ends below it; one
    crossing is the compute-optimal frontier itself, not a bug.
    """
    out: list[Crossing] = []
    rs = sorted([r for r in runs if r.get("params")], key=lambda r: r["params"])
    for i, small in enumerate(rs):
        for large in rs[i + 1 :]:
            if large["params"] < small["params"] * 1.05:
                continue  # the same model (another budget): nothing to order
            fs, fl = small.get("final_loss"), large.get("final_loss")
            if fs is not None and fl is not None and math.isfinite(fs) and math.isfinite(fl) and fl > fs * (1 + 1e-9):
                out.append(Crossing(small["name"], large["name"], "final_order",
                                    f"final loss {fl:.4f} of {large['name']} is above {fs:.4f} of {small['name']}"))  # fmt: skip
            cs, cl = small.get("curve") or [], large.get("curve") or []
            if len(cs) < 5 or len(cl) < 5:
                continue
            ts, ls = np.array([p[0] for p in cs], float), np.array([p[1] for p in cs], float)
            tl, ll = np.array([p[0] for p in cl], float), np.array([p[1] for p in cl], float)
            ok_s, ok_l = np.isfinite(ls) & (ts > 0), np.isfinite(ll) & (tl > 0)
            ts, ls, tl, ll = ts[ok_s], ls[ok_s], tl[ok_l], ll[ok_l]
            if len(ts) < 5 or len(tl) < 5:
                continue
            start = max(small.get("warmup_tokens", 0), large.get("warmup_tokens", 0), ts[0], tl[0])
            end = min(ts[-1] * (1 - warmdown_ratio), tl[-1])
            if end <= start * 1.05:
                continue
            # Compare at the logged tokens of the more coarsely logged run and interpolate the
            # finer one in log-tokens (where a loss curve is nearly straight): interpolating a
            # coarse, convex curve linearly would overstate its loss and invent crossings.
            fine_s = len(ts) / math.log(ts[-1] / ts[0]) >= len(tl) / math.log(tl[-1] / tl[0])
            anchor = tl if fine_s else ts
            grid = anchor[(anchor >= start) & (anchor <= end)]
            if len(grid) < 5:
                continue
            ys = _local_linear(ts, ls, grid)
            yl = _local_linear(tl, ll, grid)
            worse = yl > ys * (1 + tolerance)
            if worse.mean() > 0.10:
                where = grid[worse]
                out.append(Crossing(small["name"], large["name"], "tokens_axis",
                                    f"{large['name']} is above {small['name']} at equal tokens on {worse.mean():.0%} of "
                                    f"{start:.3g}..{end:.3g} tokens (first at {where[0]:.3g})"))  # fmt: skip
    return out
