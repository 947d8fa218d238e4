"""SIGTERM/SIGINT in the trainer (miniseries_trainer/preemption.py): the step in flight finishes,
a checkpoint of it is written, progress.json says "preempted", the exit status is
EXIT_PREEMPTED, and the resumed run continues as if nothing had happened (bitwise on CPU
with --deterministic). Real trainer processes and real signals on the tiny corpus."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from miniseries.contract.layout import LOCAL_NAMESPACE, RunLayout
from miniseries.contract.preemption import EXIT_PREEMPTED, PROGRESS_PREEMPTED, checkpoint_bytes
from miniseries.contract.results import Progress, checkpoint_steps, read_loss_curve, read_manifest
from miniseries.contract.shapes import model_shape
from miniseries.contract.store import open_store
from tests.harness.processes import free_port
from tests.support.tiny_training import VOCAB, Corpus, train_argv, trainer_env

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.preemption]
RUN = RunLayout(LOCAL_NAMESPACE, "t", "d1")  # the trainer's default --namespace
CMD = [sys.executable, "-m", "miniseries_trainer.train"]
STEPS = 40
COMMON: dict[str, Any] = dict(target_tokens=512 * STEPS, deterministic=True, checkpoint_every=0)
STEP_LINE = re.compile(r"^step +(\d+)/")


def losses(store_dir: Path) -> list[tuple[int, float]]:
    return [(p["step"], p["loss"]) for p in read_loss_curve(open_store(store_dir.as_uri()), RUN)]


def progress(store_dir: Path) -> Progress:
    return Progress.from_json((store_dir / RUN.progress).read_text())


def signal_after_step(argv: list[str], at_step: int, signals: list[signal.Signals]) -> tuple[int, list[str], float]:
    """Run the trainer, send `signals` once it printed step `at_step`; (exit status, its lines, seconds to exit)."""
    env = trainer_env() | {"PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*CMD, *argv], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert proc.stdout is not None
    lines: list[str] = []
    sent = None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        m = STEP_LINE.match(line)
        if sent is None and m and int(m.group(1)) >= at_step:
            sent = time.perf_counter()
            for s in signals:
                proc.send_signal(s)
    proc.wait(timeout=120)
    assert sent is not None, "\n".join(lines[-20:])
    return proc.returncode, lines, time.perf_counter() - sent


def test_sigterm_checkpoints_the_finished_step_and_the_resumed_run_is_bitwise_the_same(
    corpus: Corpus, tmp_path: Path
) -> None:
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    subprocess.run([*CMD, *train_argv(corpus, straight, **COMMON)], env=trainer_env(), check=True, capture_output=True)

    rc, lines, seconds = signal_after_step(train_argv(corpus, stopped, **COMMON), 10, [signal.SIGTERM])
    assert rc == EXIT_PREEMPTED, "\n".join(lines[-20:])
    finished = [int(m.group(1)) for line in lines if (m := STEP_LINE.match(line))]
    last = finished[-1]
    assert 10 <= last < STEPS, finished
    # no periodic checkpoints: the only one is the preemption's, of the last finished step
    assert checkpoint_steps(open_store(stopped.as_uri()), RUN) == [last]
    assert any(f"preempted by SIGTERM after step {last}/{STEPS}" in line for line in lines), lines[-5:]
    p = progress(stopped)
    assert (p.state, p.step) == (PROGRESS_PREEMPTED, last)
    assert not (stopped / RUN.results).exists()
    assert seconds < 30, seconds

    resumed = subprocess.run(
        [*CMD, *train_argv(corpus, stopped, **COMMON)], env=trainer_env(), check=True, capture_output=True, text=True
    )
    assert f"at step {last}" in resumed.stdout
    a, b = losses(straight), losses(stopped)
    assert [s for s, _ in a] == [s for s, _ in b] == list(range(1, STEPS + 1))
    assert a == b  # bitwise: nothing of the interrupted run was lost or repeated
    assert progress(stopped).state == "done"


def test_sigint_is_the_same_stop(corpus: Corpus, tmp_path: Path) -> None:
    rc, lines, _ = signal_after_step(train_argv(corpus, tmp_path, **COMMON), 5, [signal.SIGINT])
    assert rc == EXIT_PREEMPTED, "\n".join(lines[-20:])
    assert any("preempted by SIGINT after step" in line for line in lines)


def test_the_handler_records_repeats_and_aborts_on_a_second_sigint() -> None:
    """Real signals to this process (os.kill to oneself is handled before it returns)."""
    from miniseries_trainer.preemption import Preempted, StopSignal

    before = signal.getsignal(signal.SIGTERM)  # the session's own handler when a cluster fixture ran first
    with StopSignal() as stop:
        assert stop.installed and not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # during the checkpoint write: recorded, nothing else
        assert (stop.signum, stop.count) == (signal.SIGTERM, 2)
        assert stop.agreed(1, torch.device("cpu"))
        with pytest.raises(Preempted):
            stop.raise_on_signal()  # one already received: at once
    with StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.signum == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):  # Ctrl-C twice: a person who insists
            os.kill(os.getpid(), signal.SIGINT)
    with StopSignal() as stop:
        stop.raise_on_signal()
        with pytest.raises(Preempted, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) == before  # restored


def test_a_second_sigterm_during_the_checkpoint_write_changes_nothing(
    corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real signals to this process, at exact points: the first during step 6, the second between
    the checkpoint's model.pt and optim_rank0.pt. The run still checkpoints step 6 and exits
    EXIT_PREEMPTED, and resuming from it gives the uninterrupted run bitwise."""
    import miniseries_trainer.train as train_module
    from miniseries.contract.store.local import LocalStore
    from miniseries_trainer.checkpoint import load_latest_checkpoint

    argv = train_argv(corpus, tmp_path / "straight", **COMMON)
    before = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    assert train_module.main(argv) == 0
    signal_handlers = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    assert signal_handlers == before  # restored after main, whatever they were (a cluster fixture sets one)

    calls = {"steps": 0, "second": 0}
    real_step, real_write = train_module.train_step, LocalStore.write_bytes

    def step_then_signal(*a: Any, **kw: Any) -> Any:
        calls["steps"] += 1
        if calls["steps"] == 6:
            os.kill(os.getpid(), signal.SIGTERM)  # in flight: this step still finishes
        return real_step(*a, **kw)

    def write_with_signal(self: LocalStore, key: str, data: bytes) -> None:
        if key.endswith("/optim_rank0.pt"):
            calls["second"] += 1
            os.kill(os.getpid(), signal.SIGTERM)
        real_write(self, key, data)

    monkeypatch.setattr(train_module, "train_step", step_then_signal)
    monkeypatch.setattr(LocalStore, "write_bytes", write_with_signal)
    stopped = tmp_path / "stopped"
    capsys.readouterr()
    assert train_module.main(train_argv(corpus, stopped, **COMMON)) == EXIT_PREEMPTED
    assert "preempted by SIGTERM (2 received) after step 6/" in capsys.readouterr().out
    assert calls["second"] == 1
    store = open_store(stopped.as_uri())
    assert checkpoint_steps(store, RUN) == [6]
    loaded = load_latest_checkpoint(store, RUN)
    assert loaded is not None and loaded.step == 6
    monkeypatch.undo()
    assert train_module.main(train_argv(corpus, stopped, **COMMON)) == 0
    assert losses(tmp_path / "straight") == losses(stopped)


