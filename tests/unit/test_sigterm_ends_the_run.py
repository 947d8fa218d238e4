"""A SIGTERM to pytest (how a CI time-out stops a run) ends the whole run with 143 and still tears the
session's fixtures down (tests/conftest.py's _sigterm_stops_servers): servers started by a session
fixture never outlive the run. Seen before the fix: the handler's sys.exit only failed the test that
was running, and the run went on."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

INNER = textwrap.dedent(
    """
    import os, signal, time
    import pytest

    @pytest.fixture(scope="session")
    def server(_sigterm_stops_servers, tmp_path_factory):
        yield
        with open(os.environ["TORN_DOWN"], "w") as f:
            f.write("torn down")

    def test_stopped_mid_test(server):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)

    def test_after_the_stop(server):
        with open(os.environ["RAN_AFTER"], "w") as f:
            f.write("ran")
    """
)


def test_sigterm_ends_the_run_and_tears_down(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER)
    torn, after = tmp_path / "torn", tmp_path / "after"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "tests.conftest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "--rootdir",
            str(tmp_path),
            str(tmp_path / "test_inner.py"),
        ],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "TORN_DOWN": str(torn), "RAN_AFTER": str(after)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 143, proc.stdout + proc.stderr
    assert torn.read_text() == "torn down", proc.stdout
    assert not after.exists(), "the run went on after SIGTERM"
