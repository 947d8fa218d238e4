"""The fast Chinchilla fit against the method it replaced (tests/support/fit_reference.py): same estimates, same intervals.

The new fit runs the same algorithm (L-BFGS from the 64 best grid points; each
bootstrap resample from the full-data optimum and the best grid start; the same
resamples for the same seed) with a faster objective, the grid evaluated as one
array and one BLAS thread, so on the same data both must land on the same
optimum (estimates to 1e-5 relative) and draw the same intervals (endpoints to
1e-4 of the interval's width). The reference runs with
one BLAS thread as well, only so that this test is quicker; threading changes
its time, not its numbers. Still ~10 s a fit on 2 busy cores (the reference
evaluates the grid one point at a time and runs L-BFGS from 64 starts), so
the comparisons are marked slow: `make unit` skips them, the full suite runs them.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from miniseries.cli.science_commands import read_scaling_csv
from miniseries.science.fit import _huber_objective, _huber_objective_many, _init_grid, fit_chinchilla
from tests.support import fit_reference
from tests.unit.test_fit import DATA, _gadre, needs_data, synthetic_grid

NAMES = ("E", "A", "B", "alpha", "beta", "a", "b")


def _same(new, old, bootstrap):
    for k in NAMES:
        assert getattr(new, k) == pytest.approx(getattr(old, k), rel=1e-5), k
    assert new.huber_objective <= old.huber_objective * (1 + 1e-12)
    assert new.bootstrap_samples == old.bootstrap_samples == bootstrap
    for k in NAMES if bootstrap else ():
        width = old.ci[k][1] - old.ci[k][0]
        assert width > 0, k
        assert np.abs(np.subtract(new.ci[k], old.ci[k])).max() <= 1e-4 * width, (k, new.ci[k], old.ci[k])


def _both(n, d, loss, bootstrap):
    new = fit_chinchilla(n, d, loss, bootstrap=bootstrap)
    with threadpool_limits(limits=1, user_api="blas"):
        old = fit_reference.reference_fit_chinchilla(n, d, loss, bootstrap=bootstrap)
    return new, old


def test_objective_and_grid_match_the_reference():
    n, d, loss = synthetic_grid()
    log_n, log_d, log_l = np.log(n), np.log(d), np.log(loss)
    grid = _init_grid()
    assert np.array_equal(grid, fit_reference._init_grid())
    rng = np.random.default_rng(0)
    thetas = grid[rng.choice(len(grid), 200, replace=False)] + rng.normal(0, 0.1, (200, 5))
    many = _huber_objective_many(thetas, log_n, log_d, log_l, 1e-3, chunk=64)
    for theta, value in zip(thetas, many, strict=True):
        v_new, g_new = _huber_objective(theta, log_n, log_d, log_l, 1e-3)
        v_old, g_old = fit_reference._huber_objective(theta, log_n, log_d, log_l, 1e-3)
        assert v_new == pytest.approx(v_old, rel=1e-12) and value == pytest.approx(v_old, rel=1e-12)
        assert np.allclose(g_new, g_old, rtol=1e-9, atol=1e-14 * np.abs(g_old).max())


@pytest.mark.slow
def test_synthetic_law_same_as_reference():
    n, d, loss = synthetic_grid()
    _same(*_both(n, d, loss, 20), 20)


@pytest.mark.slow
@needs_data
def test_epoch_refit_same_as_reference(tmp_path):
    src = tmp_path / "chinchilla.csv"
    shutil.copy(DATA / "chinchilla_svg_extracted_data.csv", src)
    n, d, loss = read_scaling_csv(src, drop_highest_loss=5)
    _same(*_both(n, d, loss, 20), 20)


@pytest.mark.slow
@needs_data
@pytest.mark.parametrize("dataset", ["c4_original", "rpj", "rw_original"])
def test_gadre_testbed_same_as_reference(dataset):
    small = [r for r in _gadre(dataset) if not r[4]]
    n, d, loss = ([r[i] for r in small] for i in (1, 2, 3))
    _same(*_both(n, d, loss, 0), 0)
