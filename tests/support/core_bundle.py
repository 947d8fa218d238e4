"""The reference CORE eval bundle (shared/data/eval_bundle, 16 of 22 tasks) and test copies of it.

Tests never write to the reference: they copy it into a temporary directory. `complete_bundle`
fills the six task files the reference lacks with *stand-ins* (rows of a present task of the same
type under the missing task's name), so the plumbing of a full 22-task CORE can be exercised;
a score over stand-ins is not a real CORE, and no test treats it as one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
#: the reference data beside the checkout (../shared/data), or where MINISERIES_SHARED_DATA says
SHARED_DATA = Path(os.environ.get("MINISERIES_SHARED_DATA") or REPO.parent / "shared" / "data")
REFERENCE_BUNDLE = next((p for p in (SHARED_DATA / "eval_bundle",) if p.is_dir()), None)

#: missing task -> the present task whose rows stand in for it (same row format)
STAND_INS = {
    "hellaswag_zeroshot": "arc_easy",
    "hellaswag": "arc_easy",
    "squad": "jeopardy",
    "coqa": "lambada_openai",
    "boolq": "copa",
    "bigbench_language_identification": "commonsense_qa",
}


def copy_bundle(dst: Path) -> Path:
    assert REFERENCE_BUNDLE is not None
    shutil.copytree(REFERENCE_BUNDLE, dst)
    return dst


def task_paths(bundle: Path) -> dict[str, Path]:
    tasks = yaml.safe_load((bundle / "core.yaml").read_text())["icl_tasks"]
    return {t["label"]: bundle / "eval_data" / t["dataset_uri"] for t in tasks}


def complete_bundle(dst: Path, rows: int = 60) -> Path:
    """A copy of the reference with stand-in files for its missing tasks (first `rows` rows each)."""
    copy_bundle(dst)
    paths = task_paths(dst)
    for task, source in STAND_INS.items():
        if not paths[task].exists():
            paths[task].parent.mkdir(parents=True, exist_ok=True)
            lines = paths[source].read_text().splitlines(keepends=True)[:rows]
            paths[task].write_text("".join(lines))
    return dst
