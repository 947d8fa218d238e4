"""`miniseries report A B`'s per-depth table (science/report/side_by_side.py) and the joint fit's refusal
of rows of two trainers (science/provenance.py): pure, on hand-made report.json runs and provenance."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from miniseries.contract.results import BUILTIN_TRAINER, Provenance
from miniseries.science.provenance import ProvenanceMismatch, check_joint_fit, differences
from miniseries.science.report.side_by_side import depth_rows, render_depths


def run(depth: int, bpb: float | None, *, core: float | None = None, wall: float = 10.0, status: str = "finished"):
    return {"name": f"d{depth}", "depth": depth, "status": status, "val_bpb": bpb, "core": core,
            "tokens": 4096.0 * depth, "wall_seconds": wall}  # fmt: skip


def test_each_depth_of_either_sweep_is_a_row_with_both_sides() -> None:
    a = {"runs": [run(1, 3.2, wall=5.0), run(2, 3.0)]}
    b = {"runs": [run(2, 2.8, core=0.01), run(3, 2.6), run(1, None, status="missing")]}
    rows = depth_rows(a, b)
    assert [r.depth for r in rows] == [1, 2, 3]
    assert rows[0].value("a", "val_bpb") == 3.2 and rows[0].value("b", "val_bpb") is None  # b's d1 unfinished
    assert rows[1].bpb_delta() == pytest.approx(-0.2)
    assert rows[2].a is None and rows[2].bpb_delta() is None
    lines = render_depths("ours", "nano", rows)
    assert lines[0].startswith("| depth | val bpb ours | val bpb nano | CORE ours | CORE nano |")
    assert lines[3] == "| d2 | 3.0000 | 2.8000 | — | 0.0100 | 8,192 | 8,192 | 10.0 | 10.0 | -0.2000 |"
    assert lines[2].endswith("| 5.0 | — | — |")  # d1: A's wall time, nothing of B's, no delta


def test_rows_of_two_trainers_are_never_fitted_together_and_the_refusal_names_the_trainers() -> None:
    same = dict(dataset_manifest_sha256="d" * 64, tokenizer_sha256="t" * 64, params_convention="p",
                flops_convention="f")  # fmt: skip
    # differences() reads only a row's provenance
    ours = SimpleNamespace(provenance=Provenance(trainer=BUILTIN_TRAINER, **same))
    old = SimpleNamespace(provenance=Provenance(**same))  # from before provenance named the trainer: built-in
    nano = SimpleNamespace(provenance=Provenance(trainer="nanochat scripts/base_train.py", **same))
    assert check_joint_fit([("a/d1", ours), ("b/d1", old)]) == []  # type: ignore[list-item]
    with pytest.raises(ProvenanceMismatch, match=r"trainer: miniseries_trainer \(a/d1\) vs nanochat scripts/"):
        check_joint_fit([("a/d1", ours), ("n/d1", nano)])  # type: ignore[list-item]
    [diff] = differences([("a/d1", ours), ("n/d1", nano)])  # type: ignore[list-item]
    assert diff.field == "trainer" and diff.blocking
