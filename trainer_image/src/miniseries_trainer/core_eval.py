"""The trainer's side of contract/core.py: CORE evaluation (DCLM's 22 in-context tasks), exactly as
nanochat defines it, batched, on the model.

    python -m miniseries_trainer.core_eval --bundle URI --checkpoint URI --tokenizer URI --depth 12 [...]
    python -m miniseries_trainer.core_eval --score-csv base_eval.csv      # re-score published accuracies

The definition follows karpathy/nanochat `nanochat/core_eval.py` + `scripts/base_eval.py`; each
part is a module:
- core_bundle.py: the bundle, read and checked whole before any compute is spent;
- core_prompts.py: nanochat's prompts (shuffle, few-shot draw, templates, left truncation), tokenised;
- core_scoring.py: the model's verdict per example, with the shared prompt computed once per example;
- miniseries.contract.core: the torch-free arithmetic (centered accuracy, CORE over the 22 tasks,
  partial results).
This module runs them over a bundle (`evaluate_core`) and is the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from miniseries.contract.core import (
    CORE_TASKS,
    DCLM_V1_RANDOM_BASELINES,
    CoreError,
    TaskAccuracy,
    missing_message,
    read_accuracy_csv,
    read_bundle_spec,
    score_tasks,
)
from miniseries.contract.results import CoreResult
from miniseries.contract.store import StoreError, open_store
from miniseries_trainer import masking
from miniseries_trainer.core_bundle import Bundle, load_bundle
from miniseries_trainer.core_prompts import EvalTokenizer, prepare_task
from miniseries_trainer.core_scoring import evaluate_task
from miniseries_trainer.dist import rank_world

__all__ = ["Bundle", "evaluate_core", "load_bundle", "main"]

#: Tokens (rows x padded length) per forward pass when the caller does not say.
DEFAULT_BATCH_TOKENS = {"cuda": 65536, "cpu": 4096}


def evaluate_core(
    model: Callable[..., Tensor] | Any,
    tokenizer: EvalTokenizer,
    bundle: str | Bundle,
    *,
    device: torch.device | str,
    max_per_task: int | None = None,
    max_seq_len: int | None = None,
    allow_partial: bool = False,
    batch_tokens: int | None = None,
    share_prefix: bool = True,
    log: Callable[[str], None] | None = None,
) -> CoreResult:
    """CORE of `model` on a bundle (URI or loaded). Every rank must call it under torch.distributed;
    each returns the same result. Raises CoreError for a bundle a user must fix."""
    t0 = time.time()
    device = torch.device(device)
    if isinstance(bundle, str):
        bundle = load_bundle(bundle, allow_partial=allow_partial, max_per_task=max_per_task)
    elif bundle.missing and not allow_partial:
        raise CoreError(missing_message(bundle.missing, f"eval bundle {bundle.uri}"))
    batch_tokens = batch_tokens or DEFAULT_BATCH_TOKENS.get(device.type, DEFAULT_BATCH_TOKENS["cpu"])
    rank, _ = rank_world()
    say = log if log is not None else (print if rank == 0 else (lambda _s: None))
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    accuracies = []
    for task in bundle.tasks:
        t1 = time.time()
        examples = prepare_task(task, tokenizer, max_per_task=max_per_task, max_seq_len=max_seq_len)
        acc = evaluate_task(
            model,
            examples,
            device=device,
            pad_id=tokenizer.bos_token_id,  # any id: padding is never attended to nor scored
            batch_tokens=batch_tokens,
            share_prefix=share_prefix,
        )
        accuracies.append(TaskAccuracy(task.spec.label, acc, len(examples), time.time() - t1))
        say(
            f"core: {task.spec.label:<34} {task.spec.num_fewshot:>2}-shot {task.spec.task_type:<17} "
            f"accuracy {acc:.4f} ({len(examples)} examples, {time.time() - t1:.1f} s)"
        )
    if was_training and hasattr(model, "train"):
        model.train()
    result = score_tasks(
        accuracies,
        bundle.spec.baselines,
        allow_partial=allow_partial,
        missing=bundle.missing,
        where=f"eval bundle {bundle.uri}",
        bundle_version=bundle.version,
        seconds=time.time() - t0,
    )
    if result.core is not None:
        say(f"core: CORE {result.core:.4f} over {len(CORE_TASKS)} tasks in {result.seconds:.0f} s")
    else:
        say(f"core: PARTIAL (not CORE): {len(result.tasks)} tasks, missing {', '.join(result.missing_tasks)}")
    return result


# -----------------------------------------------------------------------------
# Command line


def score_csv(path: str, bundle_uri: str | None) -> dict[str, Any]:
    """Re-score a per-task accuracy CSV (nanochat base_eval format); baselines from a bundle or DCLM v1."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise CoreError(f"--score-csv {path}: {e.strerror}") from None
    accuracies = read_accuracy_csv(text, path)
    baselines = read_bundle_spec(open_store(bundle_uri)).baselines if bundle_uri else DCLM_V1_RANDOM_BASELINES
    result = score_tasks(accuracies, baselines, where=path)
    published = next(
        (float(c[2]) for c in (line.split(",") for line in text.splitlines()) if c[0].strip() == "CORE" and len(c) > 2),
        None,
    )
    return {"source": path, "published_core": published, **result.to_dict()}


