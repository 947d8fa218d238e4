"""tests/harness/skips.py: every run ends with a one-line count of its skips and their reasons, and
under CI a skip that is not on the allow-list fails the run (exit 1, not 0)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.harness.binaries import REPO

SUITE = """
import pytest

def test_runs():
    pass

def test_unbuilt():
    pytest.skip("kueue not found in the cache (run scripts/build-binaries.sh)")

def test_gpu():
    pytest.skip("no GPU on this machine")

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False
"""


def _pytest(tmp_path: Path, body: str, ci: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_some.py").write_text(body)
    env = {**os.environ, "CI": ci, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "tests.harness.skips", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip


def test_the_summary_line_counts_skips_and_reasons_and_ci_fails_on_one_not_allowed(tmp_path: Path) -> None:
    local = _pytest(tmp_path, SUITE, ci="")
    assert local.returncode == 0, local.stdout
    line = "skips: 2 (1x kueue not found in the cache (run scripts/build-binaries.sh); 1x no GPU on this machine)"
    assert line in local.stdout, local.stdout  # the xfail is not a skip
    ci = _pytest(tmp_path, SUITE, ci="true")
    assert ci.returncode == 1, ci.stdout
    assert line in ci.stdout and "ci: FAILED: 1 skip reason(s) not allowed" in ci.stdout, ci.stdout
    assert "kueue not found" in ci.stdout.split("ci: FAILED")[1] and "no GPU" not in ci.stdout.split("ci: FAILED")[1]


def test_allowed_skips_and_no_skips_pass_under_ci(tmp_path: Path) -> None:
    only_gpu = SUITE.replace('pytest.skip("kueue not found in the cache (run scripts/build-binaries.sh)")', "pass")
    ci = _pytest(tmp_path, only_gpu, ci="true")
    assert ci.returncode == 0 and "skips: 1 (1x no GPU on this machine)" in ci.stdout, ci.stdout
    none = _pytest(tmp_path, "def test_ok():\n    pass\n", ci="true")
    assert none.returncode == 0 and "skips: 0" in none.stdout, none.stdout


def test_a_module_level_skip_is_counted(tmp_path: Path) -> None:
    body = 'import pytest\npytest.skip("needs torch", allow_module_level=True)\n'
    ci = _pytest(tmp_path, body, ci="true")
    assert "skips: 1 (1x needs torch)" in ci.stdout, ci.stdout
    assert ci.returncode == 1, ci.stdout
