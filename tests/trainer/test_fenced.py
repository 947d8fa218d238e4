"""Issue 27 item 1, the real trainer: with --sweep-uid its checkpoints and results carry the sweep's uid,
it never resumes from another sweep's checkpoint under the same key (a deleted predecessor's trainer
that wrote after the new sweep claimed it), and a trainer whose sweep was re-created meanwhile writes
no results (EXIT_FENCED)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from miniseries.contract.exits import EXIT_FENCED
from miniseries.contract.layout import SweepIdentity, SweepLayout, claim
from miniseries.contract.results import checkpoint_steps, read_manifest
from miniseries.contract.store import open_store
from tests.support.tiny_training import Corpus, train_argv

pytest.importorskip("torch")
pytestmark = pytest.mark.torch

OLD, NEW = "uid-old", "uid-new"


def test_a_cluster_run_resumes_only_from_its_own_sweeps_checkpoints(
    corpus: Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from miniseries_trainer.train import main

    store = open_store(tmp_path.as_uri())
    layout = SweepLayout("ns", "t")
    run = layout.run("d1")
    common = {"namespace": "ns", "checkpoint_every": 10}
    # the predecessor (uid-old) trains to the end: its checkpoints carry its uid
    claim(store, layout, SweepIdentity(namespace="ns", name="t", uid=OLD), ["d1"])
    assert main(train_argv(corpus, tmp_path, sweep_uid=OLD, **common)) == 0
    old_steps = checkpoint_steps(store, run)
    assert old_steps and {read_manifest(store, run, s).sweep_uid for s in old_steps} == {OLD}
    # deleted and re-created; the predecessor's trainer writes its checkpoints after the new claim
    late = {k: store.read_bytes(k) for k in store.list(run.checkpoints)}
    store.delete_prefix(layout.root)
    claim(store, layout, SweepIdentity(namespace="ns", name="t", uid=NEW), ["d1"])
    for key, data in late.items():
        store.write_bytes(key, data)
    capsys.readouterr()
    assert main(train_argv(corpus, tmp_path, sweep_uid=NEW, **common)) == 0
    assert "resumed from" not in capsys.readouterr().out
    res = json.loads(store.read_bytes(run.results))
    assert res["sweep_uid"] == NEW and res["start"]["kind"] == "fresh" and res["start"]["step"] == 0
    assert res["hyperparameters"]["matrix_lr"] == 0.5 and res["hyperparameters"]["checkpoint_every"] == 10
    # re-created again while this trainer would finish: it writes no results
    store.delete_prefix(layout.root)
    claim(store, layout, SweepIdentity(namespace="ns", name="t", uid=OLD + "-2"), ["d1"])
    assert main(train_argv(corpus, tmp_path, sweep_uid=NEW, resume="never", **common)) == EXIT_FENCED
    assert not store.exists(run.results)
