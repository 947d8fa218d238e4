"""The report of a wsd sweep: Approach 3 on the branch points only, the compute-optimal
tokens:params ratio with its resampling interval, and each twin against its branch, on a
synthetic sweep whose runs obey a known Chinchilla law (tests/support/synthetic.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from miniseries.contract.layout import LOCAL_NAMESPACE, SweepLayout
from miniseries.contract.store import LocalStore
from miniseries.science.report import build_report
from miniseries.science.report.document import compute_report
from miniseries.science.report.markdown import render_markdown
from tests.support.synthetic import spec_from, write_sweep

pytestmark = pytest.mark.slow  # ~20 refits of Approach 3

# alpha = beta, so D_opt/N_opt = (B/A)^(1/alpha) at every compute: 2.1375^(1/0.33) = 9.99
LAW = {"E": 1.9, "A": 400.0, "B": 855.0, "alpha": 0.33, "beta": 0.33}
TRUE_RATIO = (LAW["B"] / LAW["A"]) ** (1 / LAW["alpha"])


def test_wsd_report_finds_the_laws_optimal_ratio_from_the_branches(tmp_path: Path) -> None:
    spec = spec_from({"depths": [1, 2, 3, 4], "training": {"mode": "wsd", "wsd": {
        "budgets": [4, 8, 16, 32], "cooldownFraction": 0.2, "twinDepth": 2, "twinBudgets": [8]}}})  # fmt: skip
    store = LocalStore(tmp_path)
    write_sweep(store, "w", spec, law=LAW, noise=0.001, core=None)
    doc, fits, rows = compute_report(store, SweepLayout(LOCAL_NAMESPACE, "w"), spec, bootstrap=20)
    assert {r.role for r in rows} == {"trunk", "branch", "twin"}
    opt = doc["fits"]["wsd_optimal_ratio"]
    assert opt["low"] <= opt["ratio"] <= opt["high"] and opt["resamples"] >= 15
    assert abs(opt["ratio"] / TRUE_RATIO - 1) < 0.15, (opt, TRUE_RATIO)
    assert doc["fits"]["chinchilla"]["points"] == 16  # 4 depths x 4 branches: no trunk, no twin
    (twin,) = doc["fits"]["wsd_twins"].items()
    assert twin[0] == "d2@8" and abs(twin[1]) < 0.01  # the same point, independent noise
    md = render_markdown(doc, fits, rows, [])
    assert "Compute-optimal tokens per parameter" in md and "Branch vs independent twin at d2@8" in md


def test_wsd_report_plots_loss_per_depth_and_the_optimum_against_compute(tmp_path: Path) -> None:
    """build_report writes the two wsd plots (PNG and SVG) and report.md links them; a ratio sweep has neither."""
    spec = spec_from({"depths": [1, 2, 3], "training": {"mode": "wsd", "wsd": {
        "budgets": [4, 8, 16], "twinDepth": 2, "twinBudgets": [4, 16]}}})  # fmt: skip
    store = LocalStore(tmp_path)
    write_sweep(store, "w", spec, law=LAW, noise=0.001, core=None)
    build_report(store, SweepLayout(LOCAL_NAMESPACE, "w"), spec, bootstrap=10)
    keys = set(store.list("local/w/report/"))
    md = store.read_bytes("local/w/report/report.md").decode()
    for name in ("wsd_loss_vs_ratio", "wsd_optimal_ratio"):
        for ext in ("png", "svg"):
            assert f"local/w/report/{name}.{ext}" in keys
        assert store.read_bytes(f"local/w/report/{name}.png")[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"({name}.png)" in md
    # the plot of the optimum carries its fitted line, the interval and the two reference ratios
    svg = store.read_bytes("local/w/report/wsd_optimal_ratio.svg").decode()
    assert "nanochat (Muon) 8" in svg and "Chinchilla 20" in svg and "at the largest branch" in svg
    ratio = spec_from({"depths": [2, 3, 4]})
    write_sweep(store, "r", ratio)
    build_report(store, SweepLayout(LOCAL_NAMESPACE, "r"), ratio, bootstrap=0)
    assert not any("wsd_" in k for k in store.list("local/r/report/"))
