"""Rollout validation (science/fit/rollout.py): each law refitted without the largest-compute run(s)
predicts them; the numbers checked against independent arithmetic, and the report carries them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from miniseries.contract.layout import LOCAL_NAMESPACE, SweepLayout
from miniseries.contract.store import LocalStore
from miniseries.science.fit import FitError
from miniseries.science.fit.rollout import (
    compute_factor,
    rollout_chinchilla,
    rollout_core,
    rollout_core_two_step,
    rollout_power_law,
)
from miniseries.science.report import build_report
from miniseries.science.report.analysis import _pick_form
from tests.support.synthetic import spec_from, write_sweep
from tests.unit.test_fit import _gadre, needs_data, synthetic_grid

C = np.geomspace(1e17, 1e20, 6)
NAMES = [f"r{i}" for i in range(6)]


def test_an_exact_power_law_predicts_its_largest_run_exactly():
    r = rollout_power_law(NAMES, C, 3.0 * C**-0.05, "loss over C")
    assert r.held_out == ["r5"] and r.fitted_on == 5 and r.relative
    assert abs(r.error) < 1e-12


def test_a_floor_the_power_law_lacks_shows_as_a_negative_rollout_error():
    """y = 2 + 40 C^-0.1 flattens toward 2: a pure power law fitted on the five smaller runs
    undershoots the largest. The error is what an independent log-log line through them gives."""
    y = 2.0 + 40.0 * C**-0.1
    slope, icpt = np.polyfit(np.log(C[:5]), np.log(y[:5]), 1)
    expected = (np.exp(icpt + slope * np.log(C[5])) - y[5]) / y[5]
    r = rollout_power_law(NAMES, C, y, "loss over C")
    assert r.error == pytest.approx(expected, rel=1e-9) and r.error < -0.005
    with pytest.raises(FitError, match="needs 2 distinct compute values besides the largest"):
        rollout_power_law(NAMES[:2], C[:2], y[:2], "loss over C")


def test_core_rollout_is_in_core_points_and_sets_the_compute_factor():
    core = np.array([0.02, 0.05, 0.08, 0.11, 0.14, 0.20])  # the largest run is 0.03 above the line
    r = rollout_core(NAMES, C, core)
    line = np.polyfit(np.log10(C[:5]), core[:5], 1)
    assert not r.relative and r.error == pytest.approx(np.polyval(line, np.log10(C[5])) - 0.20, abs=1e-12)
    slope = 0.05
    assert compute_factor(r, slope) == pytest.approx(10 ** (abs(r.error) / slope))
    assert compute_factor(r, 0.0) is None


def test_the_approach3_form_is_picked_by_rollout_error_synthetic():
    """On a law whose exponents differ (0.45, 0.25) the tied form cannot follow: the free one wins."""
    n, d, loss = synthetic_grid(alpha=0.45, beta=0.25, noise=0.0)
    names = [str(i) for i in range(len(n))]
    rollouts: dict = {}
    assert _pick_form(names, list(n), list(d), list(loss), list(n), rollouts) is False
    free, shared = rollouts["chinchilla_free"], rollouts["chinchilla_shared"]
    assert abs(free.error) < 1e-3 < abs(shared.error) and rollouts["chinchilla_choice"]["form"] == "free"
    assert free.held_out == [str(i) for i in range(42, 48)]  # the largest model's six token counts
    direct = rollout_chinchilla(names, n, d, loss, n, shared_exponent=True)
    assert direct.error == pytest.approx(shared.error)


@needs_data
def test_the_approach3_form_is_picked_by_rollout_error_on_gadre_redpajama():
    """Published data: RedPajama's ladder, the models above 411M held out. The shared exponent
    predicts them to 0.31% (worst of three), the free form to 3.0%: the report would pick shared."""
    rows = [r for r in _gadre("rpj")]
    names, n, d, loss = ([r[i] for r in rows] for i in (0, 1, 2, 3))
    rollouts: dict = {}
    assert _pick_form(names, n, d, loss, [1.0 if r[4] else 0.0 for r in rows], rollouts) is True
    assert abs(rollouts["chinchilla_shared"].error) < 0.005 < 0.02 < abs(rollouts["chinchilla_free"].error)
    assert sorted(rollouts["chinchilla_shared"].held_out) == sorted(r[0] for r in rows if r[4])


def test_the_report_carries_each_laws_rollout_and_the_extrapolation_its_factor(tmp_path):
    store = LocalStore(tmp_path / "store")
    spec = spec_from({"depths": [2, 3, 4, 5, 6, 8]})
    write_sweep(store, "ratio", spec)
    _uri, status = build_report(store, SweepLayout(LOCAL_NAMESPACE, "ratio"), spec)
    doc = json.loads(store.read_bytes("local/ratio/report/report.json"))
    ro = doc["fits"]["rollout"]
    assert ro["loss_law"]["held_out"] == ["d8"] and ro["loss_law"]["fitted_on"] == 5
    assert {"loss_law", "bpb_law", "core", "extrapolation"} <= set(ro)
    factor = ro["extrapolation"]["compute_factor"]
    assert factor == pytest.approx(10 ** (abs(ro["core"]["error"]) / doc["fits"]["core"]["slope"]))
    assert all(e["rollout_factor"] == factor for e in doc["extrapolation"])
    assert status.rollout is not None and status.rollout["loss_law"] == ro["loss_law"]["error"]
    assert status.rollout["extrapolation"] == factor
    md = store.read_bytes("local/ratio/report/report.md").decode()
    assert "## Rollout validation" in md and "| loss over C | d8 |" in md and "× or ÷ (rollout)" in md


def test_approach2_parabolas_are_biased_where_approach3_is_not():
    """A known law with alpha != beta (0.45, 0.25), noise-free isoFLOP points at the same seven model
    sizes at every budget (as a sweep of fixed depths samples them): the parabola's vertex overestimates
    N_opt by 10-14% at a two-decade span, and more at three, while Approach 3 on the same points finds it."""
    from miniseries.science.fit import fit_chinchilla, fit_isoflop
    from miniseries.science.fit.approaches import compare, parabola_bias
    from miniseries.science.fit.chinchilla import ChinchillaFit

    law = ChinchillaFit(E=1.8, A=400.0, B=1200.0, alpha=0.45, beta=0.25, points=0, huber_objective=0.0)
    budgets = [1e18, 3e18, 1e19, 3e19]
    narrow = parabola_bias(law, budgets, span_decades=1.0, fixed_grid=True)
    wide = parabola_bias(law, budgets, span_decades=2.0, fixed_grid=True)
    wider = parabola_bias(law, budgets, span_decades=3.0, fixed_grid=True)
    assert max(abs(b) for b in narrow.params_bias) < 0.04
    assert all(0.09 < b < 0.15 for b in wide.params_bias) and all(b > 0.28 for b in wider.params_bias)
    centred = parabola_bias(law, budgets, span_decades=2.0)  # centred on each optimum: one factor, a unbiased
    assert np.ptp(centred.params_bias) < 1e-6 and centred.a_fitted == pytest.approx(law.a, abs=1e-6)
    # the same points through the report's two approaches
    centre = law.optimum(float(np.sqrt(1e18 * 3e19)))[0]
    rows = []
    for c in budgets:
        for n in centre * 10 ** np.linspace(-1.0, 1.0, 7):
            rows.append(
                {"budget_flops": c, "params": n, "tokens": c / (6 * n), "loss": float(law.loss(n, c / (6 * n)))}
            )
    iso = fit_isoflop(rows)
    fit3 = fit_chinchilla([r["params"] for r in rows], [r["tokens"] for r in rows], [r["loss"] for r in rows],
                          bootstrap=0)  # fmt: skip
    got = compare(iso, fit3)
    for b, bias in zip(got.budgets, wide.params_bias, strict=True):
        assert b.approach3_params == pytest.approx(law.optimum(b.budget_flops)[0], rel=0.01)
        assert b.difference == pytest.approx(bias, abs=0.01)


def test_the_isoflop_report_has_both_approaches_and_their_rollouts(tmp_path):
    store = LocalStore(tmp_path / "store")
    spec = spec_from({"depths": [2, 3, 4, 5, 6, 8],
                      "training": {"mode": "isoflop", "isoflopBudgets": [3e13, 1e14, 3e14, 1e15]}})  # fmt: skip
    write_sweep(store, "iso", spec)
    _uri, status = build_report(store, SweepLayout(LOCAL_NAMESPACE, "iso"), spec, bootstrap=0)
    doc = json.loads(store.read_bytes("local/iso/report/report.json"))
    ro = doc["fits"]["rollout"]
    assert ro["loss_law"]["law"] == "loss_opt over C" and ro["loss_law"]["held_out"] == ["optimum@1e+15"]
    assert {"chinchilla_free", "chinchilla_shared", "chinchilla_choice"} <= set(ro)
    held = set(ro["chinchilla_free"]["held_out"])
    assert held and all(r["budget_flops"] == 1e15 for r in doc["runs"] if r["name"] in held)
    assert doc["fits"]["chinchilla"]["form"] == ro["chinchilla_choice"]["form"]
    assert len(doc["fits"]["approaches"]["budgets"]) == 4
    assert status.rollout is not None and "chinchilla_free" in status.rollout
    md = store.read_bytes("local/iso/report/report.md").decode()
    assert "Approach 2 (each budget's parabola vertex) beside Approach 3" in md
    assert f"reported in its **{ro['chinchilla_choice']['form']}**-exponent form" in md


def test_core_two_step_route_recovers_its_sigmoid_and_wins_where_core_bends():
    """CORE = 0.6 / (1 + exp(3 (L - 3.2))) of a loss 2.0 + 40 C^-0.1 (the OLMo ladder's shape): the
    two-step route refits it and predicts the largest run better than a line in log C, which bends
    the wrong way; on CORE linear in log C the direct law predicts it exactly and wins."""
    from miniseries.science.fit.core_route import fit_core_sigmoid, fit_two_step

    c = np.geomspace(1e17, 1e21, 7)
    loss = 2.0 + 40.0 * c**-0.1
    core = 0.6 / (1 + np.exp(3.0 * (loss - 3.2)))
    sig = fit_core_sigmoid(loss, core)
    assert (sig.top, sig.k, sig.l_mid) == pytest.approx((0.6, 3.0, 3.2), rel=1e-3)
    assert sig.loss_for(0.7) is None and sig.loss_for(0.3) == pytest.approx(3.2, abs=1e-3)
    names = [f"r{i}" for i in range(7)]
    two = rollout_core_two_step(names, c, loss, core)
    direct = rollout_core(names, c, core)
    assert abs(two.error) < abs(direct.error) and not two.relative
    law = fit_two_step(c, loss, core)
    assert law.compute_for(0.7) == float("inf") and law.slope > 0
    linear = 0.05 * np.log10(c) - 0.8
    assert abs(rollout_core(names, c, linear).error) < 1e-9
    with pytest.raises(FitError, match="needs 4 runs"):
        fit_core_sigmoid(loss[:3], core[:3])


def test_the_report_picks_the_core_route_by_rollout_and_says_why():
    from miniseries.science.report.analysis import _core_route
    from miniseries.science.report.rows import RunRow

    c = np.geomspace(1e17, 1e21, 7)
    loss = 2.0 + 40.0 * c**-0.1
    core = 0.6 / (1 + np.exp(3.0 * (loss - 3.2)))
    rows = [RunRow(f"r{i}", i + 1, None, "finished", flops=float(c[i]), final_loss=float(loss[i]), core=float(core[i]))
            for i in range(7)]  # fmt: skip
    from miniseries.science.fit import fit_core

    direct = fit_core(c, core)
    rollouts: dict = {}
    fits: dict = {}
    law, ro = _core_route(rows, direct, rollout_core([r.name for r in rows], c, core), rollouts, fits)
    assert fits["core_route"]["route"] == "two-step" and "via loss" in fits["core_route"]["why"]
    assert law is fits["core_two_step"] and ro is rollouts["core_two_step"]
