"""`miniseries trainer check` against kit-based trainers (tests/support/broken_trainers): the good one
passes every clause it exercises, and each broken one fails exactly the clause it breaks.

Each case starts the trainer twice (stopped with SIGTERM, then resumed): a few seconds, torch-free.
The built-in trainer's check is tests/trainer/test_trainer_contract.py (torch).
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pytest

from miniseries import cli
from miniseries.contract.trainer_contract import CLAUSES, OPTIONAL
from miniseries.local.trainer_check import FAIL, PASS, SKIP, CheckOptions, run_check

ROOT = Path(__file__).resolve().parents[2]
TRAINERS = ROOT / "tests" / "support" / "broken_trainers"
#: Clauses the check does not exercise (the contract says how they are tested elsewhere).
NOT_EXERCISED = {"C13", "C14", "C15"}

#: Each broken trainer and the one clause it must fail.
BROKEN = {
    "no_results": "C8",
    "malformed_results": "C8",
    "ignores_sigterm": "C4",
    "exits_1_after_checkpoint": "C4",
    "no_resume": "C7",
    "writes_outside": "C11",
}


@pytest.fixture(autouse=True)
def trainer_env(monkeypatch: pytest.MonkeyPatch) -> None:
    paths = [str(ROOT / "operator" / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.setenv("KIT_TRAINER_STEP_SECONDS", "0.05")


def check(tmp_path: Path, script: str) -> dict[str, tuple[str, str]]:
    nothing = (tmp_path / "none").as_uri()  # the kit trainers read no data and no tokenizer
    opts = CheckOptions(command=[sys.executable, str(TRAINERS / f"{script}.py")], steps=40, checkpoint_every=10,
                        grace_seconds=3.0, start_seconds=60.0, run_seconds=60.0, data_uri=nothing,
                        tokenizer_uri=nothing, workdir=tmp_path / "work")  # fmt: skip
    verdicts, _ = run_check(opts, out=io.StringIO())
    return {v.id: (v.status, v.reason) for v in verdicts}


def test_the_good_kit_trainer_passes_every_clause_the_check_exercises(tmp_path: Path) -> None:
    got = check(tmp_path, "kit_trainer")
    assert {cid for cid, (status, _) in got.items() if status != PASS} == NOT_EXERCISED, got
    assert all(got[c][0] == SKIP for c in NOT_EXERCISED)
    assert all(c.level == OPTIONAL for c in CLAUSES if c.id in NOT_EXERCISED)


@pytest.mark.parametrize("script", sorted(BROKEN))
def test_a_broken_trainer_fails_exactly_the_clause_it_breaks(tmp_path: Path, script: str) -> None:
    got = check(tmp_path, script)
    failed = {cid for cid, (status, _) in got.items() if status == FAIL}
    assert failed == {BROKEN[script]}, got


def test_the_command_exits_nonzero_when_a_required_clause_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nothing = (tmp_path / "none").as_uri()
    common = ["trainer", "check", "--json", "--steps=40", "--checkpoint-every=10", "--grace-seconds=3",
              f"--data={nothing}", f"--tokenizer={nothing}", "--"]  # fmt: skip
    assert cli.main([*common, sys.executable, str(TRAINERS / "no_resume.py")]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["contract_version"] == 1
    assert [c["id"] for c in doc["clauses"] if c["status"] == FAIL] == ["C7"]
    assert cli.main([*common, sys.executable, str(TRAINERS / "kit_trainer.py")]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_a_command_that_cannot_start_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nothing = (tmp_path / "none").as_uri()
    argv = ["trainer", "check", f"--data={nothing}", f"--tokenizer={nothing}", "--", str(tmp_path / "no-such-trainer")]
    assert cli.main(argv) == 2
    assert "no-such-trainer" in capsys.readouterr().err
