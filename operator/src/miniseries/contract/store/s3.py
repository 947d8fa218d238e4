"""The store on any S3-compatible server: a bucket and a key prefix (boto3, imported on first use).

A single PutObject is atomic by the protocol, and so is a multipart upload: its object appears only
when CompleteMultipartUpload succeeds, so a writer killed mid-upload leaves nothing readable (an
abandoned upload's parts are the bucket's lifecycle rule's to clean). One PutObject is capped at
5 GiB, and a d26+ checkpoint file is larger, so objects from MULTIPART_THRESHOLD up go in parts.
Credentials and endpoint come from the standard
environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION), as a
Kubernetes Secret mounted with envFrom provides them.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from miniseries.contract.store.base import StoreAccessDenied, StoreError, StoreNotFound, StorePermanentError

#: The environment the S3 client (boto3) reads credentials, endpoint and region from: what a
#: credentials Secret may hold (the TrainJob path passes exactly these keys, control/backends/pod_template.py).
CREDENTIAL_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_CA_BUNDLE",
)

#: S3 error codes that are answers, not outages.
PERMANENT_CODES = frozenset(
    {"NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidBucketName", "403"}
)

#: Of those, the ones that refuse these credentials (StoreAccessDenied): fixed by the Secret, not by retrying.
DENIED_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden"})


#: From this size up an object is written as a multipart upload (PutObject's limit is 5 GiB; parts of
#: 64 MiB let a 10 GB checkpoint go in 150 parts, well under S3's 10,000, with 4 in flight).
MULTIPART_THRESHOLD = 256 * 1024 * 1024
MULTIPART_CHUNK = 64 * 1024 * 1024


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
        kind = (
            StoreAccessDenied
            if code in DENIED_CODES
            else StorePermanentError
            if code in PERMANENT_CODES
            else StoreError
        )
        return kind(f"store {self.uri}/{key} via {endpoint}: {type(exc).__name__}: {exc}")

    @contextlib.contextmanager
    def _reading(self, key: str) -> Iterator[None]:
        """Errors of an operation that reads `key`: a missing object is StoreNotFound, the rest `_wrap`ped."""
        from botocore.exceptions import ClientError

        try:
            yield
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise StoreNotFound(f"{self.uri}/{key} does not exist") from None
            raise self._wrap(e, key) from e
        except Exception as e:
            raise self._wrap(e, key) from e

    def read_bytes(self, key: str) -> bytes:
        with self._reading(key):
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def write_bytes(self, key: str, data: bytes) -> None:
        try:
            if len(data) < MULTIPART_THRESHOLD:
                self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
            else:
                self.client.upload_fileobj(io.BytesIO(data), self.bucket, self._key(key), Config=_transfer_config())
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
        with self._reading(src):
            self.client.copy({"Bucket": self.bucket, "Key": self._key(src)}, self.bucket, self._key(dst))

    def outer(self) -> tuple[S3Store, str]:
        """The bucket as a store, and this store's prefix in it."""
        return S3Store(self.bucket, "", f"s3://{self.bucket}", self._client), (self.prefix + "/" if self.prefix else "")

    def upload_file(self, key: str, path: Path) -> None:
        try:
            self.client.upload_file(str(path), self.bucket, self._key(key), Config=_transfer_config())
        except Exception as e:
            raise self._wrap(e, key) from e

    def download_file(self, key: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._reading(key):
            self.client.download_file(self.bucket, self._key(key), str(path))

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


def _transfer_config() -> Any:
    """boto3's managed transfer with this module's threshold and part size (read at call time, so a
    test can lower them to exercise the multipart path with small objects)."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD, multipart_chunksize=MULTIPART_CHUNK, max_concurrency=4
    )
