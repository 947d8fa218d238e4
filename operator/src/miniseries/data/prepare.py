"""Turn English text into parquet shards with a `text` column (nanochat's format).

`--source` says where the text comes from:

- `stdlib` (the default): the English prose of the running Python's standard
  library, which every CPython has: the docstrings and comment blocks of its
  modules (one module is one document) and pydoc's topic help
  (`pydoc_data.topics`). About 2.7 MB of technical English with Python 3.11;
  PSF License Version 2. Nothing to install, no network, no root: it is what
  `make local` trains on.
- a directory, or a `file://` or `s3://` prefix (through the store): parquet
  files with a `text` column, one document per row (nanochat's FineWeb-edu and
  ClimbMix shards; `miniseries data fetch` downloads them), and UTF-8 text
  files, one document each (for example the Debian package python3.11-doc's
  `/usr/share/doc/python3.11/html/_sources`, the corpus this project used before).
  `--glob` picks the files (`*` also matches `/`); by default `**/*.parquet` when
  the source holds any parquet file, else every file. Hidden files (a path part
  starting with `.`) are never read. A binary file, a file that is not UTF-8, a
  parquet file without a `text` column or an empty selection is an error naming
  the file.

Text sources (the standard library, text files) are read whole and their
documents shuffled with a fixed seed, so that the validation split is not just
the alphabetically last files; a parquet source is streamed in key order, one
row group at a time (nanochat's shards are shuffled already), so it may be far
larger than memory. Documents are packed into shards of about `--shard-chars`
characters; the last `--val-shards` shards hold the held-out documents. Shard
names sort in order, and the trainer takes the lexically last shard as its
validation split, so keep `--val-shards 1` for training sweeps. The output must
hold no parquet shards yet; each shard is written atomically and
`_manifest.json` last.

Torch-free: pyarrow comes from the `science` extra (a missing one is an error
that says how to install it).
"""

from __future__ import annotations

import ast
import fnmatch
import inspect
import io
import json
import math
import platform
import random
import re
import sysconfig
import tokenize
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from miniseries.contract.store import LocalStore, Store, StoreError, open_store

STDLIB = "stdlib"
DEFAULT_SOURCE = STDLIB
SHUFFLE_SEED = 1337
MANIFEST = "_manifest.json"
#: Characters per shard when --shard-chars is not given. The standard library's
#: ~2.7 MB make ~7 shards of 400k, so the validation shard is ~15% of the text
#: (about 100k tokens with a 1k vocabulary: more than the tiny sweep's evalTokens);
#: a larger corpus gets nanochat-sized shards.
DEFAULT_SHARD_CHARS = {"stdlib": 400_000, "text": 2_000_000, "parquet": 100_000_000}
STDLIB_LICENSE = "PSF License Version 2 (the Python standard library's docstrings, comments and pydoc topics)"
#: Standard-library folders that are not the library's own prose (tests, GUI demos,
#: code tables) or not the standard library (installed packages).
STDLIB_SKIP = frozenset({"test", "tests", "idlelib", "tkinter", "turtledemo", "lib2to3", "ensurepip", "encodings",
                         "site-packages", "dist-packages", "__pycache__", "pydoc_data"})  # fmt: skip
PARQUET_SUFFIX = ".parquet"
ROW_GROUP_SIZE = 1024  # the trainer's loader resumes at row-group granularity plus an offset
_WORD = re.compile(r"[A-Za-z]{2,}")


class DataError(ValueError):
    """The input cannot be made into shards; the message names the file or flag and what is allowed."""


@dataclass(frozen=True)
class PreparedShard:
    key: str
    documents: int
    chars: int
    split: str


# ---------------------------------------------------------------- the standard library's prose


def _prose_like(text: str) -> bool:
    """A comment block worth keeping: a sentence or more of words, not commented-out code or a table."""
    if len(_WORD.findall(text)) < 8:
        return False
    return sum(c.isalpha() or c.isspace() for c in text) >= 0.85 * len(text)


