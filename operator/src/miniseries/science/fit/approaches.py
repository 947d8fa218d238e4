"""Approach 2 beside Approach 3 on an isoFLOP sweep, and the bias of Approach 2's per-budget parabolas.

Approach 2 (laws.fit_isoflop) fits a parabola of loss over log N at each budget and takes its
vertex as N_opt; Approach 3 (chinchilla.fit_chinchilla) fits L(N, D) to every point and solves for
N_opt at any C. Along an isoFLOP line L(N, C/6N) is not a parabola in log N: the valley is
asymmetric when alpha != beta, so the vertex of a fitted parabola lies off the true minimum, by an
amount that grows with the width of the sampled N range and with how far the samples sit off
centre (the per-budget parabola bias; Open-Athena, arXiv 2603.22339). `parabola_bias` measures it
on a known law; `compare` puts both approaches' optima side by side for a real sweep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from miniseries.science.fit.chinchilla import ChinchillaFit
from miniseries.science.fit.common import _Result
from miniseries.science.fit.laws import IsoflopFit, fit_power_law, isoflop_optimum


@dataclass
class BudgetOptima(_Result):
    budget_flops: float
    approach2_params: float  # the parabola's vertex
    approach3_params: float  # the fitted law's optimum at this budget
    difference: float  # approach2 / approach3 - 1


@dataclass
class ApproachComparison(_Result):
    budgets: list[BudgetOptima]
    approach2_a: float | None  # N_opt ~ C^a from the vertices
    approach3_a: float  # beta / (alpha + beta)


def compare(iso: IsoflopFit, fit: ChinchillaFit) -> ApproachComparison:
    """Each budget's N_opt by both approaches (FLOPs = 6 N D, as the fit's optimum assumes)."""
    rows = []
    for o in iso.optima:
        n3, _d3 = fit.optimum(o.budget_flops)
        rows.append(BudgetOptima(o.budget_flops, o.params, float(n3), o.params / n3 - 1))
    a2 = iso.params_law.exponent if iso.params_law is not None else None
    return ApproachComparison(rows, a2, fit.a)


@dataclass
class ParabolaBias(_Result):
    span_decades: float  # the sampled N range per budget, in decades
    offset_decades: float  # the samples' centre relative to the true N_opt (log10)
    params_bias: list[float]  # per budget: vertex / true N_opt - 1
    a_fitted: float  # N_opt ~ C^a across the budgets, from the vertices
    a_true: float


def parabola_bias(law: ChinchillaFit, budgets: list[float], *, span_decades: float, offset_decades: float = 0.0,
                  sizes: int = 7, fixed_grid: bool = False) -> ParabolaBias:  # fmt: skip
    """Approach 2 on noise-free points of a known law: `sizes` model sizes per budget, evenly in log N over
    `span_decades`, centred `offset_decades` (log10) off the true N_opt; the vertex's error per budget and
    the exponent a the vertices give, against the law's own.

    Centred on each budget's optimum the valley has the same shape at every budget (both terms scale
    alike there), so the vertex is off by the same factor everywhere and a comes out right. A sweep
    that trains the same depths at every budget (`fixed_grid`: the grid centred on the middle budget's
    optimum) samples each valley at a different place: the bias then drifts with C and a is biased."""
    vertices, truths = [], []
    centre = law.optimum(float(np.sqrt(min(budgets) * max(budgets))))[0]
    for c in budgets:
        n_true, _ = law.optimum(c)
        n = (centre if fixed_grid else n_true) * 10 ** (
            offset_decades + np.linspace(-span_decades / 2, span_decades / 2, sizes)
        )
        d = c / (6.0 * n)
        o = isoflop_optimum(c, n, d, law.loss(n, d))
        vertices.append(o.params)
        truths.append(n_true)
    bias = [v / t - 1 for v, t in zip(vertices, truths, strict=True)]
    return ParabolaBias(span_decades, offset_decades, bias, fit_power_law(budgets, vertices, "N_opt over C").exponent,
                        law.a)  # fmt: skip
