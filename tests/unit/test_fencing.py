"""Issue 27 item 1 (pure parts, on a real file:// store): a sweep's data is its own across time.

A sweep deleted and re-created under the same name gets a new uid; its predecessor's trainer may
still write under the key (a long grace period, a lost node). Checkpoints, progress and results carry
the writing sweep's uid: the operator's observation and the trainer's resume skip another sweep's
(adopted sweeps' count as the adopter's), a trainer whose sweep is gone or re-created writes no
results (layout.fenced), and the delete waits for the sweep's pods until their grace period ends.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from miniseries.api.sweepfile import parse_sweep
from miniseries.contract.layout import SweepIdentity, SweepLayout, claim, fenced, lineage
from miniseries.contract.results import (
    CheckpointManifest,
    LossSummary,
    Progress,
    RunResults,
    checkpoint_steps,
    foreign,
)
from miniseries.contract.store import LocalStore
from miniseries.control.io.handlers import WRITERS_MARGIN_SECONDS, writers_deadline
from miniseries.control.io.store_reads import observe_runs
from miniseries.plan.planner import make_plan
from miniseries.plan.trainer_argv import trainer_flags
from tests.harness.operator_process import PYTHONPATH, sweep_doc

OLD, NEW = "uid-old", "uid-new"


def write_checkpoint(store: LocalStore, layout: SweepLayout, run: str, step: int, uid: str | None) -> None:
    key = layout.run(run).checkpoint(step)
    store.write_bytes(key + "model.json", b"{}")
    store.write_bytes(key + "manifest.json", CheckpointManifest(step=step, tokens=step, world_size=1, files=[],
                                                                sweep_uid=uid).to_json())  # fmt: skip


def results(run: str, uid: str | None) -> RunResults:
    return RunResults(sweep="x", run=run, depth=2, shape={}, params={}, target_tokens=1, tokens=1, steps=1,
                      total_batch_tokens=1, flops_per_token=1, flops=1.0, wall_seconds=1.0, gpu_seconds=1.0,
                      world_size=1, device="cpu", loss=LossSummary(), sweep_uid=uid)  # fmt: skip


def test_foreign_is_only_a_named_other_uid() -> None:
    assert foreign(OLD, NEW) and foreign(OLD, frozenset({NEW}))
    assert not foreign(NEW, NEW) and not foreign(OLD, frozenset({NEW, OLD}))
    assert not foreign(None, NEW)  # an older trainer's document, or the local runner's
    assert not foreign(OLD, None)  # no fence asked for (the local runner)


def test_the_operator_reads_a_predecessors_documents_as_absent(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    layout = SweepLayout("ns", "x")
    spec = parse_sweep({**sweep_doc("x", store.uri, depths=[1, 2]), "metadata": {"name": "x"}}).spec
    runs = make_plan(spec).runs
    # d1: the old trainer's results and checkpoint, written after the new sweep claimed the key
    store.write_bytes(layout.run("d1").results, results("d1", OLD).to_json())
    write_checkpoint(store, layout, "d1", 31, OLD)
    store.write_bytes(layout.run("d1").progress, Progress(sweep="x", run="d1", depth=1, step=31, steps=99, tokens=1,
                                                          sweep_uid=OLD).to_json())  # fmt: skip
    # d2: the new sweep's own checkpoint at 10, the old one's at 31
    write_checkpoint(store, layout, "d2", 10, NEW)
    write_checkpoint(store, layout, "d2", 31, OLD)
    seen = observe_runs(store, layout, runs, frozenset({NEW}))
    assert seen["d1"].results is None and seen["d1"].progress is None and seen["d1"].checkpoint_steps == ()
    assert seen["d2"].checkpoint_steps == (10,) and seen["d2"].checkpoint_step == 10
    # without a fence (the local runner) and for the sweep that adopted the old one's data, all of it counts
    assert observe_runs(store, layout, runs)["d2"].checkpoint_steps == (10, 31)
    adopted = observe_runs(store, layout, runs, frozenset({NEW, OLD}))
    assert adopted["d1"].results is not None and adopted["d2"].checkpoint_steps == (10, 31)


def test_lineage_and_fenced_follow_the_store_manifest(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "s")
    layout = SweepLayout("ns", "x")
    old = SweepIdentity(namespace="ns", name="x", uid=OLD)
    new = SweepIdentity(namespace="ns", name="x", uid=NEW)
    assert "is gone" in (fenced(store, layout, OLD) or "")  # nothing claimed (deleted)
    claim(store, layout, old, ["d2"])
    assert fenced(store, layout, OLD) is None and lineage(store, layout, OLD) == {OLD}
    store.delete_keys([layout.manifest])  # deleted, then the new sweep claims the key
    claim(store, layout, new, ["d2"])
    assert "belongs to sweep ns/x (uid uid-new" in (fenced(store, layout, OLD) or "")
    assert lineage(store, layout, NEW) == {NEW} and lineage(store, layout, OLD) == {OLD}
    # a sweep that adopts on purpose owns the adopted sweep's documents too
    store.delete_keys([layout.manifest])
    claim(store, layout, old, ["d2"])
    claim(store, layout, new, ["d2"], adopt_uid=OLD)
    assert lineage(store, layout, NEW) == {NEW, OLD}


def test_the_trainer_is_given_the_uid_and_resumes_only_from_its_own_sweeps_checkpoints(tmp_path: Path) -> None:
    """The fake trainer follows the contract's resume (results.checkpoint_steps with the sweep's lineage),
    as the real one does (checkpoint.load_latest_checkpoint); its results say where it started."""
    store = LocalStore(tmp_path / "s")
    layout = SweepLayout("ns", "x")
    doc = {**sweep_doc("x", store.uri, depths=[1]), "metadata": {"name": "x"}}
    spec = parse_sweep(doc).spec
    run = make_plan(spec).runs[0]
    flags = trainer_flags(spec, layout, run, sweep_uid=NEW)
    assert f"--sweep-uid={NEW}" in flags
    claim(store, layout, SweepIdentity(namespace="ns", name="x", uid=NEW), ["d1"])
    write_checkpoint(store, layout, "d1", 25, OLD)  # the predecessor's, written after the claim

    def train() -> dict[str, object]:
        subprocess.run([sys.executable, "-m", "tests.support.fake_trainer", *flags], check=True, timeout=60,
                       env={"PYTHONPATH": PYTHONPATH, "FAKE_TRAINER_STEP_SECONDS": "0"})  # fmt: skip
        return json.loads(store.read_bytes(layout.run("d1").results))  # type: ignore[no-any-return]

    res = train()
    assert res["sweep_uid"] == NEW and res["start"] == {"kind": "fresh", "step": 0, "uri": None, "sweep_uid": NEW}
    assert checkpoint_steps(store, layout.run("d1"), NEW)  # its own checkpoints carry its uid
    own = checkpoint_steps(store, layout.run("d1"), NEW)[-1]
    store.delete_keys([layout.run("d1").results])
    res = train()  # again: from its own newest checkpoint, never the predecessor's
    assert res["start"]["kind"] == "checkpoint" and res["start"]["step"] == own  # type: ignore[index]


def test_a_deleted_sweep_waits_for_its_pods_until_their_grace_period_ends() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    margin = timedelta(seconds=WRITERS_MARGIN_SECONDS)
    assert writers_deadline(t0, [], 0) == t0  # nothing left: at once
    # a d20 trainer's pod, deleted with a 157 s grace period: the API server's deletionTimestamp is its end
    deleting = {"metadata": {"deletionTimestamp": (t0 + timedelta(seconds=157)).isoformat()},
                "spec": {"terminationGracePeriodSeconds": 157}}  # fmt: skip
    assert writers_deadline(t0, [deleting], 1) == t0 + timedelta(seconds=157) + margin
    # a pod not yet deleted (its job's garbage collection is under way): the sweep's deletion + its grace
    waiting = {"metadata": {}, "spec": {"terminationGracePeriodSeconds": 300}}
    assert writers_deadline(t0, [deleting, waiting], 0) == t0 + timedelta(seconds=300) + margin
