"""One interface over the artifact store: `s3://bucket/prefix` (boto3) and `file:///path`.

Every writer goes through `write_bytes`, which is atomic: a reader sees the old
object or the new one, never half of one. On a filesystem that is a write to a
temporary file in the same directory and an `os.replace`; on S3 a single
PutObject is atomic by the protocol. Checkpoints build on this by writing their
manifest last (see results.CheckpointManifest).

S3 credentials and endpoint come from the standard environment
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION), as a
Kubernetes Secret mounted with envFrom provides them.

Store URIs never hold `.` or `..` path segments (also percent-encoded): `uri_problem`
says why, and the operator additionally keeps every sweep inside the store roots it
is configured with (`root_problem`). A missing object is `StoreNotFound`; any other
`StoreError` may be transient, and `RetryingStore` (the trainer's) rides it out for a
bounded time.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlparse

#: The store URIs a sweep may name (the CRD's pattern for spec.store.uri and spec.data.*Uri).
STORE_URI_RE = re.compile(r"^(s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/[^\s]*)?|file:///[^\s]*)$")


def store_uri_problem(uri: str) -> str | None:
    """Why a store URI's path is not acceptable (a '.' or '..' segment, also percent-encoded), or None.

    Paths are never resolved: `file:///data/a/../b` would write outside `/data/a`, and an S3
    prefix with `..` means something else to every tool that treats keys as paths.
    """
    path = unquote(urlparse(uri).path)
    bad = next((seg for seg in path.split("/") if seg in (".", "..")), None)
    if bad is None:
        return None
    normal = posixpath.normpath("/" + path.lstrip("/"))
    scheme, netloc = urlparse(uri).scheme, urlparse(uri).netloc
    return (
        f"{uri!r} has a {bad!r} path segment; a store path must be written without '.' or '..' "
        f"(as {scheme}://{netloc}{normal.rstrip('/')!s} if that is what is meant)"
    )


class StoreError(RuntimeError):
    """The store cannot be reached or an object is missing; the message says which and where."""


class StorePermanentError(StoreError):
    """The store answered, and retrying will not change the answer (no such bucket, access denied)."""


class StoreNotFound(StorePermanentError):
    """The object does not exist (not an outage: never retried)."""


#: S3 error codes that are answers, not outages.
PERMANENT_CODES = frozenset(
    {"NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidBucketName", "403"}
)


class Store(Protocol):
    uri: str

    def read_bytes(self, key: str) -> bytes: ...
    def write_bytes(self, key: str, data: bytes) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def delete_keys(self, keys: list[str]) -> int: ...
    def create_exclusive(self, key: str, data: bytes) -> bool: ...
    def copy(self, src: str, dst: str) -> None: ...
    def outer(self) -> tuple[Store, str]: ...
    def upload_file(self, key: str, path: Path) -> None: ...
    def download_file(self, key: str, path: Path) -> None: ...
    def check(self) -> None: ...


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

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise StoreNotFound(f"{self.uri}/{key} does not exist") from None

    def _durable_temp(self, path: Path, data: bytes) -> str:
        """`data` in a fsynced temporary file beside `path` (`.tmp`, skipped by list); its name."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return tmp

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = self._durable_temp(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

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

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(prefix)
        for key in keys:
            self._path(key).unlink(missing_ok=True)
        target = self._path(prefix) if prefix else None
        if target is not None and target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        return len(keys)

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

    def copy(self, src: str, dst: str) -> None:
        source = self._path(src)
        if not source.is_file():
            raise StoreNotFound(f"{self.uri}/{src} does not exist")
        self.upload_file(dst, source)

    def outer(self) -> tuple[LocalStore, str]:
        """The filesystem root as a store, and this store's prefix in it."""
        return LocalStore(Path("/")), self.root.resolve().as_posix().strip("/") + "/"

    def upload_file(self, key: str, path: Path) -> None:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
        os.close(fd)
        try:
            shutil.copyfile(path, tmp)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def download_file(self, key: str, path: Path) -> None:
        src = self._path(key)
        if not src.exists():
            raise StoreNotFound(f"{self.uri}/{key} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, path)

    def check(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not os.access(self.root, os.W_OK):
            raise StoreError(f"store {self.uri} is not writable")


class S3Store:
    """A bucket and key prefix on any S3-compatible server."""

    def __init__(self, bucket: str, prefix: str, uri: str, client: Any | None = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = uri.rstrip("/")
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            # Fail fast on an unreachable endpoint instead of botocore's minute of retries.
            cfg = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"})
            self._client = boto3.client("s3", config=cfg)
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _wrap(self, exc: Exception, key: str) -> StoreError:
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "the default AWS endpoint")
        code = getattr(exc, "response", {}).get("Error", {}).get("Code") if hasattr(exc, "response") else None
        kind = StorePermanentError if code in PERMANENT_CODES else StoreError
        return kind(f"store {self.uri}/{key} via {endpoint}: {type(exc).__name__}: {exc}")

    def read_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise StoreNotFound(f"{self.uri}/{key} does not exist") from None
            raise self._wrap(e, key) from e
        except Exception as e:
            raise self._wrap(e, key) from e

    def write_bytes(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except Exception as e:
            raise self._wrap(e, key) from e

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._wrap(e, key) from e
        except Exception as e:
            raise self._wrap(e, key) from e

    def _iter(self, prefix: str) -> Iterator[str]:
        full = self._key(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            for page in pages:
                for obj in page.get("Contents", []):
                    yield obj["Key"][strip:]
        except Exception as e:
            raise self._wrap(e, prefix) from e

    def list(self, prefix: str = "") -> list[str]:
        return sorted(self._iter(prefix))

    def delete_prefix(self, prefix: str) -> int:
        return self.delete_keys(self.list(prefix))

    def delete_keys(self, keys: list[str]) -> int:
        for i in range(0, len(keys), 1000):
            chunk = [{"Key": self._key(k)} for k in keys[i : i + 1000]]
            try:
                out = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})
            except Exception as e:
                raise self._wrap(e, keys[i]) from e
            if out.get("Errors"):
                err = out["Errors"][0]
                raise StoreError(
                    f"store {self.uri}: deleting {len(out['Errors'])} object(s) failed, e.g. {err.get('Key')}: "
                    f"{err.get('Code')} {err.get('Message')}"
                )
        return len(keys)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """PutObject with If-None-Match: * (a 412 means it exists); False when it already existed."""
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
            return True
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False
            if code not in ("NotImplemented", "501", "InvalidArgument", "InvalidRequest"):
                raise self._wrap(e, key) from e
        except Exception as e:
            raise self._wrap(e, key) from e
        # A server without conditional writes: check, then write (a race of two first claims is
        # then settled by the claim reading the manifest back on its next reconcile).
        if self.exists(key):
            return False
        self.write_bytes(key, data)
        return True

    def copy(self, src: str, dst: str) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.copy({"Bucket": self.bucket, "Key": self._key(src)}, self.bucket, self._key(dst))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise StoreNotFound(f"{self.uri}/{src} does not exist") from None
            raise self._wrap(e, src) from e
        except Exception as e:
            raise self._wrap(e, src) from e

    def outer(self) -> tuple[S3Store, str]:
        """The bucket as a store, and this store's prefix in it."""
        return S3Store(self.bucket, "", f"s3://{self.bucket}", self._client), (self.prefix + "/" if self.prefix else "")

    def upload_file(self, key: str, path: Path) -> None:
        try:
            self.client.upload_file(str(path), self.bucket, self._key(key))
        except Exception as e:
            raise self._wrap(e, key) from e

    def download_file(self, key: str, path: Path) -> None:
        from botocore.exceptions import ClientError

        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, self._key(key), str(path))
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise StoreNotFound(f"{self.uri}/{key} does not exist") from None
            raise self._wrap(e, key) from e
        except Exception as e:
            raise self._wrap(e, key) from e

    def check(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchBucket"):
                raise StorePermanentError(f"store {self.uri}: bucket {self.bucket!r} does not exist") from None
            raise self._wrap(e, "") from e
        except Exception as e:
            raise self._wrap(e, "") from e


uri_problem = store_uri_problem


def normalize_uri(uri: str) -> str:
    """The URI with its path normalised ('.', '..', '//' resolved, no trailing '/'); for file://
    also symbolic links, so that a link inside a root cannot lead out of it."""
    parsed = urlparse(uri)
    path = posixpath.normpath("/" + unquote(parsed.path).lstrip("/"))
    if parsed.scheme == "file":
        path = os.path.realpath(path)
    if path == "/":
        path = ""
    return f"{parsed.scheme}://{parsed.netloc}{path}"


def parse_roots(value: str | None) -> list[str]:
    """Store roots from a comma- or whitespace-separated list (the operator's MINISERIES_STORE_ROOTS)."""
    return [r for r in (value or "").replace(",", " ").split() if r]


def root_problem(uri: str, roots: list[str], namespace: str | None = None) -> str | None:
    """Why `uri` lies outside every allowed root, or None (also when no roots are configured).

    A root is a store URI (`file:///srv/miniseries`, `s3://shared-bucket/teams`); `{namespace}`
    in a root stands for the sweep's namespace (`s3://shared/{namespace}` keeps each team in its
    own prefix). Containment is by whole path segments of the normalised URIs (file:// ones with
    their symbolic links resolved).
    """
    if not roots:
        return None
    problem = uri_problem(uri)
    if problem:
        return problem
    target = normalize_uri(uri)
    allowed = [normalize_uri(r.replace("{namespace}", namespace or "{namespace}")) for r in roots]
    for root in allowed:
        if target == root or target.startswith(root.rstrip("/") + "/"):
            return None
    return f"{uri!r} is outside the store roots this operator allows: {', '.join(allowed)}"


def open_store(uri: str) -> Store:
    """The store for a URI, or a StoreError saying what a valid URI looks like."""
    if not STORE_URI_RE.match(uri):
        raise StoreError(f"store URI {uri!r} is not valid; allowed: s3://<bucket>/<prefix> or file:///<absolute path>")
    problem = uri_problem(uri)
    if problem:
        raise StoreError(f"store URI {problem}")
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return LocalStore(Path(unquote(parsed.path)), uri=uri.rstrip("/"))
    return S3Store(parsed.netloc, parsed.path, uri)


def path_to_uri(path: str | Path) -> str:
    """A local directory (relative or absolute) as a file:// store URI."""
    return Path(path).resolve().as_uri()


# ---------------------------------------------------------------- riding out outages

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff for transient store errors, for at most `budget_seconds` per operation."""

    budget_seconds: float = 300.0
    first_delay: float = 1.0
    max_delay: float = 5.0  # the most a recovered store goes unnoticed

    def delay(self, attempt: int, waited: float) -> float | None:
        """Seconds to wait before retry `attempt` (1-based), or None when the budget is spent."""
        left = self.budget_seconds - waited
        if left <= 0:
            return None
        return min(self.first_delay * 2 ** (attempt - 1), self.max_delay, left)


@dataclass
class StoreHealth:
    """What a RetryingStore saw: for metrics (and the trainer's log)."""

    errors: int = 0  # failed store operations, each try counted
    waited_seconds: float = 0.0  # time spent waiting to retry
    outage_started: float | None = None  # monotonic time of the first error of the current outage
    longest_outage_seconds: float = 0.0
    skipped_advisory: int = 0  # advisory writes dropped (progress.json)

    def outage_seconds(self, now: float) -> float:
        return now - self.outage_started if self.outage_started is not None else 0.0


@dataclass
class RetryingStore:
    """A store whose operations retry transient errors (not StorePermanentError) with backoff.

    Writes stay atomic (a retried write rewrites the whole object). `write_advisory` tries
    once and reports success: for files that are rewritten anyway (progress.json), where
    waiting would only stall training. `on_change` is called (from whichever thread hit
    the store) after each error and on recovery, so metrics show an outage while it lasts.
    """

    inner: Store
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    on_change: Callable[[StoreHealth], None] | None = None
    log: Callable[[str], None] | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    health: StoreHealth = field(default_factory=StoreHealth)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def uri(self) -> str:
        return self.inner.uri

    def _notify(self) -> None:
        if self.on_change is not None:
            self.on_change(self.health)

    def _failed(self, what: str, err: StoreError) -> None:
        with self._lock:
            self.health.errors += 1
            if self.health.outage_started is None:
                self.health.outage_started = self.clock()
        self._notify()

    def _succeeded(self) -> None:
        if self.health.outage_started is None:
            return
        with self._lock:
            if self.health.outage_started is None:
                return
            lasted = self.clock() - self.health.outage_started
            self.health.longest_outage_seconds = max(self.health.longest_outage_seconds, lasted)
            self.health.outage_started = None
        if self.log:
            self.log(f"store {self.uri} answers again after {lasted:.1f} s")
        self._notify()

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        start = self.clock()
        attempt = 0
        while True:
            try:
                out = fn()
            except StorePermanentError:
                self._succeeded()  # the store answered
                raise
            except StoreError as e:
                attempt += 1
                self._failed(what, e)
                waited = self.clock() - start
                delay = self.policy.delay(attempt, waited)
                if delay is None:
                    raise StoreError(
                        f"{e} (gave up on {what} after {waited:.0f} s of retries; the limit is "
                        f"{self.policy.budget_seconds:g} s)"
                    ) from e
                if self.log and attempt == 1:
                    self.log(f"store error on {what}, retrying for up to {self.policy.budget_seconds:g} s: {e}")
                self.sleep(delay)
                with self._lock:
                    self.health.waited_seconds += delay
                self._notify()
                continue
            self._succeeded()
            return out

    def write_advisory(self, key: str, data: bytes) -> bool:
        """One try, no retry: False (counted) when the store did not take it."""
        try:
            self.inner.write_bytes(key, data)
        except StoreError as e:
            self._failed(f"write {key}", e)
            with self._lock:
                self.health.skipped_advisory += 1
            self._notify()
            return False
        self._succeeded()
        return True

    def read_bytes(self, key: str) -> bytes:
        return self._call(f"read {key}", lambda: self.inner.read_bytes(key))

    def write_bytes(self, key: str, data: bytes) -> None:
        self._call(f"write {key}", lambda: self.inner.write_bytes(key, data))

    def exists(self, key: str) -> bool:
        return self._call(f"stat {key}", lambda: self.inner.exists(key))

    def list(self, prefix: str = "") -> list[str]:
        return self._call(f"list {prefix}", lambda: self.inner.list(prefix))

    def delete_prefix(self, prefix: str) -> int:
        return self._call(f"delete {prefix}", lambda: self.inner.delete_prefix(prefix))

    def delete_keys(self, keys: list[str]) -> int:
        return self._call(f"delete {len(keys)} objects", lambda: self.inner.delete_keys(keys))

    def create_exclusive(self, key: str, data: bytes) -> bool:
        return self._call(f"create {key}", lambda: self.inner.create_exclusive(key, data))

    def copy(self, src: str, dst: str) -> None:
        self._call(f"copy {src}", lambda: self.inner.copy(src, dst))

    def outer(self) -> tuple[Store, str]:
        return self.inner.outer()

    def upload_file(self, key: str, path: Path) -> None:
        self._call(f"upload {key}", lambda: self.inner.upload_file(key, path))

    def download_file(self, key: str, path: Path) -> None:
        self._call(f"download {key}", lambda: self.inner.download_file(key, path))

    def check(self) -> None:
        self._call("check", self.inner.check)
