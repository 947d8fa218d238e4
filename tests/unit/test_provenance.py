"""science/provenance.py: differences between rows, and the refusal of a mixed joint fit."""

from __future__ import annotations

import pytest

from miniseries.contract.results import LossSummary, Provenance, RunResults
from miniseries.science.provenance import ProvenanceMismatch, check_joint_fit, differences


def row(run: str, provenance: Provenance | None) -> RunResults:
    return RunResults(sweep="s", run=run, depth=1, shape={}, params={}, target_tokens=1, tokens=1, steps=1,
                      total_batch_tokens=1, flops_per_token=1, flops=1.0, wall_seconds=1.0, gpu_seconds=0.0,
                      world_size=1, device="cpu", loss=LossSummary(), provenance=provenance)  # fmt: skip


BASE = dict(dataset_manifest_sha256="aa", tokenizer_sha256="tt", params_convention="transformer_matrices+lm_head",
            flops_convention="6N", torch_version="2.15", device_name="cpu", seed=42)  # fmt: skip


def test_device_and_seed_differences_are_listed_but_do_not_block() -> None:
    rows = [
        ("A/d1", row("d1", Provenance(**BASE))),
        ("B/d1", row("d1", Provenance(**{**BASE, "seed": 7, "device_name": "NVIDIA H100"}))),
    ]
    diffs = check_joint_fit(rows)
    assert [(d.field, d.blocking) for d in diffs] == [("device_name", False), ("seed", False)]
    assert diffs[1].describe() == "seed: 42 (A/d1) vs 7 (B/d1)"


def test_a_different_dataset_or_missing_provenance_refuses_the_fit() -> None:
    rows = [("A/d1", row("d1", Provenance(**BASE))), ("A/d2", row("d2", Provenance(**BASE))),
            ("B/d1", row("d1", Provenance(**{**BASE, "dataset_manifest_sha256": "bb"})))]  # fmt: skip
    with pytest.raises(ProvenanceMismatch, match=r"dataset_manifest_sha256: aa \(A/d1, A/d2\) vs bb \(B/d1\)"):
        check_joint_fit(rows)
    old = [("A/d1", row("d1", Provenance(**BASE))), ("old/d1", row("d1", None))]
    assert {d.field for d in differences(old)} >= {"tokenizer_sha256", "params_convention"}
    with pytest.raises(ProvenanceMismatch, match=r"unknown \(no provenance\) \(old/d1\)"):
        check_joint_fit(old)
