"""One interface over the artifact store: `s3://bucket/prefix` (boto3) and `file:///path`.

Every writer goes through `write_bytes`, which is atomic: a reader sees the old
object or the new one, never half of one. On a filesystem that is a write to a
temporary file in the same directory and an `os.replace`; on S3 a single
PutObject is atomic by the protocol. Checkpoints build on this by writing their
manifest last (see results.CheckpointManifest).

S3 credentials and endpoint come from the standard environment
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION), as a
Kubernetes Secret mounted with envFrom provides them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from miniseries.api import STORE_URI_RE


class StoreError(RuntimeError):
    """The store cannot be reached or an object is missing; the message says which and where."""


class Store(Protocol):
    uri: str

    def read_bytes(self, key: str) -> bytes: ...
    def write_bytes(self, key: str, data: bytes) -> None: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def delete_prefix(self, prefix: str) -> int: ...
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
        except FileNotFoundError:
            raise StoreError(f"{self.uri}/{key} does not exist") from None

    def write_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
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
            raise StoreError(f"{self.uri}/{key} does not exist")
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
        return StoreError(f"store {self.uri}/{key} via {endpoint}: {type(exc).__name__}: {exc}")

    def read_bytes(self, key: str) -> bytes:
        from botocore.exceptions import ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise StoreError(f"{self.uri}/{key} does not exist") from None
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
        keys = self.list(prefix)
        for i in range(0, len(keys), 1000):
            chunk = [{"Key": self._key(k)} for k in keys[i : i + 1000]]
            try:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})
            except Exception as e:
                raise self._wrap(e, prefix) from e
        return len(keys)

    def upload_file(self, key: str, path: Path) -> None:
        try:
            self.client.upload_file(str(path), self.bucket, self._key(key))
        except Exception as e:
            raise self._wrap(e, key) from e

    def download_file(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.download_file(self.bucket, self._key(key), str(path))
        except Exception as e:
            raise self._wrap(e, key) from e

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as e:
            raise self._wrap(e, "") from e


def open_store(uri: str) -> Store:
    """The store for a URI, or a StoreError saying what a valid URI looks like."""
    if not STORE_URI_RE.match(uri):
        raise StoreError(f"store URI {uri!r} is not valid; allowed: s3://<bucket>/<prefix> or file:///<absolute path>")
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return LocalStore(Path(unquote(parsed.path)), uri=uri.rstrip("/"))
    return S3Store(parsed.netloc, parsed.path, uri)


def path_to_uri(path: str | Path) -> str:
    """A local directory (relative or absolute) as a file:// store URI."""
    return Path(path).resolve().as_uri()
