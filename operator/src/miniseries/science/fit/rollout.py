"""Rollout validation: refit a law without the sweep's largest-compute run(s) and ask it to predict them.

A fit's own interval says how well the law is pinned by the runs it saw, not how far it carries
beyond them; the error on runs it did not see does (the OLMo ladder's rollout validation, Bhagia et
al. 2024; Gadre et al. 2024's held-out 1.4B/6.9B runs). Every law of the report is checked this
way: the runs at the largest compute (ratio mode: the largest run; isoFLOP and wsd: every run of
the largest budget) are held out, the law is refitted on the rest with the same code, and its
prediction of the held-out runs is compared with what they measured.

Errors are relative, (predicted - actual) / actual, for losses and bpb; absolute (CORE points)
for CORE, which sits near 0 at chance where a relative error means nothing. `error` is the
largest |error| over the held-out runs, signed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from miniseries.science.fit.chinchilla import fit_chinchilla
from miniseries.science.fit.common import FitError, _Result
from miniseries.science.fit.laws import fit_core, fit_power_law


@dataclass
class Rollout(_Result):
    law: str
    held_out: list[str]
    predicted: list[float]
    actual: list[float]
    errors: list[float]
    error: float  # the largest |error| of `errors`, with its sign
    relative: bool  # errors relative to the actual value (else absolute: CORE points)
    fitted_on: int  # runs the refit saw
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        what = f"{self.error:+.2%}" if self.relative else f"{self.error:+.4f} CORE"
        return f"{what} on {', '.join(self.held_out)} (refitted on {self.fitted_on} runs without it)"


def _held_out(group: Sequence[float]) -> np.ndarray:
    """The indices of the largest group (compute, or budget)."""
    g = np.asarray(group, dtype=float)
    return np.flatnonzero(g == g.max())


def _make(law: str, names: Sequence[str], idx: np.ndarray, pred: np.ndarray, actual: np.ndarray,
          relative: bool, fitted_on: int) -> Rollout:  # fmt: skip
    err = (pred - actual) / actual if relative else pred - actual
    worst = int(np.argmax(np.abs(err)))
    return Rollout(law, [names[i] for i in idx], pred.tolist(), actual.tolist(), err.tolist(), float(err[worst]),
                   relative, fitted_on)  # fmt: skip


def rollout_power_law(names: Sequence[str], x: Sequence[float], y: Sequence[float], law: str,
                      group: Sequence[float] | None = None) -> Rollout:  # fmt: skip
    """y = k x^e refitted without the largest group (default: the largest x); relative errors."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    idx = _held_out(group if group is not None else xa)
    keep = np.setdiff1d(np.arange(len(xa)), idx)
    if len(set(xa[keep].tolist())) < 2:
        raise FitError(f"rollout of {law}: needs 2 distinct compute values besides the largest, "
                       f"has {len(set(xa[keep].tolist()))}")  # fmt: skip
    fit = fit_power_law(xa[keep], ya[keep], law)
    return _make(law, names, idx, np.asarray(fit(xa[idx]), dtype=float), ya[idx], True, len(keep))


def rollout_core(names: Sequence[str], compute: Sequence[float], core: Sequence[float]) -> Rollout:
    """CORE linear in log10 C refitted without the largest run(s); absolute errors (CORE points)."""
    c, y = np.asarray(compute, dtype=float), np.asarray(core, dtype=float)
    idx = _held_out(c)
    keep = np.setdiff1d(np.arange(len(c)), idx)
    if len(set(c[keep].tolist())) < 2:
        raise FitError(f"rollout of CORE over C: needs 2 runs with CORE besides the largest, has {len(keep)}")
    fit = fit_core(c[keep], y[keep])
    return _make("CORE over C", names, idx, np.asarray(fit.predict(c[idx]), dtype=float), y[idx], False, len(keep))


def rollout_core_two_step(names: Sequence[str], compute: Sequence[float], loss: Sequence[float],
                          core: Sequence[float]) -> Rollout:  # fmt: skip
    """compute -> loss -> CORE (fit/core_route.py) refitted without the largest run(s); CORE points."""
    from miniseries.science.fit.core_route import fit_two_step

    c, l_, y = (np.asarray(v, dtype=float) for v in (compute, loss, core))
    idx = _held_out(c)
    keep = np.setdiff1d(np.arange(len(c)), idx)
    fit = fit_two_step(c[keep], l_[keep], y[keep])
    return _make("CORE over C, via loss (sigmoid)", names, idx, np.asarray(fit.predict(c[idx]), dtype=float), y[idx],
                 False, len(keep))  # fmt: skip


def rollout_chinchilla(names: Sequence[str], params: Sequence[float], tokens: Sequence[float],
                       loss: Sequence[float], group: Sequence[float], *, shared_exponent: bool = False,
                       fit: Callable[..., Any] = fit_chinchilla) -> Rollout:  # fmt: skip
    """Approach 3 (either form) refitted without the largest group's runs; relative errors of their loss."""
    n, d, l_ = (np.asarray(v, dtype=float) for v in (params, tokens, loss))
    idx = _held_out(group)
    keep = np.setdiff1d(np.arange(len(n)), idx)
    form = "shared" if shared_exponent else "free"
    f = fit(n[keep], d[keep], l_[keep], bootstrap=0, shared_exponent=shared_exponent)
    return _make(f"Approach 3 ({form} exponents)", names, idx, np.asarray(f.loss(n[idx], d[idx]), dtype=float),
                 l_[idx], True, len(keep))  # fmt: skip


def compute_factor(core_rollout: Rollout, slope: float) -> float | None:
    """The factor by which a CORE extrapolation's compute is uncertain, from the rollout's CORE error:
    an error of e CORE points at slope s CORE per decade is e / s decades of compute."""
    if slope <= 0:
        return None
    return float(10 ** (abs(core_rollout.error) / slope))
