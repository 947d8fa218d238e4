"""`miniseries data fetch` against a real HTTP server on loopback that serves files the test makes.

The server plays Hugging Face (a `resolve/main/NAME` URL answers 302 to a CDN URL and states the
file's sha256 in `X-Linked-Etag`) and a plain object store (the eval bundle's zip), honours
`Range`/`If-Range`, and can drop a connection halfway through a file or serve corrupted bytes.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import re
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from miniseries.cli import main
from miniseries.data import fetch as df
from tests.support.core_bundle import REFERENCE_BUNDLE


@dataclass
class Files:
    content: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)  # drop the connection after N bytes, once
    corrupt: set[str] = field(default_factory=set)  # serve flipped bytes under the true sha256
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)


def handler(files: Files) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            files.requests.append((self.path, self.headers.get("Range")))
            m = re.fullmatch(r"/hf/resolve/main/(.+)", self.path)
            if m and m.group(1) in files.content:  # Hugging Face: the sha256 on the redirect
                name = m.group(1)
                self.send_response(302)
                self.send_header("Location", f"/cdn/{name}")
                self.send_header("X-Linked-Etag", f'"{hashlib.sha256(files.content[name]).hexdigest()}"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            name = self.path.rsplit("/", 1)[-1]
            if name not in files.content:
                self.send_error(404)
                return
            data = files.content[name]
            if name in files.corrupt:
                data = bytes(b ^ 0xFF for b in data[:16]) + data[16:]
            etag = f'"v1-{hashlib.md5(data).hexdigest()}"'
            start = 0
            rng = self.headers.get("Range")
            if rng and self.headers.get("If-Range") in (None, etag):
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))  # type: ignore[union-attr]
                if start >= len(data):
                    self.send_error(416)
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            cut = files.cut_after.pop(name, None)
            if cut is not None:  # a dropped connection: fewer bytes than Content-Length said, then EOF
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Files]]:
    files = Files()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler(files))
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", files
    httpd.shutdown()
    httpd.server_close()


def parquet_bytes(texts: list[str]) -> bytes:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.table({"text": texts}), buf)
    return buf.getvalue()


def shard_files(files: Files, n: int, size: int = 200_000) -> dict[str, bytes]:
    """n training shards and the validation shard, random bytes (the transfer does not care what they are)."""
    names = df.shard_names(df.DATASETS["climbmix"], n)
    for i, name in enumerate(names):
        files.content[name] = os.urandom(size + i)
    return {n: files.content[n] for n in names}


def test_shards_download_verify_and_are_reused(server: tuple[str, Files], tmp_path: Path) -> None:
    base, files = server
    want = shard_files(files, 2)
    assert list(want) == ["shard_00000.parquet", "shard_00001.parquet", "shard_06542.parquet"]
    got = df.fetch_shards(df.DATASETS["climbmix"], 2, base_url=f"{base}/hf/resolve/main", cache=tmp_path)
    d = tmp_path / "data" / "climbmix"
    assert [g.path for g in got] == [d / n for n in want] and {g.how for g in got} == {"downloaded"}
    for name, data in want.items():
        assert (d / name).read_bytes() == data
    assert df.read_sums((d / "SHA256SUMS").read_text()) == {n: hashlib.sha256(b).hexdigest() for n, b in want.items()}
    assert not list(d.glob(".*")), "no partial files left behind"
    # again: every file is hashed against SHA256SUMS and reused, nothing is requested
    files.requests.clear()
    got = df.fetch_shards(df.DATASETS["climbmix"], 2, base_url=f"{base}/hf/resolve/main", cache=tmp_path)
    assert {g.how for g in got} == {"cached"} and files.requests == []
    # a cached file that no longer matches its recorded sum is downloaded again
    (d / "shard_00001.parquet").write_bytes(b"bit rot")
    got = df.fetch_shards(df.DATASETS["climbmix"], 2, base_url=f"{base}/hf/resolve/main", cache=tmp_path)
    assert (d / "shard_00001.parquet").read_bytes() == want["shard_00001.parquet"]
    assert [g.how for g in got] == ["cached", "downloaded", "cached"]


def test_a_dropped_connection_resumes_with_a_range_request(server: tuple[str, Files], tmp_path: Path) -> None:
    base, files = server
    want = shard_files(files, 1)
    files.cut_after["shard_00000.parquet"] = 70_000
    got = df.fetch_shards(df.DATASETS["climbmix"], 1, base_url=f"{base}/hf/resolve/main", cache=tmp_path,
                          retry_wait=0)  # fmt: skip
    assert got[0].path.read_bytes() == want["shard_00000.parquet"]
    cdn = [(p, r) for p, r in files.requests if p == "/cdn/shard_00000.parquet"]
    assert cdn == [("/cdn/shard_00000.parquet", None), ("/cdn/shard_00000.parquet", "bytes=70000-")]


def test_an_interrupted_command_resumes_where_it_stopped(server: tuple[str, Files], tmp_path: Path) -> None:
    base, files = server
    want = shard_files(files, 1)
    name = "shard_00000.parquet"
    files.cut_after[name] = 50_000
    with pytest.raises(df.FetchError, match=r"interrupted at byte 50,000 .*run the same command again to resume"):
        df.fetch_shards(df.DATASETS["climbmix"], 1, base_url=f"{base}/hf/resolve/main", cache=tmp_path, retries=0)
    d = tmp_path / "data" / "climbmix"
    assert (d / f".{name}.partial").stat().st_size == 50_000 and not (d / name).exists()
    files.requests.clear()
    got = df.fetch_shards(df.DATASETS["climbmix"], 1, base_url=f"{base}/hf/resolve/main", cache=tmp_path)
    assert got[0].how == "resumed from byte 50,000" and got[0].path.read_bytes() == want[name]
    assert (f"/cdn/{name}", "bytes=50000-") in files.requests
    # the sha256 the server stated on the first response still guards the resumed file
    assert got[0].sha256 == hashlib.sha256(want[name]).hexdigest()


def test_a_download_that_does_not_match_the_stated_sha256_is_refused(server: tuple[str, Files], tmp_path: Path) -> None:
    base, files = server
    shard_files(files, 1)
    files.corrupt.add("shard_00000.parquet")
    with pytest.raises(df.FetchError, match=r"checksum mismatch.*stated by the server's X-Linked-Etag; refused"):
        df.fetch_shards(df.DATASETS["climbmix"], 1, base_url=f"{base}/hf/resolve/main", cache=tmp_path)
    d = tmp_path / "data" / "climbmix"
    assert not list(d.iterdir()), "neither the file nor its partial download is kept"


def test_pinned_checksums_through_the_cli(
    server: tuple[str, Files], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, files = server
    want = shard_files(files, 1)
    sums = tmp_path / "pins.sha256"
    sums.write_text(df.format_sums({n: hashlib.sha256(b).hexdigest() for n, b in want.items()}))
    argv = ["data", "fetch", "--shards", "1", "--base-url", f"{base}/plain", "--cache", str(tmp_path / "c"),
            "--checksums", str(sums), "--out", (tmp_path / "store").as_uri()]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"{hashlib.sha256(want['shard_00000.parquet']).hexdigest()}" in out
    stored = tmp_path / "store" / "data" / "climbmix"
    assert (stored / "shard_06542.parquet").read_bytes() == want["shard_06542.parquet"]
    assert df.read_sums((stored / "SHA256SUMS").read_text()) == df.read_sums(sums.read_text())
    # a pin the server's bytes do not match: refused, exit 1, the file named
    sums.write_text(f"{'0' * 64}  shard_00000.parquet\n")
    (tmp_path / "c" / "data" / "climbmix" / "shard_00000.parquet").unlink()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "shard_00000.parquet: checksum mismatch" in err and "pinned with --checksums" in err


def test_missing_file_and_bad_arguments(server: tuple[str, Files], tmp_path: Path, capsys) -> None:
    base, _ = server
    assert main(["data", "fetch", "--shards", "1", "--base-url", base, "--cache", str(tmp_path)]) == 1
    assert "shard_00000.parquet: HTTP 404" in capsys.readouterr().err
    assert main(["data", "fetch", "--cache", str(tmp_path)]) == 2
    assert "--eval-bundle, --shards N" in capsys.readouterr().err
    assert main(["data", "fetch", "--shards", "7000", "--cache", str(tmp_path)]) == 1
    assert "--shards 7000: climbmix has 6542 training shards" in capsys.readouterr().err


def zip_bundle(bundle: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for p in sorted(bundle.rglob("*")):
            if p.is_file():
                z.write(p, "eval_bundle/" + p.relative_to(bundle).as_posix())  # nanochat's zip: one top folder
    return buf.getvalue()


@pytest.mark.skipif(REFERENCE_BUNDLE is None, reason="shared/data/eval_bundle not present")
def test_eval_bundle_is_fetched_unpacked_and_used_by_the_local_runner(
    server: tuple[str, Files], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from miniseries.api.sweepfile import load_sweep
    from miniseries.local.runner import LocalSweep, core_line

    assert REFERENCE_BUNDLE is not None
    base, files = server
    files.content["eval_bundle.zip"] = zip_bundle(REFERENCE_BUNDLE)
    monkeypatch.setenv("MINISERIES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MINISERIES_EVAL_BUNDLE_URL", f"{base}/s3/eval_bundle.zip")
    sweep = load_sweep(Path(__file__).resolve().parents[2] / "examples" / "tiny.yaml")
    before = LocalSweep(sweep, tmp_path / "store")
    assert before.spec.data.eval_bundle_uri is None
    assert "`miniseries data fetch --eval-bundle`" in core_line(before)

    files.cut_after["eval_bundle.zip"] = 1000  # and the first transfer is dropped
    assert main(["data", "fetch", "--eval-bundle", "--retries", "1", "--out", (tmp_path / "st").as_uri()]) == 0
    bundle = tmp_path / "cache" / "eval_bundle"
    assert (bundle / "core.yaml").read_bytes() == (REFERENCE_BUNDLE / "core.yaml").read_bytes()
    tasks = sorted(p.relative_to(bundle) for p in (bundle / "eval_data").rglob("*.jsonl"))
    assert tasks == sorted(p.relative_to(REFERENCE_BUNDLE) for p in (REFERENCE_BUNDLE / "eval_data").rglob("*.jsonl"))
    assert (tmp_path / "st" / "eval_bundle" / "eval_meta_data.csv").is_file()
    assert df.cached_eval_bundle() == bundle
    after = LocalSweep(sweep, tmp_path / "store")
    assert after.spec.data.eval_bundle_uri == bundle.resolve().as_uri()
    assert "every run is evaluated on the eval bundle" in core_line(after)
    from miniseries.plan.trainer_argv import trainer_flags

    flags = trainer_flags(after.spec, after.layout, after.runs()[0])
    assert f"--eval-bundle={bundle.resolve().as_uri()}" in flags and "--core-max-per-task=20" in flags
    # a zip that is not an eval bundle is refused, the cached bundle kept
    files.content["other.zip"] = zip_bundle(tmp_path / "st" / "eval_bundle" / "eval_data")
    capsys.readouterr()
    assert main(["data", "fetch", "--eval-bundle", "--eval-bundle-url", f"{base}/s3/other.zip"]) == 1
    assert "no core.yaml" in capsys.readouterr().err and df.cached_eval_bundle() == bundle
