"""The token loader: batches streamed from parquet shards in the store, resumable to the exact token.

Shards are nanochat's format: parquet files with a `text` column, one document per
row, in a store prefix (`file://` or `s3://`). The lexically last shard is the
validation split and is never trained on.

Each rank takes every world_size-th document of a row group (documents split
across ranks), tokenizes it with a BOS in front, appends the tokens to a buffer and
cuts rows of seq_len + 1 tokens (inputs are row[:-1], targets row[1:]). The trainer
reads through StepLoader: one such stream per micro-batch of a step, so that a step's
documents do not depend on how many GPUs (and nodes) share it.

The loader's position is a small dict, saved in every checkpoint:

    {"epoch", "shard", "row_group", "doc", "buffer": [leftover tokens]}

`doc` is the next document (index within the row group) not yet tokenized, and
`buffer` is every token tokenized but not yet emitted, so a loader rebuilt from
that dict yields exactly the batches the original would have yielded next.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pyarrow.parquet as pq
import torch
from torch import Tensor

from miniseries.contract.store import Store
from miniseries_trainer.tokenizer import Tokenizer

#: Documents tokenized per batch call (tiktoken parallelises across them).
DOCS_PER_ENCODE = 32


class ShardReader:
    """Fetches shards from the store, the next one in the background while the current one is used."""

    def __init__(self, store: Store, keys: list[str]):
        self.store, self.keys = store, keys
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-prefetch")
        self._pending: dict[int, Future[pq.ParquetFile]] = {}
        # The newest two shards fetched: a StepLoader's streams share this reader and cross a
        # shard boundary one after another, so each shard is read from the store once.
        self._recent: dict[int, pq.ParquetFile] = {}

    def _fetch(self, index: int) -> pq.ParquetFile:
        return pq.ParquetFile(io.BytesIO(self.store.read_bytes(self.keys[index])))

    def get(self, index: int) -> pq.ParquetFile:
        if index in self._recent:
            return self._recent[index]
        future = self._pending.pop(index, None)
        shard = future.result() if future is not None else self._fetch(index)
        self._recent = {**{k: v for k, v in self._recent.items() if k != index}, index: shard}
        while len(self._recent) > 2:
            del self._recent[next(iter(self._recent))]
        nxt = (index + 1) % len(self.keys)
        if nxt not in self._pending:
            self._pending = {nxt: self._pool.submit(self._fetch, nxt)}
        return shard


class TokenLoader:
    """Yields (x, y) int64 batches of shape (batch_size, seq_len) forever (epochs wrap around)."""

    def __init__(
        self,
        store: Store,
        shard_keys: list[str],
        tokenizer: Tokenizer,
        *,
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        state: dict[str, Any] | None = None,
        wrap: bool = True,
        reader: ShardReader | None = None,
    ):
        self.reader = reader or ShardReader(store, shard_keys)
        self.tokenizer = tokenizer
        self.batch_size, self.seq_len = batch_size, seq_len
        self.rank, self.world_size = rank, world_size
        self.wrap = wrap
        s = state or {}
        self.epoch: int = s.get("epoch", 0)
        self.shard: int = s.get("shard", 0)
        self.row_group: int = s.get("row_group", 0)
        self.doc: int = s.get("doc", 0)
        self.buffer: list[int] = list(s.get("buffer", []))
        self._cached_at: tuple[int, int] | None = None
        self._cached: list[str] = []

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "shard": self.shard,
            "row_group": self.row_group,
            "doc": self.doc,
            "buffer": list(self.buffer),
        }

    def _texts(self, parquet: pq.ParquetFile) -> list[str]:
        """The current row group's documents, decoded once and kept while the loader is in it."""
        where = (self.shard, self.row_group)
        if self._cached_at != where:
            self._cached = parquet.read_row_group(self.row_group, columns=["text"]).column("text").to_pylist()
            self._cached_at = where
        return self._cached

    def _refill(self) -> bool:
        """Tokenize the next few of this rank's documents into the buffer; False when the data is exhausted."""
        while True:
            if self.shard >= len(self.reader.keys):
                if not self.wrap:
                    return False
                self.epoch += 1
                self.shard = self.row_group = self.doc = 0
                print(f"data: starting epoch {self.epoch} over the training shards", file=sys.stderr)
            parquet = self.reader.get(self.shard)
            if self.row_group >= parquet.num_row_groups:
                self.shard, self.row_group, self.doc = self.shard + 1, 0, 0
                continue
            texts = self._texts(parquet)
            # This rank's documents are rank, rank + world, ...; `doc` indexes the row group.
            mine = [i for i in range(self.doc, len(texts)) if i % self.world_size == self.rank][:DOCS_PER_ENCODE]
            if not mine:
                self.row_group, self.doc = self.row_group + 1, 0
                continue
            for row in self.tokenizer.encode_batch([texts[i] for i in mine], prepend_bos=True):
                self.buffer.extend(row)
            self.doc = mine[-1] + 1
            return True

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self

    def __next__(self) -> tuple[Tensor, Tensor]:
        need = self.batch_size * (self.seq_len + 1)
        while len(self.buffer) < need:
            if not self._refill():
                raise StopIteration
        rows = torch.tensor(self.buffer[:need], dtype=torch.long).view(self.batch_size, self.seq_len + 1)
        del self.buffer[:need]
        return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()


