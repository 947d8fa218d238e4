"""`miniseries data fetch`: the real data, downloaded where nanochat gets it.

- The DCLM CORE eval bundle (nanochat's `eval_bundle.zip`: `core.yaml`,
  `eval_meta_data.csv`, `eval_data/<category>/<task>.jsonl`), unpacked into
  `<cache>/eval_bundle/`. `miniseries run --local` passes it to every run
  (`--eval-bundle`) when it is there.
- Pretraining shards as nanochat downloads them: `shard_%05d.parquet` with a
  `text` column, the first N training shards plus the dataset's last shard, which
  nanochat (and the trainer: the lexically last shard) holds out for validation;
  into `<cache>/data/<dataset>/`. ClimbMix (nanochat's current dataset) or
  FineWeb-edu (its earlier one).

`<cache>` is `$MINISERIES_CACHE`, default `~/.cache/miniseries`. With `--out URI`
the files are also copied into a store (`file://` or `s3://`), with their sums.

Every file is downloaded to a hidden `.NAME.partial` next to its destination and
renamed when complete. An interrupted download (a dropped connection, Ctrl-C, a
crash) resumes from the bytes it has with an HTTP Range request (`If-Range` the
first response's ETag, so a file that changed upstream starts over); a dropped
connection is retried at once, up to `--retries` times. Checksums: the sha256 of
every finished file is recorded in `SHA256SUMS` (sha256sum's format) beside it,
and a file already there is hashed again and compared before it is used. A
download must match the sha256 the server states (Hugging Face's `X-Linked-Etag`
for LFS files, S3's `x-amz-checksum-sha256`) and any pinned with `--checksums
FILE` (sha256sum's format); a mismatch is refused and the bytes are discarded.

The base URLs can be overridden (`--eval-bundle-url` / `$MINISERIES_EVAL_BUNDLE_URL`,
`--base-url` / `$MINISERIES_DATA_BASE_URL`), for a mirror, or a test's server.
Standard library only (urllib): no torch, no pyarrow.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from miniseries.contract.store import open_store

EVAL_BUNDLE_URL = "https://karpathy-public.s3.us-west-2.amazonaws.com/eval_bundle.zip"
SUMS = "SHA256SUMS"
CHUNK = 1 << 20
#: Files nanochat's eval bundle must have; a zip without them is refused.
BUNDLE_FILES = ("core.yaml", "eval_meta_data.csv")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Dataset:
    name: str
    base_url: str
    last_shard: int  # the validation shard, always fetched
    about: str

    def shard(self, index: int) -> str:
        return f"shard_{index:05d}.parquet"


DATASETS = {
    "climbmix": Dataset(
        "climbmix",
        "https://huggingface.co/datasets/karpathy/climbmix-400b-shuffle/resolve/main",
        6542,
        "NVIDIA ClimbMix, 400B tokens, shuffled and resharded by nanochat (its pretraining data since March 2026)",
    ),
    "fineweb-edu": Dataset(
        "fineweb-edu",
        "https://huggingface.co/datasets/karpathy/fineweb-edu-100b-shuffle/resolve/main",
        1822,
        "FineWeb-Edu 100B tokens, shuffled and resharded by nanochat (its earlier pretraining data)",
    ),
}
DEFAULT_DATASET = "climbmix"


class FetchError(RuntimeError):
    """A download failed or was refused; the message names the URL or file and what to do."""


def cache_dir() -> Path:
    return Path(os.environ.get("MINISERIES_CACHE") or Path.home() / ".cache" / "miniseries").expanduser()


def eval_bundle_dir(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "eval_bundle"


def cached_eval_bundle(cache: Path | None = None) -> Path | None:
    """The eval bundle `miniseries data fetch --eval-bundle` unpacked, if it is there."""
    d = eval_bundle_dir(cache)
    return d if all((d / f).is_file() for f in BUNDLE_FILES) and (d / "eval_data").is_dir() else None


def dataset_dir(name: str, cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "data" / name


# ---------------------------------------------------------------- checksums


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def read_sums(text: str) -> dict[str, str]:
    """name -> sha256 from sha256sum's format (`HEX  NAME`, `HEX *NAME`); anything else is an error."""
    sums = {}
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not _HEX64.match(parts[0].lower()):
            raise FetchError(f"checksum line {i} {line!r} is not `<64 hex digits>  <file name>`")
        sums[parts[1].strip().lstrip("*")] = parts[0].lower()
    return sums


