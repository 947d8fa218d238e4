"""Our evaluators on nanochat's checkpoints (issue 31): val bpb on the same validation bytes as our own
models, and CORE, so that the two trainers are compared on one scale.

    python -m miniseries_trainer.adapters.nanochat_eval --nanochat-dir DIR --checkpoint URI --data URI \
        [--eval-bytes N] [--seq-len 128] [--bundle URI --core-max-per-task 20]
    python -m miniseries_trainer.adapters.nanochat_eval --ours --checkpoint URI --tokenizer URI --data URI \
        --depth 2 --aspect-ratio 16 --head-dim 16 --vocab-size 1024 --seq-len 128 [...]

prints one JSON object: {"val_bpb", "val_bytes", "val_tokens", "core"?}.

The same bytes: a trainer's own val bpb is over its first `--eval-tokens` tokens of the validation shard,
and two tokenizers cut the same number of tokens out of different amounts of text (nanochat's loader also
crops documents to fit its rows). Here both models read the validation shard's first documents up to
`--eval-bytes` UTF-8 bytes, whole, each tokenized by its own tokenizer as BOS + document, concatenated and
cut into rows of `--seq-len`; every token but the first BOS is a target once, so the denominator of bits
per byte (evaluate_bpb: bytes of the non-special targets) is those documents' bytes, the same number for
both models. CORE: our evaluate_core with nanochat's own tokenizer and model as a plain `model(ids) ->
logits` callable (no prefix sharing); nanochat's prompts, sampling and scoring are what ours reproduces
(bench/core_eval.py checks them against nanochat's `evaluate_task` on the same weights).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import torch
from torch import Tensor

from miniseries.contract.store import open_store
from miniseries.contract.trainer_kit import read_checkpoint
from miniseries_trainer.adapters.nanochat import TOKENIZER_FILES  # what the adapter stores in every checkpoint
from miniseries_trainer.bpb import evaluate_bpb


def validation_documents(data_uri: str, eval_bytes: int) -> list[str]:
    """The first documents of the validation shard (the last parquet, in both projects) up to eval_bytes."""
    store = open_store(data_uri.rstrip("/"))
    last = sorted(k for k in store.list("") if k.endswith(".parquet"))[-1]
    texts = pq.read_table(io.BytesIO(store.read_bytes(last)), columns=["text"]).column("text").to_pylist()
    docs, total = [], 0
    for text in texts:
        if total >= eval_bytes:
            break
        docs.append(text)
        total += len(text.encode())
    return docs


def document_rows(docs: Sequence[list[int]], bos: int, seq_len: int, batch_size: int) -> list[tuple[Tensor, Tensor]]:
    """BOS + tokens of each document, concatenated, as (x, y) rows of seq_len; the last row's missing
    targets are -1 (ignored), so every token after the first is a target exactly once."""
    stream = [t for doc in docs for t in (bos, *doc)]
    xs, ys = [], []
    for i in range(0, len(stream) - 1, seq_len):
        x = stream[i : i + seq_len]
        y = stream[i + 1 : i + seq_len + 1]
        xs.append(x + [bos] * (seq_len - len(x)))
        ys.append(y + [-1] * (seq_len - len(y)))
    return [(torch.tensor(xs[i : i + batch_size]), torch.tensor(ys[i : i + batch_size]))
            for i in range(0, len(xs), batch_size)]  # fmt: skip


class NanochatTokenizer:
    """nanochat's tokenizer (a pickled tiktoken Encoding) with what our evaluators call."""

    def __init__(self, files: dict[str, bytes]):
        self.encoding = pickle.loads(files["tokenizer.pkl"])  # nanochat's own file, from our store
        self.bos_token_id = self.encoding.encode_single_token("<|bos|>")
        self._token_bytes = torch.load(io.BytesIO(files["token_bytes.pt"]), map_location="cpu")

    def encode_batch(self, texts: Sequence[str], *, prepend_bos: bool = False) -> list[list[int]]:
        rows = self.encoding.encode_ordinary_batch(list(texts))
        return [[self.bos_token_id, *r] for r in rows] if prepend_bos else rows

    def token_bytes(self) -> Tensor:
        return self._token_bytes


