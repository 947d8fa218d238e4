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


def test_the_schedule_is_compared_by_warmdown_shape_and_fraction() -> None:
    """wsd branches record a (1-sqrt) cooldown over their own rounded steps: one family whatever their
    lengths; a linear warmdown (a ratio sweep's) is listed as a difference, naming both shapes."""
    from miniseries.contract.schedule import schedule_record

    def prov(rec: dict) -> Provenance:
        return Provenance(**BASE, lr_schedule=rec)  # type: ignore[arg-type]

    branches = [(f"W/d1-b{s}", row("b", prov(schedule_record(s, 5, 0.4, shape="sqrt", warmdown_steps=round(0.2 * s)))))
                for s in (9, 28, 113)]  # fmt: skip
    assert [r.provenance.lr_schedule["warmdown_fraction"] for _, r in branches] == [0.2222, 0.2143, 0.2035]  # type: ignore[union-attr]
    assert differences(branches) == []
    ratio = ("R/d1", row("d1", prov(schedule_record(100, 5, 0.4))))
    (diff,) = check_joint_fit([*branches, ratio])
    assert diff.field == "lr_schedule" and not diff.blocking
    assert diff.describe() == (
        "lr_schedule: warmup 5 steps, (1-sqrt) cooldown over ~0.2 of the steps (W/d1-b9, W/d1-b28, W/d1-b113) "
        "vs warmup 5 steps, linear warmdown over 0.4 of the steps (R/d1)"
    )
    old = ("O/d1", row("d1", prov({"kind": "warmup-stable-decay (linear)", "warmup_steps": 5, "warmdown_ratio": 0.4})))
    assert differences([ratio, old]) == []  # rows from before the shape was recorded were linear
