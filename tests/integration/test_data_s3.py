"""`miniseries data prepare` from an s3:// prefix of parquet shards into an s3:// store, on a real
S3 server (versitygw): the way a real corpus is prepared for a cluster sweep."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from miniseries.cli import main
from miniseries.data import fetch as df

pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

pytestmark = pytest.mark.s3


def parquet(texts: list, column: str = "text", **extra: list) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({column: texts, **extra}), buf, row_group_size=4)
    return buf.getvalue()


def texts_of(body: bytes) -> list[str]:
    return pq.read_table(io.BytesIO(body)).column("text").to_pylist()


def test_prepare_from_s3_parquet_into_s3(s3, monkeypatch, capsys) -> None:
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    docs = [f"web page {i}: " + "an educational paragraph about science " * 15 for i in range(24)]
    for i in range(3):
        s3.client.put_object(Bucket=s3.bucket, Key=f"raw/fineweb/shard_{i:05d}.parquet",
                             Body=parquet(docs[i * 8 : (i + 1) * 8], url=[f"u{j}" for j in range(8)]))  # fmt: skip
    s3.client.put_object(Bucket=s3.bucket, Key="raw/fineweb/SHA256SUMS", Body=b"ignored: not parquet\n")
    argv = ["data", "prepare", "--source", f"{s3.uri}/raw/fineweb", "--out", f"{s3.uri}/sweeps/data/shards",
            "--shard-chars", "3000"]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    keys = [k for k in s3.keys("sweeps/data/shards/") if k.endswith(".parquet")]
    out = [t for k in keys for t in texts_of(s3.client.get_object(Bucket=s3.bucket, Key=k)["Body"].read())]
    assert out == docs and len(keys) >= 3
    manifest = json.loads(
        s3.client.get_object(Bucket=s3.bucket, Key="sweeps/data/shards/_manifest.json")["Body"].read()
    )
    assert manifest["source"] == f"{s3.uri}/raw/fineweb" and manifest["shards"][-1]["split"] == "val"

    # a shard without a text column is named by its s3:// URI, and nothing is written
    s3.client.put_object(Bucket=s3.bucket, Key="raw/bad/shard_00000.parquet", Body=parquet(docs[:4]))
    s3.client.put_object(Bucket=s3.bucket, Key="raw/bad/shard_00001.parquet",
                         Body=parquet(["x"], column="body"))  # fmt: skip
    bad = ["data", "prepare", "--source", f"{s3.uri}/raw/bad", "--out", f"{s3.uri}/o2", "--shard-chars", "100"]
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert f"{s3.uri}/raw/bad/shard_00001.parquet" in err
    assert s3.keys("o2/") == []
    assert main(["data", "prepare", "--source", f"{s3.uri}/raw/none", "--out", f"{s3.uri}/o3"]) == 2
    assert f"--source {s3.uri}/raw/none has no files" in capsys.readouterr().err


def test_fetched_files_are_copied_into_an_s3_store_with_their_sums(s3, monkeypatch, tmp_path) -> None:
    for k, v in s3.env.items():
        monkeypatch.setenv(k, v)
    a, b = tmp_path / "shard_00000.parquet", tmp_path / "shard_06542.parquet"
    a.write_bytes(b"a" * 1000)
    b.write_bytes(b"b" * 2000)
    df.copy_to_store(f"{s3.uri}/data/climbmix/", {a.name: a, b.name: b})
    assert s3.keys("data/climbmix/") == [f"data/climbmix/{n}" for n in ("SHA256SUMS", a.name, b.name)]
    sums = df.read_sums(s3.client.get_object(Bucket=s3.bucket, Key="data/climbmix/SHA256SUMS")["Body"].read().decode())
    assert sums == {a.name: hashlib.sha256(b"a" * 1000).hexdigest(), b.name: hashlib.sha256(b"b" * 2000).hexdigest()}
