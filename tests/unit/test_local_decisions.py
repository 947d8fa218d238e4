"""The local runner decides as the operator does: the same run states, the same next run, from the store."""

from __future__ import annotations

import time
from pathlib import Path

from miniseries.api.spec import RunState
from miniseries.api.sweepfile import parse_sweep
from miniseries.contract.results import LossSummary, Progress, RunResults
from miniseries.local.runner import LocalSweep, decide_local, live_run, run_states


def local_sweep(tmp_path: Path, tokenizer: bool = True) -> LocalSweep:
    doc = {
        "apiVersion": "miniseries.dev/v1alpha1", "kind": "ScalingSweep", "metadata": {"name": "mini"},
        "spec": {
            "depths": [1, 2, 3],
            "model": {"aspectRatio": 32, "headDim": 32, "vocabSize": 2048, "sequenceLength": 256},
            # a warmup within d1's 19 steps (a longer one is refused: the LR would never reach its target)
            "training": {"tokensPerParam": 2.0, "totalBatchTokens": 8192, "deviceBatchSize": 32, "warmupSteps": 5},
            "resources": {"gpusPerRun": 1, "nodeGpus": 1},
            "store": {"uri": "s3://somewhere/remote"},
            "data": {"shardsUri": "s3://somewhere/shards"},
        },
    }  # fmt: skip
    ls = LocalSweep(parse_sweep(doc), tmp_path / "store", eval_bundle=None)
    if tokenizer:
        ls.store.write_bytes(ls.layout.tokenizer + "manifest.json", b"{}")
    return ls


def finish(ls: LocalSweep, run: str) -> None:
    rl = ls.layout.run(run)
    res = RunResults(sweep="mini", run=run, depth=int(run[1:]), shape={}, params={}, target_tokens=1, tokens=1,
                     steps=1, total_batch_tokens=1, flops_per_token=1, flops=1.0, wall_seconds=1, gpu_seconds=1.0,
                     world_size=1, device="cpu", loss=LossSummary(final=3.0))  # fmt: skip
    ls.store.write_bytes(rl.results, res.to_json())


def checkpoint(ls: LocalSweep, run: str, step: int) -> None:
    ls.store.write_bytes(ls.layout.run(run).checkpoint(step) + "manifest.json", b"{}")


def test_runs_go_smallest_first_one_at_a_time_and_a_finished_one_is_skipped(tmp_path: Path) -> None:
    ls = local_sweep(tmp_path, tokenizer=False)
    assert [r.name for r in ls.runs()] == ["d1", "d2", "d3"]
    d = decide_local(ls)
    assert d.create_tokenizer and d.create == []  # no run before the sweep's own tokenizer
    ls.store.write_bytes(ls.layout.tokenizer + "manifest.json", b"{}")
    d = decide_local(ls)
    assert [(r.name, a) for r, a in d.create] == [("d1", 1)]
    finish(ls, "d1")
    checkpoint(ls, "d2", 10)
    d = decide_local(ls)
    assert [(r.name, a) for r, a in d.create] == [("d2", 1)]  # resumed: the trainer gets --resume=auto
    assert [r.state for r in d.runs] == [RunState.Succeeded, RunState.Pending, RunState.Pending]
    rows = {r["run"]: r for r in run_states(ls)}
    assert {k: r["state"] for k, r in rows.items()} == {"d1": "Succeeded", "d2": "Pending", "d3": "Pending"}
    assert "interrupted: resumes from" in str(rows["d2"]["message"]) and "step_" in str(rows["d2"]["message"])


def test_an_unreadable_results_json_is_re_evaluated_or_fails_as_in_the_operator(tmp_path: Path) -> None:
    ls = local_sweep(tmp_path)
    ls.store.write_bytes(ls.layout.run("d1").results, b'{"half": ')
    checkpoint(ls, "d1", 20)
    d = decide_local(ls)
    (r1, *_) = d.runs
    assert [(r.name, a) for r, a in d.create] == [("d1", 1)]  # evaluated again, the same attempt
    assert r1.reason == "ResultsCorrupt" and "is not valid JSON" in (r1.message or "")
    ls.store.write_bytes(ls.layout.run("d2").results, b"[]")
    rows = {r["run"]: r for r in run_states(ls)}
    assert rows["d2"]["state"] == "Failed" and "no checkpoint to evaluate from" in str(rows["d2"]["message"])


def test_a_run_training_elsewhere_holds_the_one_slot(tmp_path: Path) -> None:
    ls = local_sweep(tmp_path)
    p = Progress(sweep="mini", run="d2", depth=2, step=3, steps=10, tokens=30, updated_at=time.time())
    ls.store.write_bytes(ls.layout.run("d2").progress, p.to_json())
    running = live_run(ls)
    assert running is not None and running.run == "d2"
    d = decide_local(ls, running)
    assert d.create == [] and [r.state for r in d.runs] == [RunState.Pending, RunState.Running, RunState.Pending]
    assert {r["run"]: r["state"] for r in run_states(ls)}["d2"] == "Running"
