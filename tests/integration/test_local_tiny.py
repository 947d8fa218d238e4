"""The local runner with the real trainer, end to end on CPU: data, tokenizer, two depths, report.

Skipped until the trainer (miniseries_trainer.train) and the data preparation
(miniseries.data.prepare) are installed. Then: a run, an interrupt-free rerun
that skips everything, and a report built from real results.
"""

from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path

import pytest
import yaml

from miniseries.api.sweepfile import load_sweep
from miniseries.contract.layout import LOCAL_NAMESPACE
from miniseries.local.runner import LocalSweep, run_states, run_sweep
from tests.support.core_bundle import REFERENCE_BUNDLE, complete_bundle

pytestmark = [pytest.mark.slow, pytest.mark.torch]


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


needs_trainer = pytest.mark.skipif(
    not (_installed("torch") and _installed("miniseries_trainer.train") and _installed("miniseries.data.prepare")),
    reason="needs torch, miniseries_trainer.train and miniseries.data.prepare",
)


@needs_trainer
def test_tiny_sweep_end_to_end_scores_core_and_a_rerun_skips_what_finished(tmp_path, monkeypatch):
    """Two depths trained, each evaluated on CORE from an eval bundle where `miniseries data fetch
    --eval-bundle` puts it (22 tasks: the reference's 16 and 6 stand-ins), the report built from their
    results, and a rerun that trains nothing: one sweep for the three (two tests trained the same two depths
    before)."""
    monkeypatch.delenv("MINISERIES_TRAINER_MODULE", raising=False)
    monkeypatch.delenv("MINISERIES_TOKENIZER_MODULE", raising=False)
    monkeypatch.setenv("MINISERIES_CACHE", str(tmp_path / "cache"))
    with_core = REFERENCE_BUNDLE is not None  # ../shared/data/eval_bundle: without it, the path without CORE
    if with_core:
        complete_bundle(tmp_path / "cache" / "eval_bundle")
    doc = yaml.safe_load(Path("examples/tiny.yaml").read_text())
    doc["metadata"]["name"] = "tiny-e2e"
    doc["spec"]["depths"] = [1, 2]
    doc["spec"]["training"]["tokensPerParam"] = 2
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(doc))
    ls = LocalSweep(load_sweep(path), tmp_path / "store", device="cpu")
    out = io.StringIO()
    assert run_sweep(ls, out=out) == 0
    assert {r["state"] for r in run_states(ls)} == {"Succeeded"}
    report = json.loads((tmp_path / "store" / LOCAL_NAMESPACE / "tiny-e2e" / "report" / "report.json").read_text())
    assert report["runs_finished"] == 2
    assert all(r["final_loss"] and r["final_loss"] > 0 for r in report["runs"])
    if with_core:
        assert "CORE: every run is evaluated on the eval bundle" in out.getvalue()
        for run in ("d1", "d2"):
            res = json.loads((tmp_path / "store" / LOCAL_NAMESPACE / "tiny-e2e" / run / "results.json").read_text())
            assert res["core"]["core"] is not None and not res["core"]["partial"] and len(res["core"]["tasks"]) == 22
            assert all(t["examples"] == 20 for t in res["core"]["tasks"])  # the sweep's coreMaxPerTask
        assert all(r["core"] is not None for r in report["runs"])
        assert not any("no run was evaluated on CORE" in p for p in report["problems"])
    out = io.StringIO()
    assert run_sweep(ls, out=out, report=False) == 0
    assert "2 already finished" in out.getvalue()
    if not with_core:  # everything else ran and passed; the skip names what did not
        pytest.skip("CORE not checked: no eval bundle at ../shared/data/eval_bundle")
