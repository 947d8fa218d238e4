"""The store on a local filesystem: a directory, keys are relative paths below it.

Writes are atomic: a write to a temporary file in the same directory (fsynced), then an
`os.replace` (or, for `create_exclusive`, a hard link, which fails on an existing name).

Modes: one volume is shared by the trainer (uid 1000) and the operator (uid 65532), which the pods'
`fsGroup` puts in one group G: the kubelet gives the volume's root group G and the setgid bit, and
every directory made below a setgid directory inherits G and the bit. So every file is 0640 (the
other uid reads it through G; overwriting and deleting are rights on the directory, not the file)
and every directory 2770 (G may add, replace and delete entries, e.g. the operator pruning a run's
checkpoints; setgid keeps G for what is made below). Nothing for other users. Set explicitly, not
through the umask: mkstemp's 0600 (which hid each uid's files from the other) and a container's
usual umask 022 (world-readable, group read-only) are both wrong for a store shared by group.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from miniseries.contract.store.base import StoreAccessDenied, StoreError, StoreNotFound

F = TypeVar("F", bound=Callable[..., Any])
DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def _store_errors(method: F) -> F:
    """An OSError of the filesystem as a StoreError naming the store, the operation and the key (a
    permission as StoreAccessDenied), as the S3 store's: the operator shows it on the sweep (a
    condition and an Event) instead of a traceback in its log (issue 27)."""

    @functools.wraps(method)
    def wrapper(self: LocalStore, *args: Any, **kw: Any) -> Any:
        try:
            return method(self, *args, **kw)
        except StoreError:
            raise
        except OSError as e:
            kind = StoreAccessDenied if e.errno in DENIED_ERRNOS else StoreError
            what = f"{method.__name__}({args[0]!r})" if args else method.__name__
            raise kind(f"store {self.uri}: {what} failed: {e.strerror or e} ({e.filename or self.root})") from None

    return wrapper  # type: ignore[return-value]


FILE_MODE = 0o640
DIR_MODE = 0o2770


def make_dirs(path: Path) -> None:
    """`path` and its missing parents, each made DIR_MODE (mkdir's own mode is cut by the umask)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue  # made by another writer at the same time: its modes are its own
        # a non-member's setgid request is dropped silently by the kernel; the mode is still group-only
        d.chmod(DIR_MODE)


class LocalStore:
    """A directory on disk; keys are relative paths below it."""

    def __init__(self, root: Path, uri: str | None = None):
        self.root = root
        self.uri = uri or root.resolve().as_uri()

    def _path(self, key: str) -> Path:
        p = (self.root / key).resolve()
        if self.root.resolve() not in (p, *p.parents):
            raise StoreError(f"key {key!r} escapes the store root {self.uri}")
        return p

    @_store_errors
    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise StoreNotFound(f"{self.uri}/{key} does not exist") from None

    def _durable_temp(self, path: Path, data: bytes) -> str:
        """`data` in a fsynced temporary file beside `path` (`.tmp`, skipped by list); its name."""
        make_dirs(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, FILE_MODE)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return tmp

    @_store_errors
    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = self._durable_temp(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @_store_errors
    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    @_store_errors
    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if base.is_file():
            return [prefix]
        start = base if base.is_dir() else base.parent
        if not start.exists():
            return []
        keys = []
        root = self.root.resolve()
        for p in start.rglob("*"):
            if p.is_file() and not p.name.endswith(".tmp"):
                key = p.resolve().relative_to(root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

    @_store_errors
    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            self._path(key).unlink(missing_ok=True)
        target = self._path(prefix) if prefix else None
        if target is not None and target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        return len(keys)

    @_store_errors
    def delete_keys(self, keys: list[str]) -> int:
        """Delete exactly these objects, then the directories they leave empty (never others' files)."""
        root = self.root.resolve()
        dirs = set()
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            dirs.update(p for p in path.parents if root in p.parents)
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()  # only when empty
        return len(keys)

    @_store_errors
    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Write `key` only if it does not exist (atomically: a hard link fails on an existing name)."""
        path = self._path(key)
        tmp = self._durable_temp(path, data)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            Path(tmp).unlink(missing_ok=True)

    @_store_errors
    def copy(self, src: str, dst: str) -> None:
        source = self._path(src)
        if not source.is_file():
            raise StoreNotFound(f"{self.uri}/{src} does not exist")
        self.upload_file(dst, source)

    def outer(self) -> tuple[LocalStore, str]:
        """The filesystem root as a store, and this store's prefix in it."""
        return LocalStore(Path("/")), self.root.resolve().as_posix().strip("/") + "/"

    @_store_errors
    def upload_file(self, key: str, path: Path) -> None:
        dest = self._path(key)
        make_dirs(dest.parent)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @_store_errors
    def download_file(self, key: str, path: Path) -> None:
        src = self._path(key)
        if not src.exists():
            raise StoreNotFound(f"{self.uri}/{key} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, path)

    @_store_errors
    def check(self) -> None:
        make_dirs(self.root)
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"store {self.uri} is not writable")
