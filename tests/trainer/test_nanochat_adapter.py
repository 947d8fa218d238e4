"""nanochat's own scripts/base_train.py, unmodified, as a trainer of the contract
(miniseries_trainer.adapters.nanochat): its output parsed, its flags mapped, and `miniseries trainer
check` against it with the reference checkout at ../shared/peers/nanochat (commit 92d63d4, MIT)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from miniseries.contract.trainer_kit import parse_run_args
from miniseries.local.trainer_check import FAIL, PARTIAL, PASS, SKIP, CheckOptions, run_check
from miniseries_trainer import origins
from miniseries_trainer.adapters import nanochat
from tests.support.tiny_training import Corpus, trainer_env

ROOT = Path(__file__).resolve().parents[2]
NANOCHAT = ROOT.parent / "shared" / "peers" / "nanochat"
NOT_EXERCISED = {"C13", "C14", "C15"}

#: Lines base_train prints at commit 92d63d4 (copied from a run of it).
STEP = (
    "step 00024/00112 (21.43%) | loss: 6.512345 | lrm: 1.00 | dt: 85.31ms | tok/sec: 48,012 | "
    "bf16_mfu: 0.02 | epoch: 1 | total time: 0.03m | eta: 0.1m"
)
VAL = "Step 00112 | Validation bpb: 2.643210"


def test_base_train_lines_are_read_as_steps_done_and_val_bpb() -> None:
    m = nanochat.STEP_LINE.match(STEP)
    assert m is not None
    assert (int(m.group(1)) + 1, float(m.group(3)), float(m.group(5).replace(",", ""))) == (25, 6.512345, 48012.0)
    v = nanochat.VAL_LINE.match(VAL)
    assert v is not None and float(v.group(2)) == 2.64321


def test_the_run_is_mapped_onto_base_train_flags(tmp_path: Path) -> None:
    args = parse_run_args(
        ["--sweep=s", "--run=d2", "--depth=2", "--aspect-ratio=16", "--head-dim=16", "--seq-len=128",
         "--target-tokens=458752", "--steps=112", "--total-batch-tokens=4096", "--device-batch-size=32",
         "--warmup-steps=5", "--warmdown-ratio=0.4", "--checkpoint-every=25", "--eval-tokens=65536",
         f"--store=file://{tmp_path}", "--data=file:///d", "--tokenizer=file:///t"], env={},
    )  # fmt: skip
    from miniseries.contract.trainer_kit import TrainerRun

    argv = nanochat.base_train_argv(TrainerRun(args=args, store=None), "cpu", 50)  # type: ignore[arg-type]
    for flag in ("--device-type=cpu", "--depth=2", "--aspect-ratio=16", "--head-dim=16", "--max-seq-len=128",
                 "--num-iterations=112", "--device-batch-size=32", "--total-batch-size=4096", "--warmup-steps=5",
                 "--warmdown-ratio=0.4", "--save-every=25", "--resume-from-step=50", "--core-metric-every=-1",
                 "--sample-every=-1", "--eval-tokens=65536"):  # fmt: skip
        assert flag in argv


def run_of_depth(tmp_path: Path, depth: int):
    from miniseries.contract.trainer_kit import TrainerRun

    args = parse_run_args([f"--depth={depth}", "--aspect-ratio=16", "--head-dim=16", "--run=d", "--sweep=s",
                           "--steps=1", "--target-tokens=4096", "--total-batch-tokens=4096", f"--store=file://{tmp_path}", "--data=file:///d", "--tokenizer=file:///t"],
                          env={})  # fmt: skip
    return TrainerRun(args=args, store=None)  # type: ignore[arg-type]


def test_a_width_nanochat_cannot_build_is_refused_naming_the_flags(tmp_path: Path, capsys) -> None:
    nanochat.check_shape(run_of_depth(tmp_path, 2))  # width 32: trains
    with pytest.raises(SystemExit) as e:
        nanochat.check_shape(run_of_depth(tmp_path, 1))  # width 16 < the smear gate's 24 channels
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--depth=1 --aspect-ratio=16 --head-dim=16: width 16" in err and "at least 24" in err, err


def test_every_checkpoint_carries_nanochat_s_tokenizer(tmp_path: Path) -> None:
    saves = nanochat.Saves(run_of_depth(tmp_path, 2), tmp_path / "base" / "base_checkpoints" / "d2")
    assert set(saves.files(40)) >= set(nanochat.TOKENIZER_FILES)
    saves.restore({"model_000040.pt": b"m", "tokenizer.pkl": b"t", "token_bytes.pt": b"b"})
    assert (tmp_path / "base" / "tokenizer" / "tokenizer.pkl").read_bytes() == b"t"
    assert [p.name for p in saves.dir.iterdir()] == ["model_000040.pt"]


def test_a_checkout_without_git_has_no_commit_and_fails_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The trainer + nanochat image has no git (seen on the real node: FileNotFoundError 'git' failed the run)."""
    monkeypatch.setenv("PATH", str(tmp_path))  # no git on it
    assert origins.git_commit(tmp_path) is None