def format_sums(sums: dict[str, str]) -> str:
    return "".join(f"{h}  {n}\n" for n, h in sorted(sums.items()))


def _load_sums(directory: Path) -> dict[str, str]:
    p = directory / SUMS
    return read_sums(p.read_text()) if p.is_file() else {}


def _record_sum(directory: Path, name: str, digest: str) -> None:
    sums = _load_sums(directory)
    sums[name] = digest
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{SUMS}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(format_sums(sums))
    os.replace(tmp, directory / SUMS)


def stated_sha256(headers: list[Any]) -> tuple[str | None, str]:
    """The sha256 a server states for the whole object, and which header said so."""
    for h in headers:
        for name in ("X-Linked-Etag", "ETag"):  # Hugging Face: an LFS file's ETag is its sha256
            v = (h.get(name) or "").strip().removeprefix("W/").strip('"').lower()
            if _HEX64.match(v):
                return v, name
        v = h.get("x-amz-checksum-sha256") or ""
        if v and "-" not in v:  # a composite (multipart) checksum is not the object's sha256
            with contextlib.suppress(binascii.Error, ValueError):
                raw = base64.b64decode(v, validate=True)
                if len(raw) == 32:
                    return raw.hex(), "x-amz-checksum-sha256"
    return None, ""


# ---------------------------------------------------------------- one download


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Keeps every redirect response's headers: Hugging Face states the sha256 on its 302."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        self.seen.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


@dataclass
class Downloaded:
    path: Path
    sha256: str
    bytes: int
    how: str  # "cached", "downloaded", "resumed from byte N"


def _cached(dest: Path, expected: str | None, say: Callable[[str], None]) -> Downloaded | None:
    """`dest` as it is, if it is there and matches the pinned (else the recorded) sha256; a file that
    does not is removed, to be downloaded again."""
    if not dest.is_file():
        return None
    recorded = _load_sums(dest.parent).get(dest.name)
    digest = sha256_file(dest)
    want = expected or recorded
    if want is None or digest == want:
        if recorded != digest:
            _record_sum(dest.parent, dest.name, digest)
        return Downloaded(dest, digest, dest.stat().st_size, "cached")
    say(f"{dest} has sha256 {digest}, not {want} ({'pinned' if expected else 'recorded in ' + SUMS}): "
        "downloading it again")  # fmt: skip
    dest.unlink()
    return None


def _get_into(url: str, partial: Path, offset: int, meta: dict[str, Any], meta_path: Path,
              timeout: float) -> None:  # fmt: skip
    """One GET of `url` into `partial` from byte `offset` (a Range request `If-Range` the first
    response's ETag). `meta`, the partial's metadata, is replaced in place (and on disk) when the
    server sends the whole object, so a retry after a dropped connection resumes against it.
    Raises on an HTTP error, and IncompleteRead when the connection dropped before the end."""
    req = urllib.request.Request(url, headers={"User-Agent": "miniseries-data-fetch",
                                               "x-amz-checksum-mode": "ENABLED"})  # fmt: skip
    if offset:
        req.add_header("Range", f"bytes={offset}-")
        if meta.get("etag"):
            req.add_header("If-Range", meta["etag"])
    redirects = _Redirects()
    opener = urllib.request.build_opener(redirects)
    with opener.open(req, timeout=timeout) as resp:
        status = resp.status
        if offset and status == 200:  # the server ignored the Range, or the file changed: start over
            offset = 0
        elif status == 206:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                raise FetchError(f"{url}: asked for bytes {offset}- and got Content-Range "
                                 f"{resp.headers.get('Content-Range')!r}")  # fmt: skip
        if status == 200:  # a whole object: its headers say what it is
            stated = stated_sha256([*redirects.seen, resp.headers])
            meta.clear()
            meta.update({"url": url, "etag": resp.headers.get("ETag"), "sha256": stated[0],
                         "sha256_header": stated[1]})  # fmt: skip
            meta_path.write_text(json.dumps(meta))
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with partial.open("r+b" if offset else "wb") as f:
            f.seek(offset)
            f.truncate()
            while chunk := resp.read(CHUNK):
                f.write(chunk)
        size = partial.stat().st_size
        if total is not None and size < total:
            raise http.client.IncompleteRead(b"", total - size)


