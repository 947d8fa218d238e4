"""The sweep's byte-level BPE: trained once with HF `tokenizers`, run with `tiktoken`.

Training uses the Rust BPE trainer of HF `tokenizers` (fast, and it takes a
GPT-4-style split regex); inference uses `tiktoken` (fast, thread-parallel batch
encoding). The bridge is the artifact in the store at `SweepLayout(sweep).tokenizer`:

    tokenizer.json   {"pattern", "mergeable_ranks": [[base64 bytes, rank], ...], "special_tokens": {...}}
    manifest.json    sha256 and size of tokenizer.json, written last (its presence = complete)

Ranks are HF's token ids, which it assigns in merge order, so tiktoken's "merge the
lowest-ranked pair" reproduces HF's merges. Special tokens (<|bos|>) are appended
after the learned vocabulary so they never shift a rank.

    python -m miniseries_trainer.tokenizer --data URI --out URI --vocab-size N --max-chars N
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import tiktoken

from miniseries.contract.store import StoreError, open_store
from miniseries_trainer import masking
from miniseries_trainer.shards import list_shards

#: GPT-4's split pattern with numbers in groups of at most two digits (nanochat's variant:
#: a smaller vocabulary should not spend entries on three-digit numbers).
SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)
BOS = "<|bos|>"
SPECIAL_TOKENS = [BOS]
ARTIFACT = "tokenizer.json"
MANIFEST = "manifest.json"


def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's byte -> printable-unicode map that HF's ByteLevel uses."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}


def train_bpe(texts: Iterator[str], vocab_size: int) -> dict[str, Any]:
    """Learn merges; return the artifact document (pattern, ranks, specials)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    learned = vocab_size - len(SPECIAL_TOKENS)
    if learned < 256:
        raise ValueError(
            f"--vocab-size {vocab_size} is too small: needs 256 byte tokens + {len(SPECIAL_TOKENS)} special"
        )
    tok = Tokenizer(models.BPE(byte_fallback=False, unk_token=None, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(pattern=Regex(SPLIT_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=learned,
        show_progress=False,
        min_frequency=0,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(texts, trainer)
    decode = _byte_decoder()
    ranks = sorted(
        ((bytes(decode[ch] for ch in token), rank) for token, rank in tok.get_vocab().items()), key=lambda x: x[1]
    )
    if [r for _, r in ranks] != list(range(len(ranks))):
        raise RuntimeError("HF BPE produced non-contiguous token ids; cannot convert to tiktoken ranks")
    specials = {name: len(ranks) + i for i, name in enumerate(SPECIAL_TOKENS)}
    return {
        "pattern": SPLIT_PATTERN,
        "mergeable_ranks": [[base64.b64encode(b).decode(), r] for b, r in ranks],
        "special_tokens": specials,
        "vocab_size": len(ranks) + len(specials),
    }


class Tokenizer:
    """What the trainer and CORE eval use: encode/decode, BOS, and bytes per token."""

    def __init__(self, doc: dict[str, Any]):
        ranks = {base64.b64decode(b): int(r) for b, r in doc["mergeable_ranks"]}
        self.special_tokens: dict[str, int] = {k: int(v) for k, v in doc["special_tokens"].items()}
        self.encoding = tiktoken.Encoding(
            name="miniseries", pat_str=doc["pattern"], mergeable_ranks=ranks, special_tokens=self.special_tokens
        )
        self.bos_token_id = self.special_tokens[BOS]
        self.vocab_size = self.encoding.n_vocab

    def encode(self, text: str) -> list[int]:
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: Sequence[str], *, prepend_bos: bool = False, num_threads: int = 4) -> list[list[int]]:
        rows = self.encoding.encode_ordinary_batch(list(texts), num_threads=num_threads)
        if prepend_bos:
            rows = [[self.bos_token_id, *row] for row in rows]
        return rows

    def decode(self, ids: Sequence[int]) -> str:
        return self.encoding.decode(list(ids))

    def token_bytes(self) -> Any:
        """UTF-8 bytes of each token id (0 for specials): the denominator of bits-per-byte."""
        import torch

        lengths = [0] * self.vocab_size
        for i in range(self.vocab_size):
            if i not in self.special_tokens.values():
                lengths[i] = len(self.encoding.decode_single_token_bytes(i))
        return torch.tensor(lengths, dtype=torch.int32)


def save_tokenizer(doc: dict[str, Any], out_uri: str) -> None:
    """Artifact first, manifest last: a reader that finds the manifest finds a complete tokenizer."""
    store = open_store(out_uri)
    raw = json.dumps(doc).encode()
    store.write_bytes(ARTIFACT, raw)
    manifest = {
        "file": ARTIFACT,
        "bytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "vocab_size": doc["vocab_size"],
    }
    store.write_bytes(MANIFEST, json.dumps(manifest, indent=2).encode())


def load_tokenizer(uri: str) -> Tokenizer:
    store = open_store(uri)
    if not store.exists(MANIFEST):
        raise StoreError(
            f"no tokenizer at {uri} (missing {MANIFEST}); train one with "
            f"`python -m miniseries_trainer.tokenizer --data SHARDS --out {uri}`"
        )
    manifest = json.loads(store.read_bytes(MANIFEST))
    raw = store.read_bytes(manifest["file"])
    if hashlib.sha256(raw).hexdigest() != manifest["sha256"]:
        raise StoreError(f"tokenizer at {uri} is corrupt: sha256 of {manifest['file']} does not match its manifest")
    return Tokenizer(json.loads(raw))


def iter_training_texts(data_uri: str, max_chars: int) -> Iterator[str]:
    """Texts of the training shards (never the validation shard), up to max_chars."""
    import pyarrow.parquet as pq

    store = open_store(data_uri)
    train, _val = list_shards(store)
    seen = 0
    for key in train:
        table = pq.read_table(io.BytesIO(store.read_bytes(key)), columns=["text"])
        for text in table.column("text").to_pylist():
            text = text[: max_chars - seen]
            seen += len(text)
            yield text
            if seen >= max_chars:
                return


def main(argv: Sequence[str] | None = None) -> int:
    masking.install()  # first: nothing printed from here on shows the store's credentials
    p = argparse.ArgumentParser(
        prog="python -m miniseries_trainer.tokenizer", description="Train the sweep's BPE tokenizer."
    )
    p.add_argument("--data", required=True, help="store URI of the parquet shards (file:// or s3://)")
    p.add_argument("--out", required=True, help="store URI to write the tokenizer into (a sweep's tokenizer/ prefix)")
    p.add_argument("--vocab-size", type=int, default=32768, help="vocabulary incl. special tokens (default 32768)")
    p.add_argument("--max-chars", type=int, default=2_000_000_000, help="train on at most this many characters")
    args = p.parse_args(argv)
    if args.max_chars < 1:
        p.error(f"--max-chars must be >= 1, got {args.max_chars}")
    try:
        doc = train_bpe(iter_training_texts(args.data, args.max_chars), args.vocab_size)
        save_tokenizer(doc, args.out)
    except (ValueError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"tokenizer: {doc['vocab_size']} tokens -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
