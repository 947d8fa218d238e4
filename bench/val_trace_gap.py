"""The val-bpb trace's slice against the final evaluation, at the same weights (issue 32, fair traces).

For each finished run of a local sweep: its last checkpoint's val bpb on the final evaluation's tokens
(--eval-tokens, the first of the validation shard), on the first `slice` tokens of them (the trace's
slice before the change) and on `slice` tokens spread evenly over them (the trace's slice now,
data.validation_batches(keep=...)). Prints one JSON line per run.

    python bench/val_trace_gap.py --store miniseries-store --sweep tiny d1 d2 d3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from miniseries.contract.results import RunResults
from miniseries.contract.shapes import model_shape
from miniseries.contract.store import open_store
from miniseries_trainer.bpb import evaluate_bpb
from miniseries_trainer.checkpoint import load_checkpoint_uri
from miniseries_trainer.loader import validation_batches
from miniseries_trainer.model import build_model
from miniseries_trainer.shards import list_shards
from miniseries_trainer.tokenizer import load_tokenizer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", required=True, help="local store directory (the sweep under local/<sweep>/)")
    p.add_argument("--sweep", required=True)
    p.add_argument("runs", nargs="+")
    p.add_argument("--aspect-ratio", type=int, default=16)
    p.add_argument("--head-dim", type=int, default=16)
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-tokens", type=int, default=65536)
    p.add_argument("--slice", type=int, default=4096, help="the trace's slice (tokens)")
    a = p.parse_args()
    root = Path(a.store).resolve()
    data = open_store(f"file://{root}/data/shards")
    tok = load_tokenizer(f"file://{root}/local/{a.sweep}/tokenizer/")
    _, val = list_shards(data)
    kw = {"batch_size": a.batch_size, "seq_len": a.seq_len}
    for run in a.runs:
        res = RunResults.from_json((root / "local" / a.sweep / run / "results.json").read_text())
        ck = load_checkpoint_uri(f"file://{root}/local/{a.sweep}/{run}/ckpt/step_{res.steps:08d}/")
        shape = model_shape(res.depth, aspect_ratio=a.aspect_ratio, head_dim=a.head_dim, vocab_size=a.vocab_size,
                            sequence_len=a.seq_len)  # fmt: skip
        model = build_model(shape, "cpu")
        model.load_state_dict(ck.model)
        model.eval()
        tb = tok.token_bytes()
        keep = max(1, a.slice // (a.batch_size * a.seq_len))
        with torch.no_grad():
            final = evaluate_bpb(model, validation_batches(data, val, tok, eval_tokens=a.eval_tokens, **kw), tb, "cpu")
            first = evaluate_bpb(model, validation_batches(data, val, tok, eval_tokens=a.slice, **kw), tb, "cpu")
            spread = evaluate_bpb(model, validation_batches(data, val, tok, eval_tokens=a.eval_tokens, keep=keep,
                                                            **kw), tb, "cpu")  # fmt: skip
        print(json.dumps({"run": run, "step": ck.step, "final": final, "first_slice": first,
                          "first_gap": first / final - 1, "spread_slice": spread, "spread_gap": spread / final - 1}))  # fmt: skip


if __name__ == "__main__":
    main()