def module_prose(source: bytes) -> str:
    """A module's docstrings and string statements, and its prose comment blocks, in source order."""
    pieces: list[str] = []
    block: list[str] = []
    block_end = -1
    prev = tokenize.ENCODING
    pending: str | None = None

    def flush() -> None:
        if block:
            text = " ".join(block)
            if _prose_like(text):
                pieces.append(text)
            block.clear()

    for tok in tokenize.tokenize(io.BytesIO(source).readline):
        if tok.type == tokenize.COMMENT:
            if tok.line.lstrip().startswith("#"):  # a whole-line comment, not one after code
                if tok.start[0] != block_end + 1:
                    flush()
                block.append(tok.string.lstrip("#").strip())
                block_end = tok.start[0]
            continue
        if tok.type == tokenize.NL:
            continue
        flush()
        if pending is not None:
            if tok.type == tokenize.NEWLINE:  # the string was a statement of its own: a docstring
                try:
                    value = ast.literal_eval(pending)
                except (ValueError, SyntaxError):  # an f-string: not a docstring
                    value = None
                if isinstance(value, str) and (doc := inspect.cleandoc(value).strip()):
                    pieces.append(doc)
            pending = None
        if tok.type == tokenize.STRING and prev in (tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                                                    tokenize.ENCODING):  # fmt: skip
            pending = tok.string
        prev = tok.type
    flush()
    return "\n\n".join(pieces)


def stdlib_documents() -> list[str]:
    """The standard library's English prose: one document per module, one per pydoc topic."""
    root = Path(sysconfig.get_paths()["stdlib"])
    docs = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in STDLIB_SKIP or part.startswith("config-") for part in rel.parts[:-1]):
            continue
        try:
            text = module_prose(path.read_bytes())
        except (SyntaxError, ValueError, tokenize.TokenError, OSError):
            continue  # a file this Python cannot tokenize (e.g. a test fixture with bad syntax) has no prose for us
        if text:
            docs.append(text)
    try:
        from pydoc_data.topics import topics
    except ImportError:  # a distribution that strips pydoc's help data: the modules alone still make ~2 MB
        topics = {}
    docs += [text.strip() for _, text in sorted(topics.items()) if text.strip()]
    if not docs:
        raise DataError(f"--source {STDLIB}: found no standard library sources under {root}; "
                        "give a directory of text or parquet files with --source DIR")  # fmt: skip
    return docs


# ---------------------------------------------------------------- files in a directory or store


@dataclass(frozen=True)
class SourceFile:
    name: str  # what error messages call it: a path or a URI
    key: str
    store: Store

    @property
    def is_parquet(self) -> bool:
        return self.key.endswith(PARQUET_SUFFIX)


def _glob_match(key: str, pattern: str) -> bool:
    return fnmatch.fnmatchcase(key, pattern) or (pattern.startswith("**/") and fnmatch.fnmatchcase(key, pattern[3:]))


def open_source(source: str) -> tuple[Store, str]:
    """(store, display name) for a directory, a file:// URI or an s3:// prefix."""
    if source.startswith(("s3://", "file://")):
        try:
            store = open_store(source)
        except StoreError as e:
            raise DataError(f"--source {source}: {e}") from None
        if isinstance(store, LocalStore) and not store.root.is_dir():
            raise DataError(f"--source {source} is not a directory")
        return store, source.rstrip("/")
    path = Path(source).expanduser()
    if not path.is_dir():
        raise DataError(f"--source {source} is not a directory; allowed: {STDLIB!r} (the default), a directory, "
                        "file:///<absolute path> or s3://<bucket>/<prefix>")  # fmt: skip
    return LocalStore(path), str(path)


def list_source(source: str, pattern: str | None) -> tuple[list[SourceFile], str]:
    """The files to read, sorted by key, and the glob used."""
    store, name = open_source(source)
    keys = [k for k in store.list("") if not any(part.startswith(".") for part in k.split("/"))]
    if pattern is None:
        pattern = f"**/*{PARQUET_SUFFIX}" if any(k.endswith(PARQUET_SUFFIX) for k in keys) else "**/*"
    files = [SourceFile(f"{name}/{k}", k, store) for k in keys if _glob_match(k, pattern)]
    if not files:
        what = f"{len(keys)} files, none matching --glob {pattern!r}" if keys else "no files"
        raise DataError(f"--source {name} has {what}; give a directory of UTF-8 text files or parquet files "
                        "with a `text` column")  # fmt: skip
    return files, pattern


