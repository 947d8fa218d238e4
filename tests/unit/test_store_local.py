"""The file:// store: atomic writes, listing, deletes, and clear errors for bad URIs."""

from __future__ import annotations

from pathlib import Path

import pytest

from miniseries.contract.layout import RunLayout, SweepLayout, step_of_checkpoint_key
from miniseries.contract.results import CheckpointFile, CheckpointManifest, checkpoint_steps
from miniseries.contract.store import LocalStore, StoreError, open_store, path_to_uri


def test_round_trip_and_list(tmp_path: Path) -> None:
    store = open_store(path_to_uri(tmp_path))
    store.write_bytes("s/d2/results.json", b"{}")
    store.write_bytes("s/d2/ckpt/step_00000010/model.pt", b"x")
    assert store.read_bytes("s/d2/results.json") == b"{}"
    assert store.list("s/d2/") == ["s/d2/ckpt/step_00000010/model.pt", "s/d2/results.json"]
    assert store.exists("s/d2/results.json") and not store.exists("s/d3/results.json")
    assert store.delete_prefix("s/d2/") == 2
    assert store.list("s/") == []


def test_write_is_atomic_no_partial_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStore(tmp_path)
    store.write_bytes("a.json", b"old")

    def boom(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(StoreError, match=r"write_bytes\('a.json'\) failed: disk full"):
        store.write_bytes("a.json", b"new")
    assert store.read_bytes("a.json") == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # the temp file was cleaned up


def test_filesystem_errors_are_store_errors_naming_the_operation() -> None:
    """Issue 27 item 6: `file:///proc/...` gave a plain OSError (a traceback every 60 s in the operator's
    log); a StoreError is what the operator shows as StoreReachable=False with an Event."""
    store = LocalStore(Path("/proc/miniseries-cannot-be-created"))
    with pytest.raises(StoreError, match="store file:///proc/miniseries-cannot-be-created: write_bytes"):
        store.write_bytes("ns/s/store-manifest.json", b"{}")
    with pytest.raises(StoreError):
        store.check()


def test_missing_key_names_the_uri(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    with pytest.raises(StoreError, match="does not exist"):
        store.read_bytes("nope.json")


def test_keys_cannot_escape_the_root(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="escapes"):
        LocalStore(tmp_path / "root").write_bytes("../outside", b"x")


@pytest.mark.parametrize("uri", ["http://x/y", "s3://", "file://relative", "/abs/path", "s3://UPPER/x"])
def test_bad_uris(uri: str) -> None:
    with pytest.raises(StoreError, match="allowed: s3://<bucket>/<prefix> or file:///<absolute path>"):
        open_store(uri)


def test_layout_paths() -> None:
    run = SweepLayout("team-a", "mini").run("d12")
    assert run == RunLayout("team-a", "mini", "d12")
    assert run.checkpoint(250) == "team-a/mini/d12/ckpt/step_00000250/"
    assert step_of_checkpoint_key(run.checkpoint(250) + "manifest.json") == 250
    assert run.results == "team-a/mini/d12/results.json"
    assert SweepLayout("team-a", "mini").report == "team-a/mini/report/"
    assert SweepLayout("team-a", "mini").manifest == "team-a/mini/store-manifest.json"


def test_only_checkpoints_with_a_manifest_count(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    run = RunLayout("local", "s", "d2")
    manifest = CheckpointManifest(
        step=10, tokens=100, world_size=1, files=[CheckpointFile(name="model.pt", bytes=1, sha256="0")]
    )
    store.write_bytes(run.checkpoint(10) + "model.pt", b"x")
    store.write_bytes(run.checkpoint(10) + "manifest.json", manifest.to_json())
    store.write_bytes(run.checkpoint(20) + "model.pt", b"half-written: no manifest yet")
    assert checkpoint_steps(store, run) == [10]
