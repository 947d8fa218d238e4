"""A tiny training run for the trainer tests: a real English corpus in text shards with a real BPE
(:func:`make_corpus`), and the trainer's command line and environment for a depth-1 run on it.

Small on purpose (the test box has 2 shared cores): the default corpus (the English prose
of the standard library, ~2.7 MB), a 512-token vocabulary, depth 1-2 models of width 32-64.
Nothing here imports torch; tests/trainer/conftest.py builds the corpus once per session.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tests.harness.binaries import REPO

VOCAB = 512


@dataclass(frozen=True)
class Corpus:
    shards_uri: str
    tokenizer_uri: str
    root: Path


def trainer_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{REPO / 'operator/src'}:{REPO / 'trainer_image/src'}"
    env["OMP_NUM_THREADS"] = "1"
    env.pop("MINISERIES_DEVICE", None)
    return env


def make_corpus(root: Path) -> Corpus:
    """~2.7 MB in shards of ~400k chars (6 training shards + 1 validation shard) and a BPE trained on them."""
    from miniseries.data.prepare import prepare
    from miniseries_trainer.tokenizer import iter_training_texts, save_tokenizer, train_bpe

    shards_uri = (root / "shards").as_uri()
    prepare(shards_uri, source="stdlib", shard_chars=400_000, val_shards=1)
    tokenizer_uri = (root / "tokenizer").as_uri()
    save_tokenizer(train_bpe(iter_training_texts(shards_uri, 400_000), VOCAB), tokenizer_uri)
    return Corpus(shards_uri, tokenizer_uri, root)


def train_argv(corpus: Corpus, store_dir: Path, **overrides: object) -> list[str]:
    """Flags for a tiny run; overrides use flag names with underscores."""
    flags: dict[str, object] = {
        "sweep": "t",
        "run": "d1",
        "depth": 1,
        "aspect_ratio": 64,
        "head_dim": 32,
        "vocab_size": VOCAB,
        "seq_len": 64,
        "target_tokens": 64 * 4 * 2 * 30,
        "total_batch_tokens": 64 * 4 * 2,
        "device_batch_size": 4,
        "warmup_steps": 2,
        "warmdown_ratio": 0.3,
        "checkpoint_every": 0,
        "keep_checkpoints": 2,
        "eval_tokens": 0,
        "seed": 7,
        "store": store_dir.as_uri(),
        "data": corpus.shards_uri,
        "tokenizer": corpus.tokenizer_uri,
        "metrics_port": 0,
        "device": "cpu",
        "resume": "auto",
        # a 512-token batch is tiny next to nanochat's 2^19: undo most of the sqrt batch scaling
        "matrix_lr": 0.5,
        "embedding_lr": 5.0,
        "unembedding_lr": 0.1,
    }
    flags.update(overrides)
    argv = []
    for k, v in flags.items():
        if v is True:
            argv.append(f"--{k.replace('_', '-')}")
        elif v is not None and v is not False:
            argv.append(f"--{k.replace('_', '-')}={v}")
    return argv
