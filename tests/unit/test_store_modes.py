"""The file store shared by two uids (issue 28 item 8): the trainer and the operator read, replace and
delete each other's files through the volume's group (fsGroup), and a third uid gets nothing.

Real uids, real kernel permission checks: each actor is a forked child that drops root for a uid and
a supplementary group the way the kubelet starts a pod with `fsGroup` (the tests run as root)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from miniseries.contract.store.base import StoreError
from miniseries.contract.store.local import LocalStore
from miniseries.control.backends.podsecurity import STORE_GROUP

pytestmark = [
    pytest.mark.safety,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="acting as several uids needs root (the test machine's tests run as root)"
    ),
]

TRAINER, OPERATOR, STRANGER = 1000, 65532, 4242
FS_GROUP = STORE_GROUP  # the pods' fsGroup (the operator's gid): a supplementary group of both, the volume's


def as_user(uid: int, groups: list[int], action: Callable[[], object], gid: int | None = None) -> object:
    """Run `action` in a child that is `uid` (primary group `gid`, else its own as the images' users) with
    the supplementary `groups`, under a container's usual umask; its result, or the OSError's name."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(read)
            os.setgroups(groups)
            os.setgid(uid if gid is None else gid)
            os.setuid(uid)
            os.umask(0o022)
            try:
                result: object = action()
            except (OSError, StoreError) as e:  # the store names a refused permission StoreAccessDenied
                result = type(e).__name__
            os.write(write, json.dumps(result).encode())
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"uid {uid}'s child failed"
    return json.loads(out)


@pytest.fixture
def volume() -> Iterator[Path]:
    """A directory as the kubelet leaves a volume with fsGroup: group FS_GROUP, group-writable, setgid."""
    top = Path(tempfile.mkdtemp(prefix="miniseries-modes-"))
    top.chmod(0o755)  # traversable by the actors, as the path to a mount point is
    root = top / "store"
    root.mkdir()
    os.chown(root, 0, FS_GROUP)
    root.chmod(0o2770)
    try:
        yield root
    finally:
        shutil.rmtree(top)


def test_trainer_and_operator_share_files_and_a_stranger_gets_nothing(volume: Path) -> None:
    store = LocalStore(volume)
    trainer = lambda f: as_user(TRAINER, [FS_GROUP], f)  # noqa: E731
    operator = lambda f: as_user(OPERATOR, [FS_GROUP], f)  # noqa: E731

    # the operator writes the sweep's files, the trainer its run's, each in new directories
    assert operator(lambda: store.write_bytes("ns/s/sweep.json", b"{}")) is None
    assert trainer(lambda: store.write_bytes("ns/s/runs/d1/ckpt/step_1/model.pt", b"weights")) is None
    assert trainer(lambda: store.upload_file("ns/s/runs/d1/loss.csv", Path(__file__))) is None
    assert trainer(lambda: store.create_exclusive("ns/s/runs/d1/lock", b"1")) is True

    # each reads what the other wrote
    assert trainer(lambda: store.read_bytes("ns/s/sweep.json").decode()) == "{}"
    assert operator(lambda: store.read_bytes("ns/s/runs/d1/ckpt/step_1/model.pt").decode()) == "weights"
    assert operator(lambda: len(store.read_bytes("ns/s/runs/d1/loss.csv"))) == len(Path(__file__).read_bytes())
    # and may replace and delete it (the operator prunes checkpoints, the trainer rewrites shared files)
    assert trainer(lambda: store.write_bytes("ns/s/sweep.json", b"[]")) is None
    assert operator(lambda: store.write_bytes("ns/s/runs/d1/report.json", b"r")) is None
    assert operator(lambda: store.delete_prefix("ns/s/runs/d1/ckpt/")) == 1
    assert trainer(lambda: store.list("ns/s/")) == [
        "ns/s/runs/d1/lock",
        "ns/s/runs/d1/loss.csv",
        "ns/s/runs/d1/report.json",
        "ns/s/sweep.json",
    ]

    # nothing more: no mode grants anything to other users, and every directory keeps the group
    for p in volume.rglob("*"):
        mode = p.stat().st_mode
        assert p.stat().st_gid == FS_GROUP, p
        if p.is_dir():
            assert stat.S_IMODE(mode) == 0o2770, (p, oct(mode))
        else:
            assert stat.S_IMODE(mode) == 0o640, (p, oct(mode))
    # a uid outside the group (another tenant's pod on the same node) can neither read nor list
    stranger = lambda f: as_user(STRANGER, [], f)  # noqa: E731
    assert stranger(lambda: store.read_bytes("ns/s/sweep.json").decode()) == "StoreAccessDenied"
    assert stranger(lambda: os.listdir(volume / "ns/s")) == "PermissionError"


def test_without_setgid_on_the_volume_the_shared_primary_group_still_shares() -> None:
    """Directories the store makes are group-writable even where the volume's root lacks setgid (a hostPath
    or an emptyDir whose group is the pods' runAsGroup): the modes are the store's, not the umask's."""
    top = Path(tempfile.mkdtemp(prefix="miniseries-modes-"))
    try:
        top.chmod(0o755)
        root = top / "store"
        root.mkdir()
        os.chown(root, 0, FS_GROUP)
        root.chmod(0o770)
        store = LocalStore(root)
        # both run with the volume's group as their primary group (runAsGroup = fsGroup)
        assert as_user(TRAINER, [], gid=FS_GROUP, action=lambda: store.write_bytes("a/b/c.pt", b"x")) is None
        assert as_user(OPERATOR, [], gid=FS_GROUP, action=lambda: store.read_bytes("a/b/c.pt").decode()) == "x"
        assert as_user(OPERATOR, [], gid=FS_GROUP, action=lambda: store.write_bytes("a/b/d.json", b"y")) is None
        assert as_user(TRAINER, [], gid=FS_GROUP, action=lambda: store.delete_prefix("a/")) == 2
    finally:
        shutil.rmtree(top)
