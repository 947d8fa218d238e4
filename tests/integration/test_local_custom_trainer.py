"""spec.trainer through `miniseries run --local` (issue 31): a tiny sweep trained end to end by a custom
trainer, tests/support/broken_trainers/kit_trainer.py (the contract kit's good trainer), started with the
spec's command, the run's values reaching it only through `$(variable)` templates (passFlags: false), or
through the standard flags; its results read back by the runner and the report."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from miniseries import cli
from miniseries.api.sweepfile import load_sweep
from miniseries.local.runner import LocalSweep, run_states
from tests.integration.test_local_runner import env, sweep_yaml, with_shards  # noqa: F401 (env: a fixture)

KIT_TRAINER = [sys.executable, "-m", "tests.support.broken_trainers.kit_trainer"]
# Every flag the kit needs, from the templates alone
TEMPLATED_ARGS = [
    "--namespace=$(run.namespace)", "--sweep=$(run.sweep)", "--run", "$(run.name)", "--depth=$(model.depth)",
    "--target-tokens=$(run.targetTokens)", "--steps=$(run.steps)", "--total-batch-tokens=$(run.totalBatchTokens)",
    "--checkpoint-every=$(run.checkpointEvery)", "--store=$(store.uri)", "--data=$(data.shards)",
    "--tokenizer=$(data.tokenizer)", "--seq-len=$(model.seqLen)", "--vocab-size=$(model.vocabSize)",
]  # fmt: skip


def custom_sweep(tmp_path: Path, trainer: dict[str, Any]) -> Path:
    path = sweep_yaml(tmp_path, depths=(1, 2))
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["trainer"] = {"command": KIT_TRAINER, "contractVersion": 1, **trainer}
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize(
    "trainer",
    [{"args": TEMPLATED_ARGS, "passFlags": False}, {"args": ["--note=$(run.name)"]}],
    ids=["templates-only", "standard-flags"],
)
def test_a_custom_trainer_trains_a_local_sweep(tmp_path: Path, env: None, trainer: dict[str, Any], capsys) -> None:  # noqa: F811
    store = tmp_path / "st"
    with_shards(store)
    path = custom_sweep(tmp_path, trainer)
    assert cli.main(["run", str(path), "--local", "--store", str(store)]) == 0, capsys.readouterr()
    ls = LocalSweep(load_sweep(path), store)
    assert {r["state"] for r in run_states(ls)} == {"Succeeded"}
    for run in ls.runs():
        res = json.loads((store / "local" / "mini" / run.name / "results.json").read_text())
        assert (res["run"], res["depth"], res["steps"]) == (run.name, run.depth, run.steps)
        assert res["tokens"] == run.steps * run.total_batch_tokens
        # the kit trainer's checkpoint (its "model" is one number), not the stand-in's of MINISERIES_TRAINER_MODULE
        ckpt = store / "local" / "mini" / run.name / "ckpt" / f"step_{run.steps:08d}" / "model.json"
        assert json.loads(ckpt.read_text()) == {"w": 1.0 / (1 + run.steps)}
    report = json.loads((store / "local" / "mini" / "report" / "report.json").read_text())
    assert report["runs_finished"] == 2


def test_a_template_naming_no_variable_is_refused_before_anything_runs(tmp_path: Path, env: None, capsys) -> None:  # noqa: F811
    store = tmp_path / "st"
    with_shards(store)
    path = custom_sweep(tmp_path, {"args": ["--depth=$(model.layers)"]})
    assert cli.main(["run", str(path), "--local", "--store", str(store)]) != 0
    err = capsys.readouterr().err
    assert "spec.trainer.args[0]" in err and "unknown variable $(model.layers)" in err, err
    assert not (store / "local" / "mini").exists()
