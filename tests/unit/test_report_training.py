"""The report through training: val-bpb curves, forecast error per run, the collapse check (only with
an irreducible loss) and provenance; `miniseries report A B` marks provenance differences and refuses
a joint fit of rows whose conventions differ."""

from __future__ import annotations

import json

import pytest

from miniseries import cli
from miniseries.contract.layout import LOCAL_NAMESPACE, SweepLayout
from miniseries.contract.results import Provenance, RunResults
from miniseries.contract.store import LocalStore
from miniseries.science.report import build_report, joint_fit
from tests.support.synthetic import spec_from, write_sweep


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path)


def _stamp(store: LocalStore, sweep: str, **prov: object) -> None:
    """Give every run of `sweep` a provenance (with `prov` overriding) and a val-bpb trace."""
    layout = SweepLayout(LOCAL_NAMESPACE, sweep)
    for key in store.list(layout.root):
        if not key.endswith("/results.json"):
            continue
        run = layout.run(key[len(layout.root) :].split("/")[0])
        res = RunResults.from_json(store.read_bytes(run.results))
        res.provenance = Provenance(device_name="cpu", tokenizer_sha256="t" * 64, dataset_manifest_sha256="d" * 64,
                                    params_convention="nanochat", flops_convention="6N+attn", seed=42,
                                    lr_schedule={"warmup_steps": 0, "warmdown_ratio": 0.4}, **prov)  # fmt: skip
        store.write_bytes(run.results, res.to_json())
        pts = [{"step": s, "tokens": s * res.total_batch_tokens, "flops": s * res.total_batch_tokens * res.flops_per_token,
                "val_bpb": (res.val_bpb or 1.0) * (1 + 1.0 / s)} for s in range(10, res.steps + 1, max(10, res.steps // 8))]  # fmt: skip
        store.write_bytes(run.val_curve, "".join(json.dumps(p) + "\n" for p in pts).encode())


def _doc(store: LocalStore, sweep: str) -> dict:
    return json.loads(store.read_bytes(f"{LOCAL_NAMESPACE}/{sweep}/report/report.json"))


def test_ratio_report_shows_curves_forecast_errors_provenance_and_skips_collapse(store):
    spec = spec_from({"depths": [2, 3, 4], "training": {"warmupSteps": 0}})
    write_sweep(store, "r", spec)
    _stamp(store, "r")
    d3 = SweepLayout(LOCAL_NAMESPACE, "r").run("d3")
    res = RunResults.from_json(store.read_bytes(d3.results))
    assert res.provenance is not None
    res.provenance.device_name = "NVIDIA H100"
    store.write_bytes(d3.results, res.to_json())
    build_report(store, SweepLayout(LOCAL_NAMESPACE, "r"), spec, bootstrap=10)
    doc = _doc(store, "r")
    tt = doc["through_training"]
    assert sorted(tt["val_curves"]) == ["d2", "d3", "d4"] and tt["val_curves_note"] is None
    for name in ("val_bpb_vs_tokens", "val_bpb_vs_flops", "forecast_vs_actual_val_bpb"):
        assert f"{name}.png" in doc["plots"] and store.exists(f"{LOCAL_NAMESPACE}/r/report/{name}.png")
    runs = {r["run"]: r for r in tt["forecast"]["runs"]}
    assert sorted(runs) == ["d2", "d3", "d4"] and tt["forecast"]["upto"] == 0.5
    assert all(r["cut_step"] == r["steps"] // 2 for r in runs.values())
    assert all(r["forecast"] is not None or r["refused"] for r in runs.values())
    assert tt["forecast"]["median_abs_val_bpb_error"]["others"] is not None
    assert "no irreducible loss" in doc["checks"]["collapse"]["skipped"]
    assert tt["provenance"]["d3"]["device_name"] == "NVIDIA H100"
    assert [(d["field"], d["blocking"]) for d in tt["provenance_differences"]] == [("device_name", False)]
    md = store.read_bytes(f"{LOCAL_NAMESPACE}/r/report/report.md").decode()
    assert "## Through training" in md and "Loss curves collapse (Qiu et al. 2025): skipped" in md
    assert "- differs: device_name: cpu (d2, d4) vs NVIDIA H100 (d3)" in md and "Median |error|" in md


def test_isoflop_report_runs_the_collapse_check_against_chinchillas_e(store):
    spec = spec_from({"depths": [2, 3, 4, 5], "training": {"mode": "isoflop", "isoflopBudgets": [3e13, 1e14, 3e14]}})
    write_sweep(store, "iso", spec)
    build_report(store, SweepLayout(LOCAL_NAMESPACE, "iso"), spec, bootstrap=10)
    doc = _doc(store, "iso")
    collapse = doc["checks"]["collapse"]
    assert collapse["irreducible"] == pytest.approx(doc["fits"]["chinchilla"]["E"])
    assert len(collapse["runs"]) == doc["runs_finished"] and isinstance(collapse["ok"], bool)
    assert set(doc["through_training"]["provenance"].values()) == {None}  # written before provenance: unknown
    assert (
        "Loss curves collapse (Qiu et al. 2025, E = "
        in store.read_bytes(f"{LOCAL_NAMESPACE}/iso/report/report.md").decode()
    )


def test_compare_marks_differences_and_refuses_a_joint_fit_across_tokenizers(store, capsys):
    spec = spec_from({"depths": [2, 3, 4], "training": {"warmupSteps": 0}})
    for name in ("a", "b", "c"):
        write_sweep(store, name, spec)
    _stamp(store, "a")
    _stamp(store, "b", torch_version="2.5.0")
    _stamp(store, "c", torch_version="2.5.0")
    c = SweepLayout(LOCAL_NAMESPACE, "c")
    for run in ("d2", "d3", "d4"):
        res = RunResults.from_json(store.read_bytes(c.run(run).results))
        assert res.provenance is not None
        res.provenance.tokenizer_sha256 = "u" * 64
        store.write_bytes(c.run(run).results, res.to_json())
    a, b = SweepLayout(LOCAL_NAMESPACE, "a"), SweepLayout(LOCAL_NAMESPACE, "b")
    ok = joint_fit(store, a, b)
    assert "refused" not in ok and ok["loss_law"]["points"] == 6
    assert [d["field"] for d in ok["differences"]] == ["torch_version"]
    bad = joint_fit(store, a, c)
    assert bad["refused"].startswith("refusing a joint fit of rows whose trainer, data, tokenizer or conventions differ: "
                                     "tokenizer_sha256: tttt")  # fmt: skip
    assert cli.main(["report", "a", "c", "--store", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "differs: tokenizer_sha256 (blocks a joint fit)" in out and "joint fit refused: " in out
    md = store.read_bytes(f"{LOCAL_NAMESPACE}/a/report/compare-c/report.md").decode()
    assert "## Provenance differences" in md and "**tokenizer_sha256** (blocks a joint fit)" in md
    assert "Refused: refusing a joint fit" in md
