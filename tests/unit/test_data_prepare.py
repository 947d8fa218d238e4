"""`miniseries data prepare` is control plane: it must work without torch, on any text directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")
REPO = Path(__file__).resolve().parents[2]


def test_prepare_from_a_text_directory_without_torch(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for i in range(12):
        (src / f"doc{i:02d}.txt").write_text(f"Document {i}. " + "The cat sat on the mat. " * 40)
    out = tmp_path / "out"
    code = (
        "import sys; from miniseries.cli import main; "
        f"rc = main(['data', 'prepare', '--out', {out.as_uri()!r}, '--source', {str(src)!r}, '--glob', '*.txt', "
        "'--shard-chars', '3000', '--val-shards', '2']); "
        "assert 'torch' not in sys.modules, 'control plane imported torch'; sys.exit(rc)"
    )
    env = {"PYTHONPATH": str(REPO / "operator/src"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "_manifest.json").read_text())
    splits = [s["split"] for s in manifest["shards"]]
    assert splits[-2:] == ["val", "val"] and set(splits[:-2]) == {"train"}
    assert sum(s["documents"] for s in manifest["shards"]) == 12
    assert sorted(p.name for p in out.glob("*.parquet"))[-1] == manifest["shards"][-1]["key"]


def test_trainer_never_imports_the_kubernetes_side() -> None:
    for path in (REPO / "trainer_image/src/miniseries_trainer").glob("*.py"):
        text = path.read_text()
        assert "import kopf" not in text and "import kubernetes" not in text, path
