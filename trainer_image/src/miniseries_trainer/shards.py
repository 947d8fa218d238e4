"""The trainer's side of `miniseries data prepare` (operator/src/miniseries/data/prepare.py): which of
the shards it wrote are for training and which one is the validation split.

Its own module because both the token loader (loader.py) and the tokenizer's training
(tokenizer.py) read the shards, and the loader needs the tokenizer.
"""

from __future__ import annotations

from miniseries.contract.store import Store, StoreError


def list_shards(store: Store) -> tuple[list[str], str]:
    """(training shard keys, validation shard key), by lexical order of the keys."""
    keys = sorted(k for k in store.list("") if k.endswith(".parquet"))
    if len(keys) < 2:
        raise StoreError(
            f"--data {store.uri} has {len(keys)} parquet shard(s); need at least 2 (training + the last one "
            "for validation). Build them with `miniseries data prepare --out URI`"
        )
    return keys[:-1], keys[-1]
