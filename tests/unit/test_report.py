"""The report on a synthetic store: files, JSON schema, markdown, partial marking, bad input."""

from __future__ import annotations

import json
import math

import pytest

from miniseries import cli
from miniseries.api.spec import FitStatus
from miniseries.api.sweepfile import save_spec
from miniseries.contract.layout import LOCAL_NAMESPACE, SweepLayout
from miniseries.contract.store import LocalStore
from miniseries.science.report import build_report
from tests.support.synthetic import LAW, spec_from, write_sweep

PLOTS = ["loss_vs_tokens", "loss_vs_flops", "final_loss_vs_compute", "core_vs_compute"]


def L(sweep: str) -> SweepLayout:
    return SweepLayout(LOCAL_NAMESPACE, sweep)


def _doc(store: LocalStore, sweep: str) -> dict:
    return json.loads(store.read_bytes(L(sweep).report + "report.json"))


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "store")


def test_ratio_report_files_schema_and_fit(store):
    spec = spec_from({"depths": [2, 3, 4, 5, 6, 8]})
    write_sweep(store, "ratio", spec)
    uri, status = build_report(store, L("ratio"), spec)
    assert uri == store.uri + "/local/ratio/report/"
    assert isinstance(status, FitStatus)
    keys = set(store.list("local/ratio/report/"))
    for p in PLOTS:
        assert f"local/ratio/report/{p}.png" in keys and f"local/ratio/report/{p}.svg" in keys
        assert store.read_bytes(f"local/ratio/report/{p}.png")[:8] == b"\x89PNG\r\n\x1a\n"
    doc = _doc(store, "ratio")
    assert doc["schema_version"] == 1 and doc["mode"] == "ratio" and doc["partial"] is False
    assert doc["runs_finished"] == doc["runs_planned"] == 6
    assert {"runs", "fits", "extrapolation", "checks", "problems", "plots"} <= set(doc)
    law = doc["fits"]["ratio"]["params_law"]
    assert law["exponent"] == pytest.approx(0.5, abs=0.02)  # D = 8 N: N ~ C^0.5 up to attention FLOPs
    assert status.curves_cross is False and status.runs_fitted == 6 and status.partial is False
    assert status.tokens_per_param == pytest.approx(8.0, rel=0.05)
    targets = {e["target"]: e for e in doc["extrapolation"]}
    assert set(targets) == {"GPT-2 small", "GPT-2 XL"}
    assert targets["GPT-2 XL"]["flops"] > targets["GPT-2 small"]["flops"] > 0
    assert targets["GPT-2 XL"]["depth"] > targets["GPT-2 small"]["depth"] >= 1
    # measured MFU (0.1 in every synthetic run) drives GPU-hours, not the assumed 0.2
    e = targets["GPT-2 small"]
    assert e["gpu_hours"] == pytest.approx(e["flops"] / (2e11 * 0.1) / 3600)
    md = store.read_bytes("local/ratio/report/report.md").decode()
    for p in PLOTS:
        assert f"({p}.png)" in md
    assert "PARTIAL" not in md and "GPT-2 XL" in md
    json.dumps(doc, allow_nan=False)  # strict JSON: no NaN anywhere


def test_isoflop_report_recovers_law(store):
    spec = spec_from({"depths": [2, 3, 4, 5, 6, 8],
                      "training": {"mode": "isoflop", "isoflopBudgets": [3e13, 1e14, 3e14, 1e15]}})  # fmt: skip
    write_sweep(store, "iso", spec)
    _uri, status = build_report(store, L("iso"), spec, bootstrap=10)
    doc = _doc(store, "iso")
    assert "local/iso/report/isoflop.png" in store.list("local/iso/report/")
    assert status.params_exponent == pytest.approx(LAW["beta"] / (LAW["alpha"] + LAW["beta"]), abs=0.03)
    assert status.tokens_exponent == pytest.approx(0.5, abs=0.03)
    ch = doc["fits"]["chinchilla"]
    assert ch["alpha"] == pytest.approx(LAW["alpha"], abs=0.03) and ch["beta"] == pytest.approx(LAW["beta"], abs=0.03)
    assert len(doc["fits"]["isoflop"]["optima"]) == 4
    assert "(isoflop.png)" in store.read_bytes("local/iso/report/report.md").decode()


def test_partial_and_bad_runs_are_marked_not_fatal(store):
    spec = spec_from({"depths": [2, 3, 4, 5]})
    write_sweep(store, "part", spec, skip=("d5",), nan_loss=("d4",))
    store.write_bytes("local/part/d3/results.json", b"{not json")
    _uri, status = build_report(store, L("part"), spec)
    doc = _doc(store, "part")
    by = {r["name"]: r for r in doc["runs"]}
    assert by["d5"]["status"] == "missing" and by["d4"]["status"] == "invalid" and by["d3"]["status"] == "invalid"
    assert by["d2"]["status"] == "finished"
    assert doc["partial"] is True and status.partial is True
    text = " ".join(doc["problems"])
    assert "d5: no results" in text and "d4:" in text and "not valid JSON" in text
    assert "ratio fits need at least 2 finished runs, have 1" in text
    md = store.read_bytes("local/part/report/report.md").decode()
    assert "**PARTIAL**" in md and "## Problems" in md
    for p in PLOTS:  # plots still drawn, marked
        assert store.exists(f"local/part/report/{p}.png")


def test_no_core_no_extrapolation_but_report(store):
    spec = spec_from({"depths": [2, 3, 4]})
    write_sweep(store, "nocore", spec, core=None)
    _uri, status = build_report(store, L("nocore"), spec)
    doc = _doc(store, "nocore")
    assert doc["extrapolation"] == [] and doc["fits"]["core"] is None
    assert any("CORE fit needs at least 2" in p for p in doc["problems"])
    assert status.params_exponent is not None and not math.isnan(status.params_exponent)


def test_report_cli_single_and_compare(store, capsys):
    a = spec_from({"depths": [2, 3, 4]})
    b = spec_from({"depths": [2, 3, 4], "training": {"tokensPerParam": 20}})
    write_sweep(store, "r8", a)
    write_sweep(store, "r20", b)
    save_spec(store, L("r8"), a)
    save_spec(store, L("r20"), b)
    assert cli.main(["report", "r8", "--store", str(store.root), "--target", "GPT-3 XL=0.2914"]) == 0
    assert "report.md" in capsys.readouterr().out
    assert any(e["target"] == "GPT-3 XL" for e in _doc(store, "r8")["extrapolation"])
    assert cli.main(["report", "r8", "r20", "--store", str(store.root)]) == 0
    md = store.read_bytes("local/r8/report/compare-r20/report.md").decode()
    assert "| r8 | r20 |" in md.replace("| | r8 | r20 |", "| r8 | r20 |") and "tokens per param" in md
    assert store.exists("local/r8/report/compare-r20/final_loss_vs_compute.png")


def test_report_cli_unknown_sweep(store, capsys):
    store.check()
    assert cli.main(["report", "nope", "--store", str(store.root)]) == 2
    assert "has nothing under" in capsys.readouterr().err
