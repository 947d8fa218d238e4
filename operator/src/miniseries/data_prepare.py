"""Turn an installed English text corpus into parquet shards with a `text` column (nanochat's format).

There is no internet where miniseries is developed and tested, so the default
corpus is one a package installs: the reStructuredText sources of the Python 3.11
documentation (Debian `python3.11-doc`, PSF License v2; `scripts/install-corpus.sh`
installs it): about 11 MB of English technical prose in 512 files. Any directory of
UTF-8 text files works (`--source DIR --glob PATTERN`).

One file is one document. Documents are shuffled with a fixed seed (so the
validation split is not just the alphabetically last chapters), packed into shards
of about `--shard-chars` characters, and the last `--val-shards` shards hold the
held-out documents. Shard names sort in order, and the trainer takes the lexically
last shard as its validation split, so keep `--val-shards 1` for training sweeps.
Writes are atomic per shard; a `_manifest.json` is written last.

Torch-free: pyarrow comes from the `science` extra.
"""

from __future__ import annotations

import io
import json
import random
from dataclasses import dataclass
from pathlib import Path

from miniseries.store import open_store

DEFAULT_SOURCE = Path("/usr/share/doc/python3.11/html/_sources")
DEFAULT_GLOB = "**/*.rst.txt"
CORPUS_LICENSE = "PSF License Version 2 (Python documentation, Debian package python3.11-doc)"
SHUFFLE_SEED = 1337
MANIFEST = "_manifest.json"


@dataclass(frozen=True)
class PreparedShard:
    key: str
    documents: int
    chars: int
    split: str


def read_documents(source: Path, pattern: str) -> list[str]:
    if not source.is_dir():
        raise FileNotFoundError(
            f"--source {source} is not a directory; install the default corpus with scripts/install-corpus.sh"
        )
    docs = []
    for path in sorted(source.glob(pattern)):
        if path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            if text:
                docs.append(text)
    if not docs:
        raise FileNotFoundError(f"--source {source} has no non-empty files matching --glob {pattern!r}")
    return docs


def pack_shards(docs: list[str], shard_chars: int, val_shards: int) -> list[tuple[str, list[str]]]:
    """Split shuffled documents into (split, docs) shards of about shard_chars each."""
    docs = docs[:]
    random.Random(SHUFFLE_SEED).shuffle(docs)
    shards: list[list[str]] = [[]]
    size = 0
    for doc in docs:
        if size >= shard_chars:
            shards.append([])
            size = 0
        shards[-1].append(doc)
        size += len(doc)
    if len(shards) < val_shards + 1:
        raise ValueError(
            f"the corpus ({sum(map(len, docs)):,} chars) makes only {len(shards)} shard(s) of --shard-chars "
            f"{shard_chars:,}; need at least {val_shards + 1} (--val-shards {val_shards} plus one for training): "
            "lower --shard-chars"
        )
    return [("val" if i >= len(shards) - val_shards else "train", s) for i, s in enumerate(shards)]


def prepare(
    out_uri: str,
    *,
    source: Path = DEFAULT_SOURCE,
    pattern: str = DEFAULT_GLOB,
    shard_chars: int = 2_000_000,
    val_shards: int = 1,
) -> list[PreparedShard]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if shard_chars < 1:
        raise ValueError(f"--shard-chars must be >= 1, got {shard_chars}")
    if val_shards < 1:
        raise ValueError(f"--val-shards must be >= 1 (the trainer needs a validation split), got {val_shards}")
    store = open_store(out_uri)
    store.check()
    shards = pack_shards(read_documents(source, pattern), shard_chars, val_shards)
    written = []
    for i, (split, docs) in enumerate(shards):
        buf = io.BytesIO()
        # Row groups of ~1k documents: the trainer's loader resumes at row-group granularity plus an offset.
        pq.write_table(pa.table({"text": docs}), buf, row_group_size=1024, compression="zstd")
        key = f"shard_{i:05d}.parquet"
        store.write_bytes(key, buf.getvalue())
        written.append(PreparedShard(key, len(docs), sum(map(len, docs)), split))
    manifest = {
        "source": str(source),
        "glob": pattern,
        "license": CORPUS_LICENSE if source == DEFAULT_SOURCE else "see the source's own license",
        "shuffle_seed": SHUFFLE_SEED,
        "shards": [s.__dict__ for s in written],
    }
    store.write_bytes(MANIFEST, json.dumps(manifest, indent=2).encode())
    return written