def load_checkpoint_model(args: argparse.Namespace, device: torch.device) -> Any:
    from miniseries_trainer.model import build_model, shape_from_flags

    raw = open_store(args.checkpoint).read_bytes("model.pt")
    state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    shape = shape_from_flags(args)
    model = build_model(shape, device)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CoreError(
            f"--checkpoint {args.checkpoint} does not fit --depth {args.depth} --aspect-ratio {args.aspect_ratio} "
            f"--head-dim {args.head_dim} --vocab-size {args.vocab_size}: {str(e).splitlines()[0]}"
        ) from None
    return model


def main(argv: Sequence[str] | None = None) -> int:
    masking.install()  # first: nothing printed from here on shows the store's credentials
    p = argparse.ArgumentParser(prog="python -m miniseries_trainer.core_eval", description=__doc__.split("\n")[0])
    p.add_argument("--score-csv", help="re-score a per-task accuracy CSV (columns Task, Accuracy, Centered)")
    p.add_argument("--bundle", help="eval bundle URI (file:// or s3://): core.yaml, eval_meta_data.csv, eval_data/")
    p.add_argument("--checkpoint", help="checkpoint URI (a .../ckpt/step_<n>/ prefix with model.pt)")
    p.add_argument("--tokenizer", help="tokenizer URI (the sweep's <sweep>/tokenizer/)")
    p.add_argument("--depth", type=int, help="the run's --depth")
    p.add_argument("--aspect-ratio", type=int, default=64)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=32768)
    p.add_argument("--seq-len", type=int, default=2048, help="prompts are truncated on the left to this length")
    p.add_argument("--max-per-task", type=int, default=None, help="at most this many examples per task")
    p.add_argument("--allow-partial", action="store_true", help="score the tasks present (result is not CORE)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--out", help="also write the JSON result to this file")
    args = p.parse_args(argv)
    try:
        if args.score_csv:
            out = score_csv(args.score_csv, args.bundle)
        else:
            need = [f for f in ("bundle", "checkpoint", "tokenizer", "depth") if getattr(args, f) is None]
            if need:
                p.error("give --score-csv FILE, or " + ", ".join(f"--{n}" for n in need) + " to evaluate a checkpoint")
            from miniseries_trainer.tokenizer import load_tokenizer

            device = torch.device(
                "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
            )
            bundle = load_bundle(args.bundle, allow_partial=args.allow_partial, max_per_task=args.max_per_task)
            tokenizer = load_tokenizer(args.tokenizer)
            model = load_checkpoint_model(args, device)
            ctx = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
            with ctx:
                result = evaluate_core(
                    model,
                    tokenizer,
                    bundle,
                    device=device,
                    max_per_task=args.max_per_task,
                    max_seq_len=args.seq_len,
                    allow_partial=args.allow_partial,
                    log=lambda s: print(s, file=sys.stderr),
                )
            out = {"checkpoint": args.checkpoint, **result.to_dict()}
    except (CoreError, StoreError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = json.dumps(out, indent=2)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
