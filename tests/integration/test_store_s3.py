"""S3Store against a real S3 server (versitygw): what a missing object, a missing bucket and a
round trip look like through the store's interface (contract/store/s3.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from miniseries.contract.store import S3Store, StoreNotFound, StorePermanentError, open_store

pytestmark = pytest.mark.s3


@pytest.fixture
def store(s3, monkeypatch) -> S3Store:
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    st = open_store(f"{s3.uri}/team")
    assert isinstance(st, S3Store)
    return st


def test_a_round_trip_under_the_prefix(store: S3Store, s3, tmp_path: Path) -> None:
    store.write_bytes("a/b.json", b"{}")
    assert s3.keys() == ["team/a/b.json"]
    assert store.read_bytes("a/b.json") == b"{}" and store.exists("a/b.json")
    store.copy("a/b.json", "a/c.json")
    store.download_file("a/c.json", tmp_path / "c.json")
    assert (tmp_path / "c.json").read_bytes() == b"{}"
    assert store.list("a/") == ["a/b.json", "a/c.json"]
    assert store.create_exclusive("a/b.json", b"x") is False and store.read_bytes("a/b.json") == b"{}"


def test_every_read_of_a_missing_object_is_store_not_found(store: S3Store, tmp_path: Path) -> None:
    where = f"{store.uri}/nope.json does not exist"
    with pytest.raises(StoreNotFound, match=where):
        store.read_bytes("nope.json")
    with pytest.raises(StoreNotFound, match=where):
        store.copy("nope.json", "elsewhere.json")
    with pytest.raises(StoreNotFound, match=where):
        store.download_file("nope.json", tmp_path / "x")
    assert store.exists("nope.json") is False and store.list("nope") == []


def test_a_missing_bucket_is_permanent_and_named(s3, monkeypatch) -> None:
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    st = open_store(f"s3://{s3.bucket}-absent/p")
    with pytest.raises(StorePermanentError, match=f"bucket '{s3.bucket}-absent' does not exist"):
        st.check()
    with pytest.raises(StorePermanentError) as e:
        st.read_bytes("k")
    assert not isinstance(e.value, StoreNotFound) and "NoSuchBucket" in str(e.value)


def test_a_large_object_goes_in_parts_and_reads_back_whole(store: S3Store, s3, monkeypatch) -> None:
    """An object over the threshold is a multipart upload (PutObject stops at 5 GiB; a d26+ checkpoint
    file is larger). The threshold and part size are lowered to S3's 5 MiB minimum part so a 12 MiB
    object takes three parts here; the object reads back byte for byte, and no upload is left open."""
    from miniseries.contract.store import s3 as s3_module

    monkeypatch.setattr(s3_module, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(s3_module, "MULTIPART_CHUNK", 5 * 1024 * 1024)
    data = bytes(range(256)) * (12 * 4096)  # 12 MiB
    store.write_bytes("ckpt/model.pt", data)
    head = store.client.head_object(Bucket=s3.bucket, Key="team/ckpt/model.pt")
    assert head["ContentLength"] == len(data)
    assert head["ETag"].strip('"').endswith("-3"), head["ETag"]  # a multipart object's ETag counts its parts
    assert store.read_bytes("ckpt/model.pt") == data
    assert store.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []) == []
    store.write_bytes("ckpt/small.json", b"{}")  # under the threshold: one PutObject, no part count
    assert "-" not in store.client.head_object(Bucket=s3.bucket, Key="team/ckpt/small.json")["ETag"]
