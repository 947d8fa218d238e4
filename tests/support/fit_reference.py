"""The Chinchilla Approach-3 fit as `miniseries.science.fit` did it before it was made fast (commit fb9df91).

Kept verbatim as the yardstick that `bench/fit_chinchilla.py` times the new fit
against and that tests/unit/test_fit_reference.py compares its estimates and
intervals with: L-BFGS from the 64 best points of Hoffmann et al.'s 4,500-point
grid (the grid evaluated one point at a time), then 200 bootstrap resamples,
each refitted from the full-data optimum and the best grid start, all with
whatever BLAS threading the process has.
"""

from __future__ import annotations

import math
from itertools import product
from typing import Any

import numpy as np
from scipy import optimize, special

from miniseries.science.fit import CONFIDENCE, HUBER_DELTA, ChinchillaFit, _positive_finite


def _lse_predict(theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b, e, alpha, beta = theta
    terms = np.stack([a - alpha * log_n, b - beta * log_d, np.full_like(log_n, e)])
    lse = special.logsumexp(terms, axis=0)
    return lse, np.exp(terms - lse)


def _huber_objective(
    theta: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float
) -> tuple[float, np.ndarray]:
    pred, w = _lse_predict(theta, log_n, log_d)
    r = pred - log_l
    value = float(np.sum(special.huber(delta, r)))
    dr = np.clip(r, -delta, delta)
    grad = np.array([
        np.sum(dr * w[0]),
        np.sum(dr * w[1]),
        np.sum(dr * w[2]),
        np.sum(dr * w[0] * -log_n),
        np.sum(dr * w[1] * -log_d),
    ])  # fmt: skip
    return value, grad


def _init_grid() -> np.ndarray:
    alphas = np.arange(0.0, 2.01, 0.5)
    betas = np.arange(0.0, 2.01, 0.5)
    es = np.arange(-1.0, 1.51, 0.5)
    as_ = np.arange(0.0, 25.1, 5.0)
    bs = np.arange(0.0, 25.1, 5.0)
    return np.array([(a, b, e, al, be) for a, b, e, al, be in product(as_, bs, es, alphas, betas)])


def _minimise(
    starts: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray, delta: float
) -> tuple[np.ndarray, float]:
    best, best_val = starts[0], math.inf
    for x0 in starts:
        res = optimize.minimize(
            _huber_objective, x0, args=(log_n, log_d, log_l, delta), jac=True, method="L-BFGS-B",
            options={"maxiter": 2000, "ftol": 1e-15, "gtol": 1e-12},
        )  # fmt: skip
        if res.fun < best_val:
            best, best_val = res.x, float(res.fun)
    return best, best_val


def _theta_to_fit(theta: np.ndarray, n: int, objective: float) -> ChinchillaFit:
    a, b, e, alpha, beta = theta
    return ChinchillaFit(
        float(math.exp(e)), float(math.exp(a)), float(math.exp(b)), float(alpha), float(beta), n, objective
    )


def reference_fit_chinchilla(
    params: Any,
    tokens: Any,
    loss: Any,
    *,
    bootstrap: int = 200,
    delta: float = HUBER_DELTA,
    top_starts: int = 64,
    seed: int = 0,
) -> ChinchillaFit:
    n_ = _positive_finite("params", params)
    d_ = _positive_finite("tokens", tokens)
    l_ = _positive_finite("loss", loss)
    log_n, log_d, log_l = np.log(n_), np.log(d_), np.log(l_)

    grid = _init_grid()
    values = np.array([_huber_objective(t, log_n, log_d, log_l, delta)[0] for t in grid])
    order = np.argsort(values)
    starts = grid[order[:top_starts]]
    theta, obj = _minimise(starts, log_n, log_d, log_l, delta)
    fit = _theta_to_fit(theta, len(n_), obj)

    if bootstrap > 0:
        rng = np.random.default_rng(seed)
        boot_starts = np.vstack([theta, starts[:1]])
        samples = []
        for _ in range(bootstrap):
            idx = rng.integers(0, len(n_), len(n_))
            t, _obj = _minimise(boot_starts, log_n[idx], log_d[idx], log_l[idx], delta)
            f = _theta_to_fit(t, len(idx), _obj)
            samples.append([f.E, f.A, f.B, f.alpha, f.beta, f.a, f.b])
        s = np.array(samples)
        lo, hi = 100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2
        for i, name in enumerate(["E", "A", "B", "alpha", "beta", "a", "b"]):
            fit.ci[name] = (float(np.percentile(s[:, i], lo)), float(np.percentile(s[:, i], hi)))
        fit.bootstrap_samples = bootstrap
    return fit