def decode_text(name: str, data: bytes) -> str:
    """A text file's content, or a DataError naming the file when it is binary or not UTF-8."""
    nul = data.find(b"\0")
    if nul >= 0:
        raise DataError(f"{name} is a binary file (a NUL byte at offset {nul}), not UTF-8 text; exclude it with "
                        f"--glob (parquet files need the {PARQUET_SUFFIX} suffix)")  # fmt: skip
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{name} is not UTF-8 text: byte 0x{data[e.start]:02x} at offset {e.start} ({e.reason}); "
                        "convert it (iconv -t UTF-8) or exclude it with --glob") from None  # fmt: skip


def _read(f: SourceFile) -> bytes:
    try:
        return f.store.read_bytes(f.key)
    except StoreError as e:
        raise DataError(f"{f.name}: {e}") from None


def parquet_texts(f: SourceFile, pq: Any, pa: Any) -> Iterator[list[str]]:
    """The `text` column of a parquet file, one row group at a time, null rows dropped."""
    src: Any = str(f.store.root / f.key) if isinstance(f.store, LocalStore) else pa.BufferReader(_read(f))
    try:
        pf = pq.ParquetFile(src)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{f.name} is not a readable parquet file: {e}") from None
    schema = pf.schema_arrow
    if "text" not in schema.names:
        raise DataError(f"{f.name} has no `text` column (columns: {', '.join(schema.names) or 'none'}); "
                        "a parquet source needs one document per row in a string column named `text` "
                        "(nanochat's layout)")  # fmt: skip
    typ = schema.field("text").type
    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ)):
        raise DataError(f"{f.name}: column `text` has type {typ}; it must hold strings (one document per row)")
    for i in range(pf.num_row_groups):
        try:
            rows = pf.read_row_group(i, columns=["text"]).column("text").to_pylist()
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{f.name}: row group {i} is unreadable: {e}") from None
        yield [t for t in rows if t and t.strip()]


# ---------------------------------------------------------------- shards


class ShardWriter:
    """Packs documents into shards of about shard_chars and writes each when full."""

    def __init__(self, store: Store, shard_chars: int, write: Callable[[Store, str, list[str]], None]):
        self.store, self.shard_chars, self.write = store, shard_chars, write
        self.docs: list[str] = []
        self.chars = 0
        self.written: list[tuple[str, int, int]] = []

    def add(self, doc: str) -> None:
        self.docs.append(doc)
        self.chars += len(doc)
        if self.chars >= self.shard_chars:
            self.flush()

    def flush(self) -> None:
        if self.docs:
            key = f"shard_{len(self.written):05d}{PARQUET_SUFFIX}"
            self.write(self.store, key, self.docs)
            self.written.append((key, len(self.docs), self.chars))
            self.docs, self.chars = [], 0


def _pyarrow() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise DataError(f"miniseries data prepare needs pyarrow, which is not installed here ({e}); install it with "
                        "`pip install 'miniseries[science]'` (or `pip install pyarrow`)") from None  # fmt: skip
    return pa, pq


def _empty_store(out_uri: str, shard_chars: int | None, val_shards: int) -> Store:
    """The output store, checked reachable and holding no shards yet (after the arguments' own checks)."""
    if shard_chars is not None and shard_chars < 1:
        raise DataError(f"--shard-chars must be >= 1, got {shard_chars}")
    if val_shards < 1:
        raise DataError(f"--val-shards must be >= 1 (the trainer needs a validation split), got {val_shards}")
    store = open_store(out_uri)
    store.check()
    existing = [k for k in store.list("") if k.endswith(PARQUET_SUFFIX)]
    if existing:
        raise DataError(f"--out {out_uri} already holds {len(existing)} parquet shard(s) ({existing[0]}, ...); "
                        "prepare into an empty location, or delete them first")  # fmt: skip
    return store


