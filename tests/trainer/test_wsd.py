"""wsd trunks and branches on CPU: a branch started from its trunk's checkpoint is, bit for bit, the
straight run with the same schedule, and a preempted branch resumes from its own checkpoint; the trunk
keeps a checkpoint at every branch point."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from miniseries.contract.layout import LOCAL_NAMESPACE, RunLayout, join_uri
from miniseries.contract.results import checkpoint_steps, read_loss_curve
from miniseries.contract.schedule import lr_multipliers
from miniseries.contract.store import open_store
from tests.support.tiny_training import Corpus, train_argv

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

BATCH = 64 * 4 * 2  # train_argv's total batch
TRUNK_STEPS, BRANCH_STEPS, COOLDOWN = 24, 20, 6  # the branch starts at trunk step 14
POINTS = "7,14"


def _model(store_dir: Path, run: str, step: int) -> dict[str, object]:
    data = (store_dir / RunLayout(LOCAL_NAMESPACE, "t", run).checkpoint(step) / "model.pt").read_bytes()
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)  # type: ignore[no-any-return]


def test_branch_from_trunk_matches_the_straight_run_bitwise(
    corpus: Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from miniseries_trainer.train import main

    common = dict(deterministic=True, warmdown_shape="sqrt", keep_checkpoints=1, checkpoint_every=5)
    wsd, straight = tmp_path / "wsd", tmp_path / "straight"
    trunk = RunLayout(LOCAL_NAMESPACE, "t", "d1-trunk")
    assert main(train_argv(corpus, wsd, run="d1-trunk", target_tokens=BATCH * TRUNK_STEPS, warmdown_steps=0,
                           keep_steps=POINTS, **common)) == 0  # fmt: skip
    store = open_store(wsd.as_uri())
    # every branch point is checkpointed and kept (checkpointEvery 5 and keep 1 would have pruned 7 and 14)
    assert checkpoint_steps(store, trunk) == [7, 14, TRUNK_STEPS]
    start = BRANCH_STEPS - COOLDOWN
    init = join_uri(store.uri, trunk.checkpoint(start))
    # another seed: only what the trunk's checkpoint carries (weights, optimizer, RNG, data position) can make
    # the branch the straight run, so a branch that ignored --init-from would differ
    branch_argv = train_argv(corpus, wsd, run="d1-b", target_tokens=BATCH * BRANCH_STEPS, warmdown_steps=COOLDOWN,
                             init_from=init, seed=99, **{**common, "keep_checkpoints": 2})  # fmt: skip
    assert main(branch_argv) == 0
    # results.json says where the branch started: its trunk's checkpoint (issue 27)
    began = json.loads(store.read_bytes(RunLayout(LOCAL_NAMESPACE, "t", "d1-b").results))["start"]
    assert began["kind"] == "trunk" and began["step"] == start and began["uri"] == init
    assert main(train_argv(corpus, straight, run="d1-b", target_tokens=BATCH * BRANCH_STEPS,
                           warmdown_steps=COOLDOWN, **common)) == 0  # fmt: skip

    branch_model, straight_model = _model(wsd, "d1-b", BRANCH_STEPS), _model(straight, "d1-b", BRANCH_STEPS)
    assert branch_model.keys() == straight_model.keys()
    for k in branch_model:
        assert torch.equal(branch_model[k], straight_model[k]), k  # type: ignore[call-overload]
    run = RunLayout(LOCAL_NAMESPACE, "t", "d1-b")
    b_curve, s_curve = read_loss_curve(store, run), read_loss_curve(open_store(straight.as_uri()), run)
    assert [p["loss"] for p in b_curve] == [p["loss"] for p in s_curve]
    assert len(b_curve) == BRANCH_STEPS  # the trunk's part of the curve is carried over
    # the schedule it ran: constant up to the start, then the (1-sqrt) cooldown down to 1 - sqrt(5/6) at the end
    lrs = [p["lr"] for p in b_curve]
    want = lr_multipliers(BRANCH_STEPS, 2, 0.0, shape="sqrt", warmdown_steps=COOLDOWN)
    assert lrs == pytest.approx(want)
    assert lrs[start - 1] == 1.0 and lrs[start] == 1.0 and lrs[start + 1] < 1.0

    # preempted after its own step-15 checkpoint (the step-20 one and results.json never written), the
    # branch relaunched with the same flags resumes from its own checkpoint, not its trunk's step 14,
    # and ends bit for bit where it did
    branch = RunLayout(LOCAL_NAMESPACE, "t", "d1-b")
    assert checkpoint_steps(store, branch) == [15, BRANCH_STEPS]
    store.delete_prefix(branch.checkpoint(BRANCH_STEPS))
    store.delete_keys([branch.results])
    capsys.readouterr()
    assert main(branch_argv) == 0
    assert f"resumed from {join_uri(store.uri, branch.checkpoint(15))} at step 15" in capsys.readouterr().out
    began = json.loads(store.read_bytes(branch.results))["start"]
    assert began["kind"] == "checkpoint" and began["step"] == 15
    again = _model(wsd, "d1-b", BRANCH_STEPS)
    assert all(torch.equal(again[k], straight_model[k]) for k in straight_model)  # type: ignore[call-overload]


def test_branch_without_its_trunk_checkpoint_fails_naming_it(corpus: Corpus, tmp_path: Path) -> None:
    from miniseries_trainer.train import main

    missing = join_uri(tmp_path.as_uri(), RunLayout(LOCAL_NAMESPACE, "t", "d1-trunk").checkpoint(14))
    with pytest.raises(SystemExit) as e:
        main(train_argv(corpus, tmp_path, run="d1-b", warmdown_steps=3, init_from=missing))
    assert e.value.code == 2
