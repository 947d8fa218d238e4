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

The parts: `common` (the error, the confidence level, the least-squares line with its
t-interval), `laws` (power laws, isoFLOP, CORE and the extrapolation), `chinchilla`
(Approach 3 and its bootstrap), `crossings` (the loss-curve check). Every name is importable
from `miniseries.science.fit`.
"""

from __future__ import annotations

# `X as X`: internals re-exported for the reference-implementation tests (tests/unit/test_fit_reference.py).
from miniseries.science.fit.chinchilla import HUBER_DELTA, ChinchillaFit, fit_chinchilla
from miniseries.science.fit.chinchilla import _huber_objective as _huber_objective
from miniseries.science.fit.chinchilla import _huber_objective_many as _huber_objective_many
from miniseries.science.fit.chinchilla import _init_grid as _init_grid
from miniseries.science.fit.common import CONFIDENCE, FitError
from miniseries.science.fit.common import _positive_finite as _positive_finite
from miniseries.science.fit.crossings import Crossing, check_crossings
from miniseries.science.fit.laws import (
    CoreFit,
    Extrapolation,
    IsoflopFit,
    IsoflopOptimum,
    PowerLaw,
    exponent_near_half,
    extrapolate,
    fit_core,
    fit_isoflop,
    fit_power_law,
    isoflop_optimum,
)

__all__ = [
    "CONFIDENCE",
    "HUBER_DELTA",
    "ChinchillaFit",
    "CoreFit",
    "Crossing",
    "Extrapolation",
    "FitError",
    "IsoflopFit",
    "IsoflopOptimum",
    "PowerLaw",
    "check_crossings",
    "exponent_near_half",
    "extrapolate",
    "fit_chinchilla",
    "fit_core",
    "fit_isoflop",
    "fit_power_law",
    "isoflop_optimum",
]