def test_contract_flags_come_with_or_without_a_separator(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "base_train.py").write_text("")
    for argv in (["--nanochat-dir", str(tmp_path), "--", "--depth=2", "--run=d2"],
                 ["--nanochat-dir", str(tmp_path), "--depth=2", "--run=d2"]):  # fmt: skip
        own, rest = nanochat.adapter_args(argv)
        assert own.nanochat_dir == tmp_path and rest == ["--depth=2", "--run=d2"]
    with pytest.raises(SystemExit):  # not a nanochat checkout: refused naming the flag
        nanochat.adapter_args(["--nanochat-dir", str(tmp_path / "scripts"), "--depth=2"])


@pytest.mark.torch
@pytest.mark.slow
@pytest.mark.skipif(not NANOCHAT.is_dir(), reason=f"no nanochat reference checkout at {NANOCHAT}")
def test_nanochat_base_train_conforms_but_loses_steps_on_a_stop(
    corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # TORCHDYNAMO_DISABLE: base_train's torch.compile becomes a no-op on this CPU (a third of the test's CPU
    # seconds, twice: once per attempt). The clauses judge its output lines, saves and stop, which compiling
    # does not change; nanochat compiled is bench/gpu_check.sh --nanochat's figure, on the GPU.
    for key, value in (trainer_env() | {"TORCHDYNAMO_DISABLE": "1"}).items():
        if os.environ.get(key) != value:
            monkeypatch.setenv(key, value)
    command = [sys.executable, "-m", "miniseries_trainer.adapters.nanochat", "--nanochat-dir", str(NANOCHAT)]
    # base_train saves every 10 steps and never on SIGTERM: stopped at step 25, its newest save is step 20.
    # start_seconds: nanochat trains its tokenizer before its first step (seconds on 2 idle cores; minutes
    # when they are shared).
    opts = CheckOptions(command=command, steps=40, checkpoint_every=10, stop_after_step=25, start_seconds=600,
                        data_uri=corpus.shards_uri, tokenizer_uri=corpus.tokenizer_uri, workdir=tmp_path)  # fmt: skip
    verdicts, session = run_check(opts, out=sys.stderr)
    got = {v.id: (v.status, v.reason) for v in verdicts}
    for v in verdicts:
        print(f"{v.id:4} {v.status:8} {v.reason}", file=sys.stderr)
    assert not [v for v in verdicts if v.status == FAIL], got
    assert got["C4"][0] == PARTIAL and "loses" in got["C4"][1], got["C4"]
    assert session.first.signalled_at_step is not None and session.checkpoints_before_second
    assert session.checkpoints_before_second[-1] < session.first.signalled_at_step
    for cid in ("C1", "C2", "C3", "C5", "C6", "C7", "C8", "C9", "C10", "C11", "C12"):
        assert got[cid][0] == PASS, (cid, got[cid])
    assert {cid for cid, (status, _) in got.items() if status == SKIP} == NOT_EXERCISED