def _parquet_writer(pa: Any, pq: Any) -> Callable[[Store, str, list[str]], None]:
    """Writes documents as one shard: a zstd parquet file with a `text` column (nanochat's layout)."""

    def write(st: Store, key: str, docs: list[str]) -> None:
        buf = io.BytesIO()
        pq.write_table(pa.table({"text": pa.array(docs, pa.string())}), buf, row_group_size=ROW_GROUP_SIZE,
                       compression="zstd")  # fmt: skip
        st.write_bytes(key, buf.getvalue())

    return write


def _source_documents(source: str, pattern: str | None) -> tuple[str, list[str], list[SourceFile], dict[str, Any]]:
    """(the source's kind, its documents shuffled (none for parquet: streamed later), its files, the
    manifest so far). Text and stdlib documents are read whole and shuffled with a fixed seed."""
    manifest: dict[str, Any] = {"source": source}
    if source == STDLIB:
        kind = "stdlib"
        docs = stdlib_documents()
        manifest.update(python=platform.python_version(), license=STDLIB_LICENSE, shuffle_seed=SHUFFLE_SEED)
        files: list[SourceFile] = []
    else:
        files, pattern = list_source(source, pattern)
        manifest.update(glob=pattern, license="see the source's own license")
        kind = "parquet" if any(f.is_parquet for f in files) else "text"
        docs = []
        if kind == "text":
            docs = [t for t in (decode_text(f.name, _read(f)).strip() for f in files) if t]
            manifest["shuffle_seed"] = SHUFFLE_SEED
        else:
            manifest["files"] = len(files)
    if kind != "parquet":
        if not docs:
            raise DataError(f"--source {source}: every selected file is empty")
        random.Random(SHUFFLE_SEED).shuffle(docs)
    return kind, docs, files, manifest


def _fill(writer: ShardWriter, kind: str, docs: list[str], files: list[SourceFile], pa: Any, pq: Any) -> None:
    """Every document into `writer`, the last shard flushed; parquet sources streamed file by file."""
    if kind == "parquet":
        for f in files:  # streamed: a text file among parquet files is one document in key order
            if f.is_parquet:
                for group in parquet_texts(f, pq, pa):
                    for doc in group:
                        writer.add(doc)
            elif text := decode_text(f.name, _read(f)).strip():
                writer.add(text)
    else:
        for doc in docs:
            writer.add(doc)
    writer.flush()


def prepare(
    out_uri: str,
    *,
    source: str | Path = DEFAULT_SOURCE,
    pattern: str | None = None,
    shard_chars: int | None = None,
    val_shards: int = 1,
) -> list[PreparedShard]:
    """The source's documents as parquet shards in `out_uri`, the last `val_shards` for validation,
    with a manifest; nothing is left behind when it fails."""
    pa, pq = _pyarrow()
    source = str(source)
    store = _empty_store(out_uri, shard_chars, val_shards)
    kind, docs, files, manifest = _source_documents(source, pattern)
    requested = size = shard_chars or DEFAULT_SHARD_CHARS[kind]
    if docs:  # the total is known: even shards, so the validation shard is not a small remainder
        total = sum(map(len, docs))
        size = max(1, math.ceil(total / max(1, round(total / requested))))
    writer = ShardWriter(store, size, _parquet_writer(pa, pq))
    try:
        _fill(writer, kind, docs, files, pa, pq)
        n = len(writer.written)
        if n < val_shards + 1:
            total = sum(c for _, _, c in writer.written)
            raise DataError(f"the corpus ({total:,} chars) makes only {n} shard(s) of --shard-chars {requested:,}; need at "
                            f"least {val_shards + 1} (--val-shards {val_shards} plus one for training): "
                            "lower --shard-chars")  # fmt: skip
    except BaseException:
        for key, _, _ in writer.written:  # no half-prepared corpus: the trainer would take it for a whole one
            store.delete_prefix(key)
        raise
    written = [PreparedShard(key, docs_n, chars, "val" if i >= n - val_shards else "train")
               for i, (key, docs_n, chars) in enumerate(writer.written)]  # fmt: skip
    manifest.update(shard_chars=requested, shards=[asdict(s) for s in written])
    store.write_bytes(MANIFEST, json.dumps(manifest, indent=2).encode())
    return written
