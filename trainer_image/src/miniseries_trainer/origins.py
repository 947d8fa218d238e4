"""Where a run's inputs came from, as hashes and commits (torch-free): the parts of provenance that the
built-in trainer (provenance.py) and the nanochat adapter (adapters/nanochat.py, a process that never
loads torch) both record, so that two trainers' rows name the same data by the same hash."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from miniseries.contract.store import Store, StoreError

#: The manifest `miniseries data prepare` writes next to the shards (miniseries.data.prepare.MANIFEST).
SHARD_MANIFEST = "_manifest.json"
#: The tokenizer's manifest (miniseries_trainer.tokenizer.MANIFEST): holds the artifact's sha256.
TOKENIZER_MANIFEST = "manifest.json"


def git_commit(path: Path) -> str | None:
    """The commit of the git checkout holding `path`; None when it is none, or git is not installed (the
    trainer + nanochat image has no git: a missing commit must never fail a run)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def dataset_hash(data_store: Store) -> tuple[str | None, str | None]:
    """(sha256, kind): of the shard manifest when there is one, else of the sorted shard listing."""
    try:
        if data_store.exists(SHARD_MANIFEST):
            return hashlib.sha256(data_store.read_bytes(SHARD_MANIFEST)).hexdigest(), "manifest"
        keys = sorted(k for k in data_store.list("") if k.endswith(".parquet"))
    except StoreError:
        return None, None
    return hashlib.sha256("\n".join(keys).encode()).hexdigest(), "listing"


def tokenizer_hash(tokenizer_store: Store) -> str | None:
    try:
        manifest = json.loads(tokenizer_store.read_bytes(TOKENIZER_MANIFEST))
    except (StoreError, ValueError):
        return None
    sha = manifest.get("sha256") if isinstance(manifest, dict) else None
    return sha if isinstance(sha, str) else None
