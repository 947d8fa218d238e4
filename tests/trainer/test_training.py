"""Real training on real text, tiny shapes, CPU: learning, resume, corruption, metrics."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from miniseries.contract.layout import LOCAL_NAMESPACE, RunLayout
from miniseries.contract.results import RunResults, checkpoint_steps, read_loss_curve
from miniseries.contract.store import open_store
from tests.harness.processes import free_port
from tests.support.tiny_training import Corpus, train_argv, trainer_env

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
RUN = RunLayout(LOCAL_NAMESPACE, "t", "d1")  # the trainer's default --namespace


def curve(store_dir: Path) -> list[dict[str, float]]:
    return read_loss_curve(open_store(store_dir.as_uri()), RUN)


def test_loss_falls_and_results_are_written(corpus: Corpus, tmp_path: Path) -> None:
    from miniseries_trainer.train import main

    steps = 150
    assert main(train_argv(corpus, tmp_path, target_tokens=512 * steps, eval_tokens=4096)) == 0
    losses = [p["loss"] for p in curve(tmp_path)]
    assert len(losses) == steps
    # starts near ln(512) = 6.24 (uniform predictions); well below after 150 steps
    assert losses[0] > 6.0
    assert sum(losses[-10:]) / 10 < losses[0] - 2.0, losses
    res = RunResults.from_json((tmp_path / RUN.results).read_text())
    assert res.steps == steps and res.tokens == 512 * steps and res.world_size == 1
    assert res.params["total"] == res.shape["n_embd"] * 512 * 2 + 12 * res.shape["n_embd"] ** 2
    assert res.val_bpb is not None and 0.5 < res.val_bpb < 8
    assert res.loss.final is not None and res.loss.final < res.loss.first  # type: ignore[operator]
    assert res.core is None  # no --eval-bundle
    assert res.checkpoint_uri and res.checkpoint_uri.endswith(RUN.checkpoint(steps))
    progress = json.loads((tmp_path / RUN.progress).read_text())
    assert progress["state"] == "done" and progress["step"] == steps


def test_one_batch_can_be_overfit(corpus: Corpus) -> None:
    from miniseries.contract.shapes import model_shape
    from miniseries_trainer.loader import TokenLoader
    from miniseries_trainer.model import build_model
    from miniseries_trainer.optim import build_optimizers
    from miniseries_trainer.shards import list_shards
    from miniseries_trainer.tokenizer import load_tokenizer

    torch.manual_seed(0)
    store = open_store(corpus.shards_uri)
    x, y = next(
        TokenLoader(store, list_shards(store)[0], load_tokenizer(corpus.tokenizer_uri), batch_size=4, seq_len=64)
    )
    model = build_model(model_shape(2, aspect_ratio=32, head_dim=32, vocab_size=512, sequence_len=64), "cpu")
    opts = build_optimizers(model, total_batch_tokens=2**19)
    first = None
    for _ in range(120):
        loss = model(x, y)
        loss.backward()
        for o in opts:
            o.step()
        model.zero_grad(set_to_none=True)
        first = first or loss.item()
    assert first > 5.5 and loss.item() < 0.5, (first, loss.item())


def test_kill_and_resume_reproduces_the_uninterrupted_run_bitwise(corpus: Corpus, tmp_path: Path) -> None:
    common = dict(target_tokens=512 * 60, checkpoint_every=10, keep_checkpoints=3, deterministic=True)
    env = trainer_env()
    cmd = [sys.executable, "-m", "miniseries_trainer.train"]
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    subprocess.run([*cmd, *train_argv(corpus, straight, **common)], env=env, check=True, capture_output=True)

    proc = subprocess.Popen(
        [*cmd, *train_argv(corpus, interrupted, **common)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    manifest = interrupted / RUN.checkpoint(20) / "manifest.json"
    deadline = time.time() + 120
    while not manifest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = checkpoint_steps(open_store(interrupted.as_uri()), RUN)[-1]
    assert 20 <= killed_at < 60
    resumed = subprocess.run(
        [*cmd, *train_argv(corpus, interrupted, **common)], env=env, check=True, capture_output=True, text=True
    )
    assert "resumed from" in resumed.stdout and f"at step {killed_at}" in resumed.stdout
    a, b = curve(straight), curve(interrupted)
    assert [p["step"] for p in a] == [p["step"] for p in b] == list(range(1, 61))
    assert [p["loss"] for p in a] == [p["loss"] for p in b]  # bitwise: exact float equality


def test_corrupt_newest_checkpoint_falls_back_loudly(
    corpus: Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from miniseries_trainer.train import main

    argv = train_argv(
        corpus, tmp_path, target_tokens=512 * 12, checkpoint_every=4, keep_checkpoints=2, deterministic=True
    )
    assert main(argv) == 0
    store = open_store(tmp_path.as_uri())
    assert checkpoint_steps(store, RUN) == [8, 12]  # newest two kept
    model_file = tmp_path / RUN.checkpoint(12) / "model.pt"
    model_file.write_bytes(model_file.read_bytes()[:-100] + b"x" * 100)
    capsys.readouterr()
    # a longer horizon resumes from step 8 (12 is corrupt) and trains on
    assert main([*argv, "--target-tokens=8192", "--resume=require"]) == 0
    out = capsys.readouterr()
    assert "checkpoint" in out.err and "step_00000012" in out.err and "corrupt" in out.err
    assert "at step 8" in out.out
    # an unreadable manifest is just as untrusted
    (tmp_path / RUN.checkpoint(16) / "manifest.json").write_text("{not json")
    from miniseries_trainer.checkpoint import load_latest_checkpoint

    assert load_latest_checkpoint(store, RUN).step == 12  # type: ignore[union-attr]


def test_metrics_are_served_with_labels(corpus: Corpus, tmp_path: Path) -> None:
    from miniseries_trainer.metrics import METRICS
    from miniseries_trainer.train import main

    port = free_port()
    assert main(train_argv(corpus, tmp_path, target_tokens=512 * 6, metrics_port=port, eval_tokens=2048)) == 0
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    labels = 'depth="1",run="d1",sweep="t",sweep_namespace="local"'
    for m in METRICS:
        if m.name == "miniseries_core_score":
            continue  # CORE was not evaluated (no --eval-bundle): no sample, checked below
        sample = next((line for line in body.splitlines() if line.startswith(m.name + "{")), None)
        assert sample is not None, f"{m.name} missing from /metrics"
        for label in ('depth="1"', 'run="d1"', 'sweep="t"', 'sweep_namespace="local"'):
            assert label in sample, sample
        assert ('rank="0"' in sample) == m.per_rank, sample
        assert f"# HELP {m.name}" in body
    assert f"miniseries_train_step{{{labels}}} 6.0" in body
    assert f"miniseries_train_tokens_total{{{labels}}} 3072.0" in body
    assert "miniseries_core_score{" not in body


def test_finished_run_restarted_resumes_at_the_end_and_calls_core_with_the_agreed_interface(
    corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """This pins the calls train.py makes to core_eval: load_bundle(uri, allow_partial, max_per_task)
    before training (a bad bundle fails fast), then on every rank
    evaluate_core(model, tokenizer, bundle, *, device, max_per_task, max_seq_len, allow_partial) -> CoreResult,
    with model(idx) -> logits (B, T, V) and tokenizer.encode / bos_token_id."""
    import types

    from miniseries.contract.results import CoreResult
    from miniseries_trainer.train import main

    calls = []

    def evaluate_core(model, tokenizer, bundle_uri, *, device, max_per_task=None, max_seq_len=None, **kw):  # type: ignore[no-untyped-def]
        ids = [tokenizer.bos_token_id, *tokenizer.encode("The answer is")]
        logits = model(torch.tensor([ids], device=device))
        calls.append((bundle_uri, max_per_task, max_seq_len, tuple(logits.shape)))
        return CoreResult(core=0.125, tasks=[])

    fake = types.ModuleType("miniseries_trainer.core_eval")
    fake.evaluate_core = evaluate_core  # type: ignore[attr-defined]
    fake.load_bundle = lambda uri, *, allow_partial, max_per_task: uri  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "miniseries_trainer.core_eval", fake)
    argv = train_argv(corpus, tmp_path, target_tokens=512 * 4, eval_bundle="file:///bundle", core_max_per_task=3)
    assert main(argv) == 0
    assert main(argv) == 0  # a restarted pod of a finished run: no training, evaluates again
    assert "at step 4" in capsys.readouterr().out
    assert len(calls) == 2
    bundle, max_per_task, max_seq_len, shape = calls[0]
    assert (bundle, max_per_task, max_seq_len) == ("file:///bundle", 3, 64)
    assert shape[0] == 1 and shape[2] == 512
    res = RunResults.from_json((tmp_path / RUN.results).read_text())
    assert res.core is not None and res.core.core == 0.125 and res.steps == 4 and res.loss.points == 4
