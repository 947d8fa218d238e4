"""The store's interface and its errors: what every backend (file://, s3://) and wrapper provides."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class StoreError(RuntimeError):
    """The store cannot be reached or an object is missing; the message says which and where."""


class StorePermanentError(StoreError):
    """The store answered, and retrying will not change the answer (no such bucket, access denied)."""


class StoreAccessDenied(StorePermanentError):
    """The store refused these credentials the operation (S3 403/AccessDenied, a bad key or signature, a
    file:// permission): not a training failure; it changes only when the credentials or rights do."""


class StoreNotFound(StorePermanentError):
    """The object does not exist (not an outage: never retried)."""


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
