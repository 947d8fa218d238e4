"""A checkpoint is data, never code (issue 28 item 4): a planted pickle is refused and never runs."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest

from miniseries.contract.layout import LOCAL_NAMESPACE, RunLayout
from miniseries.contract.results import checkpoint_steps
from miniseries.contract.store import open_store
from tests.support.tiny_training import Corpus, train_argv

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.torch, pytest.mark.safety]
RUN = RunLayout(LOCAL_NAMESPACE, "t", "d1")


class _Payload:
    """Unpickling this calls open(path, "w"): the file's existence proves the payload ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


def _plant(checkpoint_dir: Path, name: str, obj: object) -> None:
    """Replace one file of a checkpoint and fix its manifest entry, as anyone who can write the store can."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = buf.getvalue()
    (checkpoint_dir / name).write_bytes(data)
    manifest_path = checkpoint_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["files"]:
        if entry["name"] == name:
            entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["model.pt", "state_rank0.pt"])
def test_planted_pickle_is_refused_and_its_payload_never_runs(
    corpus: Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    from miniseries_trainer.train import main

    store_dir, marker = tmp_path / "store", tmp_path / "pwned"
    argv = train_argv(corpus, store_dir, target_tokens=512 * 8, checkpoint_every=4, keep_checkpoints=2)
    assert main(argv) == 0
    assert checkpoint_steps(open_store(store_dir.as_uri()), RUN) == [4, 8]
    newest = store_dir / RUN.checkpoint(8)
    real = torch.load(newest / name, map_location="cpu", weights_only=True)  # what the trainer writes is data
    _plant(newest, name, {"payload": _Payload(marker), "real": real})
    capsys.readouterr()

    with pytest.raises(SystemExit) as stopped:
        main([*argv, "--target-tokens=8192", "--resume=require"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert f"{RUN.checkpoint(8)}{name} holds objects other than tensors and plain containers" in err, err
    assert "io.open" in err and "never code" in err, err  # names what it refused
    assert "weights_only=False" not in err  # torch's own advice (load it unsafely) is not passed on
    assert not marker.exists(), "the planted payload ran"
    # refused, not fallen back from: the run did not go on from the older checkpoint either
    assert checkpoint_steps(open_store(store_dir.as_uri()), RUN) == [4, 8]


def test_planted_trunk_checkpoint_is_refused_for_a_branch(
    corpus: Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--init-from (a wsd branch's trunk checkpoint, possibly another run's store) is read the same way."""
    from miniseries_trainer.train import main

    trunk_dir, marker = tmp_path / "trunk", tmp_path / "pwned"
    assert main(train_argv(corpus, trunk_dir, target_tokens=512 * 4, checkpoint_every=4)) == 0
    trunk = trunk_dir / RUN.checkpoint(4)
    _plant(trunk, "optim_replicated.pt", [_Payload(marker)])
    capsys.readouterr()
    branch = train_argv(corpus, tmp_path / "branch", run="d1b", target_tokens=512 * 8)
    with pytest.raises(SystemExit):
        main([*branch, f"--init-from={trunk.as_uri()}/"])
    err = capsys.readouterr().err
    assert "optim_replicated.pt holds objects other than tensors" in err, err
    assert not marker.exists(), "the planted payload ran"
