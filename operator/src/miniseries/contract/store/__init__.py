"""One interface over the artifact store: `s3://bucket/prefix` (boto3) and `file:///path`.

Every writer goes through `write_bytes`, which is atomic: a reader sees the old
object or the new one, never half of one (`local`: a temporary file and a rename;
`s3`: one PutObject). Checkpoints build on this by writing their manifest last
(see results.CheckpointManifest).

The parts: `base` (the `Store` protocol and its errors), `uri` (which URIs are valid, the
operator's store roots, a local directory as a URI), `local` and `s3` (the backends),
`retry` (riding out outages). `open_store(uri)` picks the backend; every name is importable
from `miniseries.contract.store`.

A missing object is `StoreNotFound`; any other `StoreError` may be transient, and
`RetryingStore` (the trainer's) rides it out for a bounded time.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from miniseries.contract.store.base import Store, StoreAccessDenied, StoreError, StoreNotFound, StorePermanentError
from miniseries.contract.store.local import LocalStore
from miniseries.contract.store.retry import RetryingStore, RetryPolicy, StoreHealth
from miniseries.contract.store.s3 import PERMANENT_CODES, S3Store
from miniseries.contract.store.uri import (
    DEFAULT_STORE_DIR,
    STORE_URI_RE,
    normalize_uri,
    parse_roots,
    path_to_uri,
    root_problem,
    store_uri,
    uri_problem,
)

__all__ = [
    "DEFAULT_STORE_DIR",
    "PERMANENT_CODES",
    "STORE_URI_RE",
    "LocalStore",
    "RetryPolicy",
    "RetryingStore",
    "S3Store",
    "Store",
    "StoreAccessDenied",
    "StoreError",
    "StoreHealth",
    "StoreNotFound",
    "StorePermanentError",
    "normalize_uri",
    "open_store",
    "parse_roots",
    "path_to_uri",
    "root_problem",
    "store_uri",
    "uri_problem",
]


def open_store(uri: str) -> Store:
    """The store for a URI, or a StoreError saying what a valid URI looks like."""
    if not STORE_URI_RE.fullmatch(uri):
        raise StoreError(f"store URI {uri!r} is not valid; allowed: s3://<bucket>/<prefix> or file:///<absolute path>")
    problem = uri_problem(uri)
    if problem:
        raise StoreError(f"store URI {problem}")
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return LocalStore(Path(unquote(parsed.path)), uri=uri.rstrip("/"))
    return S3Store(parsed.netloc, parsed.path, uri)
