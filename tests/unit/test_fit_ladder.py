"""The loss-law forms against a published ladder (Gadre et al. 2024's testbed), through the product's
command (`miniseries fit validate`), and the shared-exponent form on a synthetic law it must recover."""

from __future__ import annotations

import json

import pytest

from miniseries import cli
from miniseries.science.fit import fit_chinchilla
from tests.unit.test_fit import DATA, needs_data, synthetic_grid


def test_the_shared_exponent_form_recovers_its_law_and_ties_the_exponents():
    n, d, loss = synthetic_grid(E=1.8, A=300.0, B=900.0, alpha=0.3, beta=0.3, noise=0.002)
    f = fit_chinchilla(n, d, loss, bootstrap=20, shared_exponent=True)
    assert f.form == "shared" and f.alpha == f.beta and f.a == pytest.approx(0.5)
    assert f.alpha == pytest.approx(0.3, abs=0.03) and abs(f.E - 1.8) < 0.05
    assert f.ci["alpha"] == f.ci["beta"] and f.ci["alpha"][0] < f.alpha < f.ci["alpha"][1]
    free = fit_chinchilla(n, d, loss, bootstrap=0)
    assert free.form == "free" and free.alpha != free.beta
    # on a law whose exponents differ the tied form fits worse: it is a constraint, not a relabelling
    n2, d2, loss2 = synthetic_grid(alpha=0.45, beta=0.25, noise=0.0)
    tied = fit_chinchilla(n2, d2, loss2, bootstrap=0, shared_exponent=True)
    assert tied.huber_objective > 10 * fit_chinchilla(n2, d2, loss2, bootstrap=0).huber_objective + 1e-12
    with pytest.raises(ValueError, match="fits 4 parameters and needs at least 5"):
        fit_chinchilla(n[:4], d[:4], loss[:4], shared_exponent=True)


@pytest.mark.slow
@needs_data
def test_fit_validate_on_gadre_meets_the_goal(capsys):
    """Issue 32: fit on the models up to 411M, predict the 1.4B and 6.9B runs of all three datasets.
    Measured (2026-12-07): the shared-exponent form predicts RedPajama's two targets to +0.13% and
    +0.31% (the paper: 0.71%, 0.73%), the free form to -1.11% and -3.02%. Guarded at 0.5%, and
    the shared form must win on the mean |error| (0.95% against 2.47%)."""
    assert cli.main(["fit", "validate", "--ladder", "gadre2024", "--data", str(DATA / "gadre2024"),
                     "--output", "json"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    by = {p["target"]: p for p in out["predictions"]}
    assert {p["dataset"] for p in out["predictions"]} == {"c4_original", "rpj", "rw_original"}
    assert len(by) == 9 and all(p["params"] > 1e9 for p in by.values())
    for target in ("rpj-open_lm_1b-32.0", "rpj-open_lm_7b-1.0"):
        assert abs(by[target]["error"]["shared"]) <= 0.005, (target, by[target]["error"])
        assert abs(by[target]["error"]["shared"]) < out["paper"][target]
    assert out["winner"] == "shared" and out["mean_abs_error"]["shared"] <= 0.011
    # every RedPajama and RefinedWeb target within 1%; C4's 6.9B run is the hard one (-5.2%)
    assert all(abs(p["error"]["shared"]) <= 0.01 for p in by.values() if p["dataset"] != "c4_original")
    assert abs(by["c4_original-open_lm_7b-1.0"]["error"]["shared"]) <= 0.06
    assert all(f["shared"]["alpha"] == f["shared"]["beta"] for f in out["fits"].values())
    assert cli.main(["fit", "validate", "--data", str(DATA / "gadre2024")]) == 0
    table = capsys.readouterr().out
    assert "rpj-open_lm_7b-1.0" in table and "the shared form predicts these runs better" in table


def test_fit_validate_names_a_missing_directory(tmp_path, capsys):
    assert cli.main(["fit", "validate", "--data", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert f"--data {tmp_path / 'nope'}" in err and "models/*.json" in err