class StepLoader:
    """This rank's micro-batches, such that a step trains on the same documents whatever the world size.

    A step is `world_size x grad_accum` micro-batches. They come from as many document streams
    (stream s: documents s, s + streams, ... of each row group, packed as TokenLoader packs them),
    and micro-batch k of rank r is stream r + k x world_size. One GPU with accumulation 2 thus
    trains on streams 0 and 1 in each step, as two GPUs (or two nodes) without accumulation do:
    at the same global batch the loss differs only by the order of the sums (the all-reduce vs
    the accumulation). With grad_accum 1 each rank is one stream, as TokenLoader alone is.

    The state is one TokenLoader's dict when grad_accum is 1 (so checkpoints of such runs are
    as before), else {"streams": [...], "next": k}. A plain dict with grad_accum > 1 is a
    checkpoint of the trainer before streams: it resumes as it was written, one stream per rank.
    """

    def __init__(
        self,
        store: Store,
        shard_keys: list[str],
        tokenizer: Tokenizer,
        *,
        batch_size: int,
        seq_len: int,
        rank: int = 0,
        world_size: int = 1,
        grad_accum: int = 1,
        state: dict[str, Any] | None = None,
    ):
        reader = ShardReader(store, shard_keys)

        def stream(r: int, n: int, st: dict[str, Any] | None) -> TokenLoader:
            return TokenLoader(store, shard_keys, tokenizer, batch_size=batch_size, seq_len=seq_len, rank=r,
                               world_size=n, state=st, reader=reader)  # fmt: skip

        self.next = 0
        if (grad_accum == 1 and state is None) or (state is not None and "streams" not in state):
            self.streams = [stream(rank, world_size, state)]
            return
        states: list[dict[str, Any] | None] = list(state["streams"]) if state is not None else [None] * grad_accum
        if len(states) != grad_accum:
            raise ValueError(
                f"the checkpoint's loader has {len(states)} streams per rank, this run accumulates {grad_accum} "
                "micro-batches: resume with the world size and batch it was written with"
            )
        self.next = state["next"] if state is not None else 0
        self.streams = [stream(rank + k * world_size, world_size * grad_accum, st) for k, st in enumerate(states)]

    def state_dict(self) -> dict[str, Any]:
        if len(self.streams) == 1:
            return self.streams[0].state_dict()
        return {"streams": [s.state_dict() for s in self.streams], "next": self.next}

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self

    def __next__(self) -> tuple[Tensor, Tensor]:
        batch = next(self.streams[self.next])
        self.next = (self.next + 1) % len(self.streams)
        return batch


def validation_batches(
    store: Store,
    val_key: str,
    tokenizer: Tokenizer,
    *,
    batch_size: int,
    seq_len: int,
    eval_tokens: int,
    rank: int = 0,
    world_size: int = 1,
    keep: int | None = None,
) -> list[tuple[Tensor, Tensor]]:
    """This rank's share of the first eval_tokens tokens of the validation shard (one pass, no wrap).

    `keep`: only that many batches, of sequences spread evenly over those eval_tokens (the first and
    the last sequence among them), streamed so that the others are never held: the val-bpb trace's
    slice, drawn across what the final evaluation measures rather than from its first documents (on
    the default corpus a slice of the first documents sat 8% below the final evaluation of d1-d3).
    """
    loader = TokenLoader(
        store,
        [val_key],
        tokenizer,
        batch_size=batch_size,
        seq_len=seq_len,
        rank=rank,
        world_size=world_size,
        wrap=False,
    )
    per_batch = batch_size * seq_len * world_size
    total = max(1, eval_tokens // per_batch)
    if keep is not None and keep < total:
        return _spread(loader, total, batch_size, keep)
    batches = []
    for _ in range(total):
        try:
            batches.append(next(loader))
        except StopIteration:
            break
    return batches


def _spread(loader: TokenLoader, total: int, batch_size: int, keep: int) -> list[tuple[Tensor, Tensor]]:
    """`keep` batches of the sequences at evenly spaced places among the `total` batches' rows."""
    rows, want = total * batch_size, keep * batch_size
    wanted = {round(i * (rows - 1) / max(1, want - 1)) for i in range(want)}
    xs, ys = [], []
    for i in range(total):
        try:
            x, y = next(loader)
        except StopIteration:
            break
        for j in range(x.shape[0]):
            if i * batch_size + j in wanted:
                xs.append(x[j])
                ys.append(y[j])
    return [
        (torch.stack(xs[k : k + batch_size]), torch.stack(ys[k : k + batch_size]))
        for k in range(0, len(xs) - batch_size + 1, batch_size)
    ]
