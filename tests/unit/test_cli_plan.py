"""`miniseries plan` and `miniseries crd` as a user runs them: no cluster, no torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from miniseries.api.sweepfile import load_sweep
from miniseries.plan.planner import make_plan

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "miniseries.cli", *args], capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize(
    "example", ["miniseries.yaml", "nanochat-current.yaml", "isoflop.yaml", "tiny.yaml", "tiny-isoflop.yaml"]
)
def test_plan_table_for_every_example(example: str) -> None:
    r = run("plan", f"examples/{example}")
    assert r.returncode == 0, r.stderr
    for column in (
        "layers",
        "width",
        "heads",
        "params",
        "embed",
        "scaling",
        "tokens",
        "steps",
        "batch",
        "FLOPs",
        "GPU-h",
        "USD",
    ):
        assert column in r.stdout
    assert "total:" in r.stdout and "transformer_matrices+lm_head" in r.stdout


def test_plan_json_matches_the_library() -> None:
    r = run("plan", "examples/miniseries.yaml", "--output", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    expected = make_plan(load_sweep(ROOT / "examples/miniseries.yaml").spec).wire()
    assert doc == {"sweep": "miniseries", "plan": expected}


def test_plan_does_not_import_torch_or_kubernetes() -> None:
    code = (
        "import sys; from miniseries.cli import main; main(['plan', 'examples/tiny.yaml']);"
        "bad = [m for m in ('torch', 'kopf', 'kubernetes') if m in sys.modules]; assert not bad, bad"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr


def test_crd_command_prints_the_committed_crd() -> None:
    r = run("crd")
    assert r.returncode == 0
    assert r.stdout == (ROOT / "crds" / "scalingsweeps.miniseries.dev.yaml").read_text()


def test_missing_file_is_a_clear_error() -> None:
    r = run("plan", "examples/nope.yaml")
    assert r.returncode == 2 and "does not exist" in r.stderr


@pytest.mark.parametrize(
    "example", ["miniseries.yaml", "nanochat-current.yaml", "isoflop.yaml", "tiny.yaml", "tiny-isoflop.yaml"]
)
def test_examples_have_no_numbers_that_yaml_1_1_reads_as_strings(example: str) -> None:
    """PyYAML (YAML 1.1) reads `2.0e11` as a string while kubectl reads a number; the
    kubernetes client would then send a string and the API server would reject it."""
    import re

    import yaml

    def strings(node: object) -> list[str]:
        if isinstance(node, dict):
            return [s for v in node.values() for s in strings(v)]
        if isinstance(node, list):
            return [s for v in node for s in strings(v)]
        return [node] if isinstance(node, str) else []

    doc = yaml.safe_load((ROOT / "examples" / example).read_text())
    numeric = [s for s in strings(doc) if re.fullmatch(r"[-+]?\d+(\.\d*)?([eE][-+]?\d+)?", s)]
    assert numeric == []
