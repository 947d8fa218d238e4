"""CORE evaluation speed on the real bundle, side by side with nanochat's core_eval on the same weights.

    python bench/core_eval.py [--depth 4 --aspect-ratio 64 --head-dim 64 --vocab-size 32768 --seq-len 1024
                               --max-per-task 16 --rounds 2 --nanochat DIR --bundle URI]

What is compared, exactly:
- one model: miniseries_trainer's GPT at the given shape, seeded init plus N(0, 0.05) noise on every
  weight (the trainer's init starts each block as the identity; the noise makes attention and every
  layer matter, so the per-task accuracies are a real check, not all ties);
- one tokenizer: a BPE of --vocab-size trained on the bundle's own text (seconds; no download);
- ours: `miniseries_trainer.core_eval.evaluate_core` (prefix-sharing rows, batches, lm_head only
  where scored) on the tasks present in the bundle, --max-per-task examples each;
- nanochat: `nanochat.core_eval.evaluate_task` from a checkout given by --nanochat (e.g.
  `git clone https://github.com/karpathy/nanochat DIR`; needs jinja2), called the way its `scripts/base_eval.py` calls it (data shuffled with Random(1337) and
  capped), with the same model object (through a two-line adapter: `max_seq_len`, and the tokenizer's
  `__call__(prompts, prepend)` / `get_bos_token_id`) - so both run the same weights and tokens;
- rounds alternate ours / nanochat in this one process (the same machine load for both); the
  fastest round of each is reported. examples/s = examples evaluated / wall seconds (tokenisation
  and prompt rendering included for both).
Per-task accuracies must be identical: nanochat returns a float32 mean, so they are compared as
counts of correct examples. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "operator/src"), str(REPO / "trainer_image/src")]
#: the reference data beside the checkout (../shared/data), or where MINISERIES_SHARED_DATA says
SHARED_DATA = Path(os.environ.get("MINISERIES_SHARED_DATA") or REPO.parent / "shared" / "data")
DEFAULT_BUNDLE = SHARED_DATA / "eval_bundle"


def build(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    import torch

    from miniseries_trainer.core_eval import load_bundle
    from miniseries_trainer.model import build_model, shape_from_flags
    from miniseries_trainer.tokenizer import Tokenizer, train_bpe

    bundle = load_bundle(args.bundle, allow_partial=True, max_per_task=args.max_per_task)

    def texts() -> Any:
        for task in bundle.tasks:
            for row in task.rows[:2000]:
                yield " ".join(" ".join(v) if isinstance(v, list) else str(v) for v in row.values())

    tok = Tokenizer(train_bpe(texts(), args.vocab_size))
    torch.manual_seed(0)
    shape = shape_from_flags(args)
    model = build_model(shape, args.device)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return bundle, tok, model.eval()


def run_ours(bundle: Any, tok: Any, model: Any, args: argparse.Namespace) -> tuple[float, dict[str, int]]:
    from miniseries_trainer.core_eval import evaluate_core

    t0 = time.perf_counter()
    result = evaluate_core(
        model,
        tok,
        bundle,
        device=args.device,
        max_per_task=args.max_per_task,
        max_seq_len=args.seq_len,
        allow_partial=True,
        log=lambda _s: None,
    )
    seconds = time.perf_counter() - t0
    return seconds, {t.task: round(t.accuracy * t.examples) for t in result.tasks}


def run_nanochat(bundle: Any, tok: Any, model: Any, args: argparse.Namespace) -> tuple[float, dict[str, int]]:
    import torch
    from nanochat.core_eval import evaluate_task  # type: ignore[import-not-found]

    class Tok:  # nanochat's tokenizer interface over ours (same tokens)
        def __call__(self, prompts: list[str], prepend: int | None = None) -> list[list[int]]:
            return [list(r) for r in tok.encode_batch(prompts, prepend_bos=True)]

        def get_bos_token_id(self) -> int:
            return int(tok.bos_token_id)

    class Model(torch.nn.Module):  # nanochat truncates to model.max_seq_len
        def __init__(self) -> None:
            super().__init__()
            self.inner, self.max_seq_len = model, args.seq_len

        def forward(self, idx: Any) -> Any:
            return self.inner(idx)

    adapter, counts = Model(), {}
    t0 = time.perf_counter()
    for task in bundle.tasks:
        data = list(task.rows)
        random.Random(1337).shuffle(data)  # as nanochat's base_eval.evaluate_core
        data = data[: args.max_per_task]
        meta = {
            "task_type": task.spec.task_type,
            "num_fewshot": task.spec.num_fewshot,
            "continuation_delimiter": task.spec.continuation_delimiter,
        }
        acc = evaluate_task(adapter, Tok(), data, args.device, meta)
        counts[task.spec.label] = round(acc * len(data))
    return time.perf_counter() - t0, counts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--aspect-ratio", type=int, default=64)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--vocab-size", type=int, default=32768)
    p.add_argument("--seq-len", type=int, default=1024, help="prompts are truncated on the left to this")
    p.add_argument("--max-per-task", type=int, default=16, help="examples per task (>= 11: shots come from them)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds; the fastest of each is reported")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--bundle",
        default=DEFAULT_BUNDLE.as_uri() if DEFAULT_BUNDLE.is_dir() else None,
        help="the CORE eval bundle, a file:// or s3:// URI (default: eval_bundle/ in $MINISERIES_SHARED_DATA, "
        f"else ../shared/data beside the checkout; here {DEFAULT_BUNDLE}{'' if DEFAULT_BUNDLE.is_dir() else ', absent'})",
    )
    p.add_argument("--nanochat", default=None, help="a nanochat checkout (its nanochat/ package); omit: ours only")
    args = p.parse_args()
    if not args.bundle:
        p.error(f"--bundle is required: {DEFAULT_BUNDLE} does not exist (set MINISERIES_SHARED_DATA or pass --bundle)")
    if args.nanochat and not Path(args.nanochat, "nanochat", "core_eval.py").is_file():
        p.error(f"--nanochat {args.nanochat}: no nanochat/core_eval.py there; give a nanochat checkout")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.nanochat:
        sys.path.insert(0, args.nanochat)
    bundle, tok, model = build(args)
    examples = sum(min(len(t.rows), args.max_per_task) for t in bundle.tasks)
    ours, theirs = [], []
    ours_counts = theirs_counts = None
    # on a GPU both evaluate under bf16 autocast, as the trainer's CORE does (its runtime's autocast)
    cuda = str(args.device).startswith("cuda")
    for _ in range(args.rounds):
        with torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext():
            seconds, ours_counts = run_ours(bundle, tok, model, args)
            ours.append(seconds)
            if args.nanochat:
                seconds, theirs_counts = run_nanochat(bundle, tok, model, args)
                theirs.append(seconds)
    out: dict[str, Any] = {
        "bench": "core_eval",
        "device": args.device,
        "threads": torch.get_num_threads(),
        "depth": args.depth,
        "n_embd": model.shape.n_embd,
        "vocab_size": args.vocab_size,
        "seq_len": args.seq_len,
        "tasks": len(bundle.tasks),
        "max_per_task": args.max_per_task,
        "examples": examples,
        "ours_seconds": min(ours),
        "ours_examples_per_s": examples / min(ours),
    }
    if args.nanochat:
        out |= {
            "nanochat_seconds": min(theirs),
            "nanochat_examples_per_s": examples / min(theirs),
            "speedup": min(theirs) / min(ours),
            "identical_accuracies": ours_counts == theirs_counts,
            "correct_per_task": {t: [ours_counts[t], theirs_counts[t]] for t in ours_counts}  # type: ignore[index]
            if ours_counts != theirs_counts
            else ours_counts,
        }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
