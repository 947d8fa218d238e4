"""Chinchilla's Approach 3: L(N, D) = E + A/N^alpha + B/D^beta fitted to all (N, D, L) points.

A Huber loss (delta = 1e-3) on log-loss, in the log-sum-exp parametrisation of Hoffmann et al.
(2022) and Besiroglu et al. (2024, "Chinchilla Scaling: A replication attempt",
arXiv:2404.10102); L-BFGS from the best points of a grid of initialisations; bootstrap
confidence intervals.

Two forms (`shared_exponent`): the free one, alpha and beta fitted apart (Hoffmann et al.), and the
shared-exponent one of Gadre et al. 2024 ("Language models scale reliably with over-training and on
downstream tasks", arXiv:2403.08540, eq. 4): alpha = beta = 2 eta, which with C = 6ND and the token
multiplier M = D/N is their L(C, M) = E + (a M^eta + b M^-eta) C^-eta. One parameter fewer; it holds
a = b = 0.5 (N_opt and D_opt grow alike) and extrapolates along M as well as along C. Which one a
sweep should use is an empirical question: science.fit.rollout and `miniseries fit validate` answer
it by predicting held-out larger runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize
from threadpoolctl import threadpool_limits

from miniseries.contract.doc import json_ready
from miniseries.science.fit.common import CONFIDENCE, FitError, _positive_finite, _Result

#: Huber delta on log-loss residuals (Hoffmann et al. 2022; Besiroglu et al. 2024).
HUBER_DELTA = 1e-3


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
    form: str = "free"  # "free" (alpha, beta apart) or "shared" (alpha = beta: Gadre et al. 2024)

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

    @property
    def on_bounds(self) -> list[str]:
        """Each parameter at the edge of its physical range: the fit is degenerate there, and says so.
        E -> 0 (no irreducible loss), an exponent <= 0 (the loss does not fall with N or D) or beyond
        the initialisation grid's 2 (a term that vanishes within the data, its coefficient unpinned)."""
        out = []
        if self.E < 1e-3:
            out.append(f"E = {self.E:.3g}: the irreducible loss went to its bound 0")
        for name in ("alpha", "beta") if self.form == "free" else ("alpha",):
            v = getattr(self, name)
            if v <= 0.0:
                out.append(f"{name} = {v:.3g} <= 0: the loss does not fall with {'N' if name == 'alpha' else 'D'}")
            elif v >= 2.0:
                out.append(f"{name} = {v:.3g} beyond 2: its term vanishes within the data (not identified)")
        return out

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        d["a"], d["b"], d["on_bounds"] = self.a, self.b, self.on_bounds
        return json_ready(d)  # type: ignore[no-any-return]


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


def _shared_objective(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    """The Huber objective with alpha = beta, over (a, b, e, alpha): the chain rule sums their gradients."""
    value, g = _huber_objective(np.append(theta, theta[3]), log_n, log_d, log_l, delta)
    return value, np.array([g[0], g[1], g[2], g[3] + g[4]])


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
    """L-BFGS from each start; the best end point. Call it under `_one_blas_thread`. Starts of four
    columns are the shared-exponent form's (a, b, e, alpha = beta)."""
    best, best_val = starts[0], math.inf
    objective = _shared_objective if starts.shape[1] == 4 else _huber_objective
    for x0 in starts:
        res = optimize.minimize(
            objective, x0, args=(log_n, log_d, log_l, delta), jac=True, method="L-BFGS-B",
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
    if len(theta) == 4:  # the shared-exponent form
        a, b, e, alpha = theta
        return ChinchillaFit(float(math.exp(e)), float(math.exp(a)), float(math.exp(b)), float(alpha), float(alpha),
                             n, objective, form="shared")  # fmt: skip
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
    on_resample: Callable[[ChinchillaFit, np.ndarray], None] | None = None,
    shared_exponent: bool = False,
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
    `on_resample(fit, idx)` sees each resample's fit and its point indices, for a
    derived quantity's interval from the same resamples (fit/wsd.py's optimum ratio).
    `shared_exponent`: the form of Gadre et al. (alpha = beta), from the grid's alpha = beta rows.
    """
    n_ = _positive_finite("params", params)
    d_ = _positive_finite("tokens", tokens)
    l_ = _positive_finite("loss", loss)
    if not len(n_) == len(d_) == len(l_):
        raise FitError(f"params, tokens and loss differ in length: {len(n_)}, {len(d_)}, {len(l_)}")
    k = 4 if shared_exponent else 5
    if len(n_) < k + 1:
        raise FitError(f"Approach 3 fits {k} parameters and needs at least {k + 1} (N, D, loss) points, got {len(n_)}")
    if len(set(n_.tolist())) < 2 or len(set(d_.tolist())) < 2:
        raise FitError("Approach 3 needs at least 2 distinct model sizes and 2 distinct token counts")
    if bootstrap < 0:
        raise FitError(f"bootstrap must be 0 (no intervals) or a number of resamples, got {bootstrap}")
    log_n, log_d, log_l = np.log(n_), np.log(d_), np.log(l_)

    with _one_blas_thread():
        grid = _init_grid()
        if shared_exponent:
            grid = grid[grid[:, 3] == grid[:, 4]]
        values = _huber_objective_many(grid, log_n, log_d, log_l, delta)
        starts = grid[np.argsort(values)[: max(1, top_starts)]][:, :k]
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
            if on_resample is not None:
                on_resample(f, idx)
    for name, (lo, hi) in zip(_CI_NAMES, _percentile_ci(samples), strict=True):
        fit.ci[name] = (float(lo), float(hi))
    fit.bootstrap_samples = bootstrap
    return fit