def test_a_stop_during_evaluation_exits_at_once_and_the_restart_evaluates_again(
    corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import miniseries_trainer.train as train_module

    real_bpb = train_module.validation_bpb

    def signal_then_evaluate(*a: Any, **kw: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)
        return real_bpb(*a, **kw)

    argv = train_argv(corpus, tmp_path, target_tokens=512 * 8, eval_tokens=64 * 4 * 4)
    monkeypatch.setattr(train_module, "validation_bpb", signal_then_evaluate)
    assert train_module.main(argv) == EXIT_PREEMPTED
    assert checkpoint_steps(open_store(tmp_path.as_uri()), RUN) == [8]  # the final one, written before
    assert not (tmp_path / RUN.results).exists()
    monkeypatch.undo()
    assert train_module.main(argv) == 0
    assert (tmp_path / RUN.results).exists()


def test_every_rank_stops_after_the_same_step_when_one_rank_is_signalled(corpus: Corpus, tmp_path: Path) -> None:
    """Two gloo ranks; SIGTERM to rank 1 only: both exit EXIT_PREEMPTED and save one checkpoint together."""
    port = free_port()
    argv = train_argv(corpus, tmp_path, **COMMON)
    procs = []
    for rank in (0, 1):
        env = trainer_env() | {
            "PYTHONUNBUFFERED": "1",
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        out = subprocess.PIPE if rank == 0 else subprocess.DEVNULL
        procs.append(subprocess.Popen([*CMD, *argv], env=env, stdout=out, stderr=subprocess.STDOUT, text=True))
    assert procs[0].stdout is not None
    lines = []
    for line in procs[0].stdout:  # rank 0 prints
        lines.append(line.rstrip("\n"))
        m = STEP_LINE.match(line)
        if m and int(m.group(1)) == 5:
            procs[1].send_signal(signal.SIGTERM)
    codes = [p.wait(timeout=120) for p in procs]
    assert codes == [EXIT_PREEMPTED, EXIT_PREEMPTED], "\n".join(lines[-20:])
    last = [int(m.group(1)) for line in lines if (m := STEP_LINE.match(line))][-1]
    assert 5 <= last < STEPS
    assert any(f"preempted by a stop signal from another rank after step {last}/" in line for line in lines)
    store = open_store(tmp_path.as_uri())
    assert checkpoint_steps(store, RUN) == [last]
    from miniseries_trainer.checkpoint import expected_files

    names = {f.name for f in read_manifest(store, RUN, last).files}
    assert names == expected_files(2)  # model.pt and AdamW's state once, Muon's shards and the loader's per rank
    # and its model + optimizer bytes are what the operator sizes the grace period from (AdamW once, Muon sharded)
    written = sum(f.bytes for f in read_manifest(store, RUN, last).files if not f.name.startswith("state_"))
    shape = model_shape(1, aspect_ratio=64, head_dim=32, vocab_size=VOCAB, sequence_len=64)
    assert written == pytest.approx(checkpoint_bytes(shape), rel=0.02), written


def stepped_model(depth: int) -> tuple[Any, torch.nn.Module, list[torch.optim.Optimizer]]:
    """A tiny model and its optimizers after one step, so every optimizer holds state to save."""
    from miniseries_trainer.model import build_model
    from miniseries_trainer.optim import build_optimizers

    shape = model_shape(depth, aspect_ratio=64, head_dim=32, vocab_size=VOCAB, sequence_len=64)
    model = build_model(shape, "cpu")
    opts = build_optimizers(model, total_batch_tokens=512)
    x = torch.randint(0, VOCAB, (2, 64))
    model(x, x).backward()
    for o in opts:
        o.step()
    return shape, model, opts


def test_checkpoint_bytes_predicts_a_real_checkpoint(tmp_path: Path) -> None:
    """The size the operator sizes the grace period from (contract.preemption) is what the trainer writes."""
    from miniseries_trainer.checkpoint import save_checkpoint

    shape, model, opts = stepped_model(2)
    store = open_store(tmp_path.as_uri())
    save_checkpoint(store, RUN, 1, 512, model=model, optimizers=opts, state={"step": 1}, keep=1)
    sizes = {f.name: f.bytes for f in read_manifest(store, RUN, 1).files}
    written = (
        sizes["model.pt"] + sizes["optim_replicated.pt"] + sizes["optim_rank0.pt"]
    )  # not state_rank0.pt: the loader's position
    assert written == pytest.approx(checkpoint_bytes(shape), rel=0.02), written


def test_a_stop_while_starting_exits_before_the_first_step_with_nothing_to_save(
    corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import miniseries_trainer.start as start_module
    import miniseries_trainer.train as train_module

    real_build = start_module.build_optimizers

    def signal_then_build(*a: Any, **kw: Any) -> Any:
        os.kill(os.getpid(), signal.SIGTERM)
        return real_build(*a, **kw)

    monkeypatch.setattr(start_module, "build_optimizers", signal_then_build)
    assert train_module.main(train_argv(corpus, tmp_path, **COMMON)) == EXIT_PREEMPTED
    assert "before step 1/" in capsys.readouterr().out
    assert checkpoint_steps(open_store(tmp_path.as_uri()), RUN) == []


def test_a_checkpoint_from_before_the_replicated_split_still_resumes(tmp_path: Path) -> None:
    """Checkpoints written before AdamW's state was saved once carry every optimizer's state in
    optim_rank<r>.pt and no optim_replicated.pt: they load to the same states as the new layout,
    so an upgrade in the middle of a sweep resumes instead of starting over."""
    import hashlib
    import io

    from miniseries.contract.results import CheckpointFile, CheckpointManifest
    from miniseries_trainer.checkpoint import load_latest_checkpoint, save_checkpoint

    _, model, opts = stepped_model(1)
    store = open_store(tmp_path.as_uri())
    save_checkpoint(store, RUN, 1, 512, model=model, optimizers=opts, state={"step": 1}, keep=5)
    new = load_latest_checkpoint(store, RUN)
    assert new is not None and all(sd["state"] for sd in new.optimizers)  # both AdamW's and Muon's states

    # The old layout at step 2: the whole list in optim_rank0.pt, no replicated file.
    prefix = RUN.checkpoint(2)
    files: dict[str, bytes] = {}
    for name, obj in (("model.pt", model.state_dict()), ("optim_rank0.pt", [o.state_dict() for o in opts]),
                      ("state_rank0.pt", {"step": 2})):  # fmt: skip
        buf = io.BytesIO()
        torch.save(obj, buf)
        files[name] = buf.getvalue()
        store.write_bytes(prefix + name, files[name])
    entries = [CheckpointFile(name=n, bytes=len(d), sha256=hashlib.sha256(d).hexdigest()) for n, d in files.items()]
    manifest = CheckpointManifest(step=2, tokens=1024, world_size=1, files=entries, created_at=0.0)
    store.write_bytes(prefix + "manifest.json", manifest.to_json())
    old = load_latest_checkpoint(store, RUN)
    assert old is not None and old.step == 2
    for a, b in zip(old.optimizers, new.optimizers, strict=True):
        assert a["param_groups"] == b["param_groups"]
        for key in a["state"]:
            assert all(torch.equal(a["state"][key][k], b["state"][key][k]) for k in a["state"][key] if k != "step")