def _get_resuming(url: str, partial: Path, meta: dict[str, Any], meta_path: Path, *, retries: int,
                  retry_wait: float, timeout: float, say: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    """`url` into `partial` whole: each dropped connection resumed from the bytes it left, up to
    `retries` times with a doubling wait; returns the partial's metadata (the stated sha256)."""
    attempt = 0
    while True:
        offset = partial.stat().st_size if partial.is_file() else 0
        try:
            _get_into(url, partial, offset, meta, meta_path, timeout)
            return meta
        except urllib.error.HTTPError as e:
            if e.code == 416 and offset:  # the partial file is not a prefix of what the server has now
                partial.unlink(missing_ok=True)
                continue
            raise FetchError(f"{url}: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            have = partial.stat().st_size if partial.is_file() else 0
            if attempt >= retries:
                raise FetchError(f"{url}: download interrupted at byte {have:,} after {attempt + 1} attempt(s) "
                                 f"({type(e).__name__}: {e}); run the same command again to resume") from None  # fmt: skip
            attempt += 1
            say(f"{url}: interrupted at byte {have:,} ({type(e).__name__}); resuming (retry {attempt}/{retries})")
            time.sleep(retry_wait * 2 ** (attempt - 1))


def download(
    url: str,
    dest: Path,
    *,
    expected_sha256: str | None = None,
    retries: int = 5,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
    say: Callable[[str], None] = lambda s: None,
) -> Downloaded:
    """`url` into `dest`: resumed, verified, recorded in dest's SHA256SUMS. See the module doc."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    expected = expected_sha256.lower() if expected_sha256 else None
    cached = _cached(dest, expected, say)
    if cached is not None:
        return cached
    partial = dest.with_name(f".{dest.name}.partial")
    meta_path = dest.with_name(f".{dest.name}.partial.json")
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() and partial.is_file() else {}
    if meta.get("url") != url:
        partial.unlink(missing_ok=True)
        meta = {"url": url}
    first_offset = partial.stat().st_size if partial.is_file() else 0
    meta = _get_resuming(url, partial, meta, meta_path, retries=retries, retry_wait=retry_wait, timeout=timeout,
                         say=say)  # fmt: skip
    stated: tuple[str | None, str] = (meta.get("sha256"), meta.get("sha256_header", ""))
    digest = sha256_file(partial)
    for want, source in ((expected, "pinned with --checksums"), (stated[0], f"stated by the server's {stated[1]}")):
        if want and digest != want:
            partial.unlink(missing_ok=True)
            meta_path.unlink(missing_ok=True)
            raise FetchError(f"{url}: checksum mismatch: the download has sha256 {digest}, but {want} was "
                             f"{source}; refused and discarded")  # fmt: skip
    os.replace(partial, dest)
    meta_path.unlink(missing_ok=True)
    _record_sum(dest.parent, dest.name, digest)
    how = f"resumed from byte {first_offset:,}" if first_offset else "downloaded"
    return Downloaded(dest, digest, dest.stat().st_size, how)


# ---------------------------------------------------------------- the eval bundle


def _bundle_root(tmp: Path) -> Path:
    """Where core.yaml is in an unpacked zip: its top level or one folder down (nanochat's eval_bundle/)."""
    for d in (tmp, *sorted(p for p in tmp.iterdir() if p.is_dir())):
        if (d / "core.yaml").is_file():
            return d
    raise FetchError("the zip has no core.yaml at its top level or in a top-level folder; it is not an eval bundle")


def unpack_bundle(zip_path: Path, dest: Path, digest: str) -> Path:
    """Unpack nanochat's eval_bundle.zip into dest (replacing an older one), checked and atomic."""
    stamp = dest / ".source.json"
    if (
        cached_eval_bundle(dest.parent) == dest
        and stamp.is_file()
        and json.loads(stamp.read_text()).get("sha256") == digest
    ):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".eval_bundle."))
    try:
        try:
            with zipfile.ZipFile(zip_path) as z:
                for info in z.infolist():
                    target = (tmp / info.filename).resolve()
                    if tmp.resolve() not in target.parents and target != tmp.resolve():
                        raise FetchError(f"{zip_path}: member {info.filename!r} points outside the bundle; refused")
                z.extractall(tmp)
        except zipfile.BadZipFile as e:
            raise FetchError(f"{zip_path} is not a zip file ({e})") from None
        root = _bundle_root(tmp)
        missing = [f for f in (*BUNDLE_FILES, "eval_data") if not (root / f).exists()]
        if missing:
            raise FetchError(f"{zip_path}: the bundle has no {', '.join(missing)}")
        (root / ".source.json").write_text(json.dumps({"sha256": digest, "zip": str(zip_path)}))
        old = dest.with_name(f".{dest.name}.old")
        if dest.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
        os.replace(root, dest)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def fetch_eval_bundle(
    *, url: str | None = None, cache: Path | None = None, sums: dict[str, str] | None = None, **kw: Any
) -> tuple[Path, Downloaded]:
    url = url or os.environ.get("MINISERIES_EVAL_BUNDLE_URL") or EVAL_BUNDLE_URL
    cache = cache or cache_dir()
    name = url.rstrip("/").rsplit("/", 1)[-1] or "eval_bundle.zip"
    got = download(url, cache / "downloads" / name, expected_sha256=(sums or {}).get(name), **kw)
    return unpack_bundle(got.path, eval_bundle_dir(cache), got.sha256), got


# ---------------------------------------------------------------- shards


def shard_names(dataset: Dataset, n: int) -> list[str]:
    """The first n training shards and the validation shard, as nanochat's `dataset.py -n N` fetches them."""
    if not 0 <= n <= dataset.last_shard:
        raise FetchError(f"--shards {n}: {dataset.name} has {dataset.last_shard} training shards "
                         f"(0..{dataset.last_shard - 1}) and a validation shard; allowed: 0..{dataset.last_shard}")  # fmt: skip
    return [dataset.shard(i) for i in range(n)] + [dataset.shard(dataset.last_shard)]


def fetch_shards(
    dataset: Dataset,
    n: int,
    *,
    base_url: str | None = None,
    cache: Path | None = None,
    sums: dict[str, str] | None = None,
    **kw: Any,
) -> list[Downloaded]:
    base = (base_url or os.environ.get("MINISERIES_DATA_BASE_URL") or dataset.base_url).rstrip("/")
    directory = dataset_dir(dataset.name, cache)
    return [
        download(f"{base}/{name}", directory / name, expected_sha256=(sums or {}).get(name), **kw)
        for name in shard_names(dataset, n)
    ]


def copy_to_store(out_uri: str, files: dict[str, Path]) -> None:
    """Upload key -> local file into a store, then a SHA256SUMS of what it holds; skips equal copies."""
    store = open_store(out_uri)
    store.check()
    have = read_sums(store.read_bytes(SUMS).decode()) if store.exists(SUMS) else {}
    sums = dict(have)
    for key, path in sorted(files.items()):
        digest = sha256_file(path)
        if have.get(key) != digest or not store.exists(key):
            store.upload_file(key, path)
        sums[key] = digest
    store.write_bytes(SUMS, format_sums(sums).encode())


def bundle_files(bundle: Path) -> dict[str, Path]:
    return {p.relative_to(bundle).as_posix(): p for p in sorted(bundle.rglob("*"))
            if p.is_file() and not p.name.startswith(".")}  # fmt: skip