def load_nanochat(nanochat: Path, files: dict[str, bytes]) -> tuple[Any, NanochatTokenizer]:
    """nanochat's model from its own checkpoint code (checkpoint_manager.build_model), on the CPU."""
    base = Path(tempfile.mkdtemp(prefix="nanochat-eval-"))
    (base / "tokenizer").mkdir()
    ckpt = base / "ckpt"
    ckpt.mkdir()
    for name, data in files.items():
        (base / "tokenizer" / name if name in TOKENIZER_FILES else ckpt / name).write_bytes(data)
    os.environ["NANOCHAT_BASE_DIR"] = str(base)  # where its get_tokenizer() looks
    sys.path.insert(0, str(nanochat))
    from nanochat.checkpoint_manager import build_model  # type: ignore[import-not-found]

    step = int(next(n for n in files if n.startswith("model_"))[len("model_") : -len(".pt")])
    model, _tok, _meta = build_model(str(ckpt), step, torch.device("cpu"), "eval")
    return model, NanochatTokenizer(files)


def load_ours(args: argparse.Namespace) -> tuple[Any, Any]:
    from miniseries_trainer.core_eval import load_checkpoint_model
    from miniseries_trainer.tokenizer import load_tokenizer

    return load_checkpoint_model(args, torch.device("cpu")).eval(), load_tokenizer(args.tokenizer)


def evaluate(model: Any, tok: Any, args: argparse.Namespace) -> dict[str, Any]:
    docs = validation_documents(args.data, args.eval_bytes)
    tokens = tok.encode_batch(docs)
    rows = document_rows(tokens, tok.bos_token_id, args.seq_len, args.batch_size)
    out: dict[str, Any] = {
        "val_bpb": evaluate_bpb(model, rows, tok.token_bytes(), "cpu"),
        "val_bytes": sum(len(d.encode()) for d in docs), "val_documents": len(docs),
        "val_tokens": sum(len(t) for t in tokens),
    }  # fmt: skip
    if args.bundle:
        from miniseries_trainer.core_eval import evaluate_core

        res = evaluate_core(model, tok, args.bundle, device="cpu", max_per_task=args.core_max_per_task,
                            max_seq_len=args.seq_len, allow_partial=True, log=lambda _s: None)  # fmt: skip
        out["core"] = res.core
        out["core_partial"] = res.partial
        # A partial bundle gives no CORE (it is never shown as one), but the tasks it has still compare
        # two models: the mean centered accuracy over them, labelled with how many there were.
        out["core_tasks"] = len(res.tasks)
        out["centered_mean"] = sum(t.centered for t in res.tasks) / len(res.tasks) if res.tasks else None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m miniseries_trainer.adapters.nanochat_eval", description=__doc__.split("\n")[0]
    )
    p.add_argument("--checkpoint", required=True, help="a contract checkpoint URI (.../ckpt/step_<n>/)")
    p.add_argument("--data", required=True, help="the sweep's shards (the last one is validation)")
    p.add_argument("--nanochat-dir", type=Path, help="nanochat's checkout: the checkpoint is a nanochat one")
    p.add_argument("--ours", action="store_true", help="the checkpoint is the built-in trainer's (needs the shape)")
    p.add_argument("--tokenizer", help="--ours: the sweep's tokenizer URI")
    for flag in ("--depth", "--aspect-ratio", "--head-dim", "--vocab-size"):
        p.add_argument(flag, type=int)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--eval-bytes", type=int, default=262144, help="validation bytes (whole documents, first ones)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--bundle", help="CORE eval bundle URI (absent: no CORE)")
    p.add_argument("--core-max-per-task", type=int, default=None)
    args = p.parse_args(argv)
    if args.ours == bool(args.nanochat_dir):
        p.error("give exactly one of --nanochat-dir (a nanochat checkpoint) and --ours")
    torch.set_grad_enabled(False)
    if args.ours:
        model, tok = load_ours(args)
    else:
        model, tok = load_nanochat(
            args.nanochat_dir.resolve(), read_checkpoint(open_store(args.checkpoint.rstrip("/")), "").files
        )
    print(json.dumps(evaluate(model, tok, args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
