"""The local runner end to end with a stand-in trainer (tests/support/fake_trainer.py) that honours
the trainer contract: plan, skip finished runs, resume after Ctrl-C, failures, bad inputs.
The real trainer's end-to-end run is in test_local_tiny.py (slow, needs torch)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from miniseries import cli
from miniseries.api.sweepfile import load_sweep
from miniseries.local.runner import LocalRunError, LocalSweep, localize_spec, run_states, run_sweep
from tests.harness.processes import wait_for

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    "MINISERIES_TRAINER_MODULE": "tests.support.fake_trainer",
    "MINISERIES_TOKENIZER_MODULE": "tests.support.fake_tokenizer",
    "PYTHONPATH": os.pathsep.join([str(ROOT / "operator" / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
}


def sweep_yaml(tmp_path: Path, name: str = "mini", depths=(1, 2, 3), ratio: float = 2.0) -> Path:
    doc = {
        "apiVersion": "miniseries.dev/v1alpha1",
        "kind": "ScalingSweep",
        "metadata": {"name": name},
        "spec": {
            "depths": list(depths),
            "model": {"aspectRatio": 32, "headDim": 32, "vocabSize": 2048, "sequenceLength": 256},
            "training": {
                "tokensPerParam": ratio,
                "totalBatchTokens": 8192,
                "deviceBatchSize": 32,
                "warmupSteps": 2,
                "checkpointEvery": 10,
            },
            "resources": {"gpusPerRun": 1, "nodeGpus": 1, "peakFlopsPerGpu": 2e11, "assumedMfu": 0.2},
            "store": {"uri": "s3://somewhere/remote"},
            "data": {"shardsUri": "s3://somewhere/shards"},
        },
    }
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def with_shards(store: Path) -> None:
    (store / "data" / "shards").mkdir(parents=True, exist_ok=True)
    (store / "data" / "shards" / "shard_00000.parquet").write_bytes(b"PAR1")


@pytest.fixture
def env(monkeypatch):
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)


def starts(store: Path, sweep: str, run: str) -> list[int]:
    d = store / "local" / sweep / run / "starts"
    return sorted(int(p.name) for p in d.iterdir()) if d.exists() else []


def test_localize_spec_points_into_the_store(tmp_path):
    sw = load_sweep(sweep_yaml(tmp_path))
    spec = localize_spec(sw.spec, tmp_path / "st")
    root = (tmp_path / "st").resolve().as_uri()
    assert spec.store.uri == root
    assert spec.data.shards_uri == root + "/data/shards/"
    assert spec.data.tokenizer_uri is None and spec.data.eval_bundle_uri is None


def test_run_skips_finished_and_reports(tmp_path, env):
    store = tmp_path / "st"
    with_shards(store)
    ls = LocalSweep(load_sweep(sweep_yaml(tmp_path)), store)
    out = io.StringIO()
    assert run_sweep(ls, out=out) == 0
    text = out.getvalue()
    assert "training the tokenizer" in text and "report:" in text
    for r in ("d1", "d2", "d3"):
        assert (store / "local" / "mini" / r / "results.json").exists()
        assert starts(store, "mini", r) == [0]
    assert (store / "local" / "mini" / "report" / "report.md").exists()
    doc = json.loads((store / "local" / "mini" / "report" / "report.json").read_text())
    assert doc["runs_finished"] == 3
    assert {r["state"] for r in run_states(ls)} == {"Succeeded"}
    # again: nothing retrained
    out = io.StringIO()
    assert run_sweep(ls, out=out) == 0
    assert "3 already finished" in out.getvalue()
    assert all(starts(store, "mini", r) == [0] for r in ("d1", "d2", "d3"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_stops_child_and_rerun_resumes(tmp_path, sig):
    """Ctrl-C, or SIGTERM (a shell's `kill`, a CI timeout, a container stop), stops the running
    trainer and keeps its checkpoints: the trainer runs in its own session, so only the runner can
    stop it, and a runner that died on SIGTERM would leave it training on, orphaned."""
    store = tmp_path / "st"
    with_shards(store)
    path = sweep_yaml(tmp_path)
    env = {**os.environ, **ENV}
    cmd = [sys.executable, "-m", "miniseries.cli", "run", str(path), "--local", "--store", str(store), "--no-report"]
    # d2 stops training at its step-10 checkpoint and holds there: Ctrl-C lands on that known state,
    # however fast or slow the machine (racing a running sweep, it finished before the signal once).
    held = {"FAKE_TRAINER_HOLD_RUN": "d2", "FAKE_TRAINER_HOLD_STEP": "10"}
    log = tmp_path / "runner.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env={**env, **held}, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
                                preexec_fn=default_sigint)  # fmt: skip
    proc.log_path = log  # type: ignore[attr-defined]  # its output, if it exits before d2 holds
    d2_dir = store / "local" / "mini" / "d2"
    try:
        hold = json.loads(
            wait_for("d2 held at its step-10 checkpoint", lambda: (d2_dir / "held").read_text(), 120, proc)
        )
        assert hold["step"] == 10 and (d2_dir / "ckpt" / "step_00000010" / "manifest.json").exists()
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 130, log.read_text()
    finally:  # a failure leaves neither the runner nor its held trainer (its own session) behind
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError, ValueError):
            os.kill(json.loads((d2_dir / "held").read_text())["pid"], signal.SIGKILL)
    text = log.read_text()
    assert "checkpoints are kept" in text
    assert (store / "local" / "mini" / "d1" / "results.json").exists()
    assert not (d2_dir / "results.json").exists()
    # the child is gone, not training on in the background (the runner stopped it before exiting)
    wait_for("d2's trainer gone", lambda: not alive(hold["pid"]), 30)
    # run again: d1 skipped, d2 resumed from its checkpoint, d3 from scratch
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "resuming d2 from step 10" in r.stdout
    assert starts(store, "mini", "d1") == [0]
    assert starts(store, "mini", "d2") == [0, 10]
    assert (store / "local" / "mini" / "d3" / "results.json").exists()


def default_sigint() -> None:
    """Ctrl-C as a terminal's foreground job gets it. A suite started in the background (`cmd &` from a
    script, nohup) hands its children SIGINT ignored, and Python keeps an inherited SIG_IGN instead of
    raising KeyboardInterrupt: the runner then rightly ignores this test's SIGINT (it held for 9 minutes
    in a CI run started with `&`, 2026-12-07)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def alive(pid: int) -> bool:
    """A running process (a zombie waiting for its parent to reap it has stopped: not alive)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_failed_run_is_reported_with_log(tmp_path, env, monkeypatch):
    monkeypatch.setenv("FAKE_TRAINER_FAIL_RUN", "d2")
    store = tmp_path / "st"
    with_shards(store)
    ls = LocalSweep(load_sweep(sweep_yaml(tmp_path)), store)
    with pytest.raises(LocalRunError, match=r"(?s)d2 failed \(exit 3\).*simulated crash"):
        run_sweep(ls, out=io.StringIO())
    assert (store / "local" / "mini" / "d1" / "results.json").exists()


def test_an_unreadable_results_json_is_evaluated_again_from_the_final_checkpoint(tmp_path, env):
    """The local runner's half of issue 15 item 5: not "finished", not retrained: the trainer
    resumes at its final checkpoint and only writes results again."""
    store = tmp_path / "st"
    with_shards(store)
    ls = LocalSweep(load_sweep(sweep_yaml(tmp_path, depths=(1,))), store)
    assert run_sweep(ls, out=io.StringIO(), report=False) == 0
    results = store / "local" / "mini" / "d1" / "results.json"
    good = json.loads(results.read_text())
    results.write_bytes(results.read_bytes()[:200])
    out = io.StringIO()
    assert run_sweep(ls, out=out, report=False) == 0
    assert f"{results.as_uri()} (200 bytes) is not valid JSON" in out.getvalue()
    steps = good["steps"]
    assert starts(store, "mini", "d1") == [0, steps]  # the second start was at the end: evaluation only
    assert json.loads(results.read_text())["steps"] == steps


def test_a_store_of_the_layout_before_namespaces_is_moved_then_run(tmp_path, env):
    store = tmp_path / "st"
    with_shards(store)
    ls = LocalSweep(load_sweep(sweep_yaml(tmp_path, depths=(1, 2))), store)
    assert run_sweep(ls, out=io.StringIO(), report=False) == 0
    # rebuild the old layout: <store>/mini/... without the manifest
    (store / "local" / "mini" / "store-manifest.json").unlink()
    (store / "local" / "mini").rename(store / "mini")
    (store / "mini" / "NOTES.txt").write_text("not the runner's")
    out = io.StringIO()
    assert run_sweep(ls, out=out, report=False) == 0
    assert "moved" in out.getvalue() and "2 already finished" in out.getvalue()
    assert (store / "local" / "mini" / "d2" / "results.json").exists()
    assert (store / "local" / "mini" / "store-manifest.json").exists()
    assert sorted(p.name for p in (store / "mini").iterdir()) == ["NOTES.txt"]  # only the runner's objects moved


def test_missing_data_without_preparation_is_a_clear_error(tmp_path, env, monkeypatch):
    monkeypatch.setitem(sys.modules, "miniseries.data.prepare", None)
    ls = LocalSweep(load_sweep(sweep_yaml(tmp_path)), tmp_path / "st")
    with pytest.raises(LocalRunError, match=r"no text shards in file://.*data/shards"):
        run_sweep(ls, out=io.StringIO())


def test_run_needs_local_and_status_table(tmp_path, env, capsys):
    path = sweep_yaml(tmp_path)
    assert cli.main(["run", str(path)]) == 2
    assert "needs --local" in capsys.readouterr().err
    assert cli.main(["status", str(path), "--store", str(tmp_path / "st")]) == 0
    out = capsys.readouterr().out
    assert "0/3 runs finished" in out and "Pending" in out


def test_progress_line_shows_run_and_sweep(tmp_path):
    from miniseries.contract.results import Progress
    from miniseries.local.runner import Display

    ls = LocalSweep(load_sweep(sweep_yaml(tmp_path)), tmp_path / "st")
    run = ls.runs()[0]
    d = Display(total_runs=3, total_flops=sum(r.flops for r in ls.runs()),
                total_tokens=sum(r.training_tokens for r in ls.runs()), out=io.StringIO())  # fmt: skip
    p = Progress(sweep="mini", run=run.name, depth=run.depth, step=5, steps=run.steps, tokens=40960, loss=5.25,
                 tokens_per_second=1000.0, eta_seconds=65)  # fmt: skip
    line = d.line(run, p)
    assert f"{run.name}: training step 5/{run.steps}" in line and "loss 5.2500" in line
    assert "1,000 tok/s" in line and "ETA 01:05" in line and "sweep 0/3 runs" in line and "~--:--" not in line
    # the sweep's time left lies between the FLOP/s bound and the tokens/s bound
    left = d.remaining_seconds(run, p)
    rem_tokens = sum(r.training_tokens for r in ls.runs()) - p.tokens
    rem_flops = sum(r.flops for r in ls.runs()) - p.tokens * run.flops_per_token
    lo, hi = sorted([rem_tokens / 1000.0, rem_flops / (1000.0 * run.flops_per_token)])
    assert lo <= left <= hi
