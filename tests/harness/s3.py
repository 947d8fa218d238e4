"""S3 for the store: versitygw's POSIX backend serving a directory on a loopback port
(:func:`s3_server`), and fresh buckets on it (:func:`new_bucket`)."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.binaries import find_binary
from tests.harness.processes import Stack, free_port, wait_for


@dataclass
class S3Server:
    endpoint: str
    access_key: str
    secret_key: str
    root: Path
    pid: int
    port: int
    region: str = "us-east-1"

    @property
    def env(self) -> dict[str, str]:
        """What the store (boto3) reads: see operator/src/miniseries/contract/store/."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )


@dataclass
class S3Bucket:
    server: S3Server
    bucket: str
    client: Any

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}"

    @property
    def env(self) -> dict[str, str]:
        return self.server.env

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@contextlib.contextmanager
def s3_server(workdir: Path) -> Iterator[S3Server]:
    """versitygw's POSIX backend on a loopback port, with a fresh root account."""
    binary = find_binary("versitygw")
    root = workdir / "s3-root"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    access, secret = "miniseries" + secrets.token_hex(4), secrets.token_hex(20)
    stack = Stack(workdir)
    try:
        proc = stack.start(
            "versitygw",
            [str(binary), "--port", f"127.0.0.1:{port}", "posix", str(root)],
            env={"ROOT_ACCESS_KEY": access, "ROOT_SECRET_KEY": secret},
        )
        server = S3Server(f"http://127.0.0.1:{port}", access, secret, root, proc.pid, port)
        wait_for("versitygw", lambda: server.client().list_buckets() is not None, 30, proc)
        yield server
    finally:
        stack.stop()


def new_bucket(server: S3Server, name: str) -> S3Bucket:
    """A new, empty bucket. A create that boto3 retried after the server had done it (a reply lost under
    load: seen once, at load 18) answers BucketAlreadyExists: an empty bucket of that name is this one."""
    from botocore.exceptions import ClientError

    client = server.client()
    try:
        client.create_bucket(Bucket=name)
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") not in ("BucketAlreadyExists", "BucketAlreadyOwnedByYou"):
            raise
        if client.list_objects_v2(Bucket=name, MaxKeys=1).get("KeyCount", 0):
            raise  # someone else's, with objects in it: not a retry of this create
    return S3Bucket(server, name, client)
