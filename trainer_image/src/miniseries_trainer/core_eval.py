"""CORE evaluation (DCLM's 22 in-context tasks), exactly as nanochat defines it, batched.

    python -m miniseries_trainer.core_eval --bundle URI --checkpoint URI --tokenizer URI --depth 12 [...]
    python -m miniseries_trainer.core_eval --score-csv base_eval.csv      # re-score published accuracies

The definition follows karpathy/nanochat `nanochat/core_eval.py` + `scripts/base_eval.py`:
- task data is shuffled with random.Random(1337) and capped at max_per_task;
- example idx gets num_fewshot shots drawn by random.Random(1234 + idx) from the (capped) task
  data without idx itself, rendered as `shot{delimiter}answer\\n\\n` before the example;
- every prompt is BOS + tokens; a prompt longer than the model's sequence length loses tokens
  on the left;
- multiple choice: the choices share the prompt, the choice whose continuation tokens (from the
  first token where the prompts differ) have the lowest mean loss wins;
- schema: the options differ in context and share the continuation (the common token suffix),
  the option under which that continuation has the lowest mean loss wins;
- language modeling: correct only if every continuation token is the greedy argmax.
The scoring arithmetic (centered accuracy, CORE over the 22 tasks, partial results) is torch-free
in `miniseries.contract.core`.

What is different is only how the numbers are computed (see `bench/core_eval.py`):
- all prompts of a task are rendered and tokenised once, in one threaded tiktoken batch;
- one example = one row: the prompts' common token prefix once, then each choice's remaining
  tokens as a branch that attends to the prefix and to itself (a tree attention mask, positions
  continuing after the prefix). For 10-shot multiple choice that computes the long shared prompt
  once instead of once per choice;
- rows are sorted by length and batched up to a token budget, so padding is small;
- the lm_head runs only at the positions that are scored, not at every position;
- under torch.distributed every rank takes every world-th example (by length) and the
  per-example results are summed over ranks.
Any callable `model(input_ids) -> logits` works (one row per prompt, no prefix sharing); a model
with `hidden_states(idx, positions, attn_mask)` and `logits(h)` (miniseries' GPT) gets the fast path.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from miniseries.contract.core import (
    CORE_TASKS,
    DCLM_V1_RANDOM_BASELINES,
    BundleSpec,
    CoreError,
    TaskAccuracy,
    TaskSpec,
    bundle_hash,
    missing_message,
    read_accuracy_csv,
    read_bundle_spec,
    score_tasks,
)
from miniseries.contract.results import CoreResult
from miniseries.contract.store import StoreError, open_store
from miniseries_trainer.dist import rank_world

#: nanochat's seeds: the data shuffle before capping, and the few-shot draw of example idx.
SHUFFLE_SEED = 1337
FEWSHOT_SEED = 1234
#: Tokens (rows x padded length) per forward pass when the caller does not say.
DEFAULT_BATCH_TOKENS = {"cuda": 65536, "cpu": 4096}


class EvalTokenizer(Protocol):
    bos_token_id: int

    def encode_batch(self, texts: Sequence[str], *, prepend_bos: bool = False) -> list[list[int]]: ...


# -----------------------------------------------------------------------------
# The bundle: settings, task rows, version


@dataclass(frozen=True)
class Task:
    spec: TaskSpec
    rows: list[dict[str, Any]]  # in file order


@dataclass(frozen=True)
class Bundle:
    uri: str
    spec: BundleSpec
    tasks: list[Task]  # the present ones, in core.yaml order
    missing: list[str]  # CORE tasks without a data file (or not in core.yaml)
    version: str  # sha256 over the files read


def _check_row(row: Any, task_type: str) -> str | None:
    """What is wrong with one task row, or None (the three row formats of DCLM's bundle)."""
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"

    def is_str_list(v: Any) -> bool:
        return isinstance(v, list) and len(v) > 0 and all(isinstance(x, str) for x in v)

    def gold_ok(options: list[str]) -> bool:
        gold = row.get("gold")
        return isinstance(gold, int) and not isinstance(gold, bool) and 0 <= gold < len(options)

    if task_type == "multiple_choice":
        if not isinstance(row.get("query"), str) or not is_str_list(row.get("choices")) or not gold_ok(row["choices"]):
            return "a multiple_choice row needs query (string), choices (non-empty list of strings), gold (index)"
    elif task_type == "schema":
        ok = is_str_list(row.get("context_options")) and isinstance(row.get("continuation"), str)
        if not ok or not gold_ok(row["context_options"]):
            return "a schema row needs context_options (non-empty list of strings), continuation (string), gold (index)"
    elif not isinstance(row.get("context"), str) or not isinstance(row.get("continuation"), str):
        return "a language_modeling row needs context (string) and continuation (string)"
    return None


def parse_task_rows(raw: bytes, task_type: str, where: str) -> list[dict[str, Any]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CoreError(f"{where} is not UTF-8 text: {e}") from None
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise CoreError(f"{where} line {n}: not valid JSON ({e.msg} at column {e.colno})") from None
        problem = _check_row(row, task_type)
        if problem:
            raise CoreError(f"{where} line {n}: {problem}")
        rows.append(row)
    if not rows:
        raise CoreError(f"{where} has no rows")
    return rows


def load_bundle(uri: str, *, allow_partial: bool = False, max_per_task: int | None = None) -> Bundle:
    """Read and check the whole bundle up front: a mistake is found before any compute is spent."""
    try:
        store = open_store(uri)
    except (StoreError, ValueError) as e:
        raise CoreError(f"eval bundle URI {uri!r}: {e} (use file:///path or s3://bucket/prefix)") from None
    spec = read_bundle_spec(store)
    files = {key: store.read_bytes(key) for key in ("core.yaml", "eval_meta_data.csv")}
    listed = {t.label for t in spec.tasks}
    missing = [t for t in CORE_TASKS if t not in listed]
    described = [f"{t} (not in core.yaml)" for t in missing]
    tasks = []
    for ts in spec.tasks:
        if not store.exists(ts.key):
            missing += [ts.label] if ts.label in CORE_TASKS else []
            described.append(f"{ts.label} (no {ts.key})")
            continue
        files[ts.key] = raw = store.read_bytes(ts.key)
        tasks.append(Task(ts, parse_task_rows(raw, ts.task_type, f"{store.uri}/{ts.key}")))
    if described and not allow_partial:
        raise CoreError(missing_message(described, f"eval bundle {store.uri}"))
    if max_per_task is not None:
        # nanochat draws the shots from the capped examples, so a cap must leave room for them
        need = max(t.spec.num_fewshot for t in tasks) + 1 if tasks else 1
        if max_per_task < need:
            raise CoreError(
                f"max examples per CORE task {max_per_task} is too small: the bundle has a "
                f"{need - 1}-shot task, whose shots come from the evaluated examples; use at least {need}"
            )
    return Bundle(store.uri, spec, tasks, sorted(missing, key=CORE_TASKS.index), bundle_hash(files))


# -----------------------------------------------------------------------------
# Prompts (nanochat's Jinja templates, written out as strings)


class _AllBut(Sequence[int]):
    """range(n) without `skip`, without building the list: random.sample draws from it exactly
    what it draws from `[i for i in range(n) if i != skip]` (nanochat), in O(k) instead of O(n)."""

    def __init__(self, n: int, skip: int):
        self.n, self.skip = n, skip

    def __len__(self) -> int:
        return self.n - 1

    def __getitem__(self, j: int) -> int:  # type: ignore[override]
        if not 0 <= j < self.n - 1:
            raise IndexError(j)
        return j + (j >= self.skip)


def fewshot_indices(n: int, idx: int, k: int) -> list[int]:
    if k == 0:
        return []
    return random.Random(FEWSHOT_SEED + idx).sample(_AllBut(n, idx), k)


def render_prompts(task_type: str, item: dict[str, Any], delimiter: str, shots: list[dict[str, Any]]) -> list[str]:
    """The prompts of one example: one per choice/option, or (without, with) continuation for LM."""
    if task_type == "multiple_choice":
        prefix = "".join(f"{s['query']}{delimiter}{s['choices'][s['gold']]}\n\n" for s in shots)
        return [f"{prefix}{item['query']}{delimiter}{choice}" for choice in item["choices"]]
    if task_type == "schema":
        prefix = "".join(f"{s['context_options'][s['gold']]}{delimiter}{s['continuation']}\n\n" for s in shots)
        return [f"{prefix}{option}{delimiter}{item['continuation']}" for option in item["context_options"]]
    # LM: contexts are trimmed (some carry trailing whitespace), and the prompt without the
    # continuation is stripped so that its tokens are a clean prefix of the prompt with it.
    prefix = "".join(f"{s['context'].strip()}{delimiter}{s['continuation']}\n\n" for s in shots)
    head = f"{prefix}{item['context'].strip()}{delimiter}"
    return [head.strip(), head + item["continuation"]]


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    n = min(len(s) for s in seqs)
    for i in range(n):
        if any(s[i] != seqs[0][i] for s in seqs):
            return i
    return n


def common_suffix(seqs: Sequence[Sequence[int]]) -> int:
    return common_prefix([s[::-1] for s in seqs])


@dataclass
class Example:
    """One example, tokenised: a sequence per choice, and the token span [start, end) scored in each."""

    index: int
    seqs: list[list[int]]
    spans: list[tuple[int, int]]
    gold: int  # -1 for language modeling

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self.seqs)


def spans_for(task_type: str, tokens: list[list[int]]) -> tuple[list[list[int]], list[tuple[int, int]]]:
    if task_type == "multiple_choice":  # the choices start where the prompts first differ
        start = common_prefix(tokens)
        return tokens, [(start, len(t)) for t in tokens]
    if task_type == "schema":  # the shared continuation is the common suffix
        n = common_suffix(tokens)
        return tokens, [(len(t) - n, len(t)) for t in tokens]
    without, with_ = tokens
    # nanochat asserts that `without` is a prefix of `with`; where a tokenizer merges across the
    # boundary, score from the first differing token instead of failing the whole evaluation.
    start = common_prefix([without, with_])
    return [with_], [(start, len(with_))]


def truncate_left(seq: list[int], span: tuple[int, int], max_len: int | None) -> tuple[list[int], tuple[int, int]]:
    """Keep the last max_len tokens (the continuation matters, the oldest shots matter least)."""
    if max_len is None or len(seq) <= max_len:
        return seq, span
    crop = len(seq) - max_len
    # the first kept token has no prediction: at least it is never scored
    return seq[crop:], (max(span[0] - crop, 1), max(span[1] - crop, 1))


def prepare_task(
    task: Task, tokenizer: EvalTokenizer, *, max_per_task: int | None, max_seq_len: int | None
) -> list[Example]:
    ts = task.spec
    data = list(task.rows)
    random.Random(SHUFFLE_SEED).shuffle(data)
    if max_per_task is not None:
        data = data[:max_per_task]
    if len(data) <= ts.num_fewshot and ts.num_fewshot > 0:
        raise CoreError(f"task {ts.label} has {len(data)} examples, too few for {ts.num_fewshot} shots each")
    prompts, counts = [], []
    for idx, item in enumerate(data):
        shots = [data[i] for i in fewshot_indices(len(data), idx, ts.num_fewshot)]
        p = render_prompts(ts.task_type, item, ts.continuation_delimiter, shots)
        prompts.extend(p)
        counts.append(len(p))
    tokens = tokenizer.encode_batch(prompts, prepend_bos=True)
    examples, at = [], 0
    for idx, (item, k) in enumerate(zip(data, counts, strict=True)):
        seqs, spans = spans_for(ts.task_type, tokens[at : at + k])
        at += k
        cut = [truncate_left(s, sp, max_seq_len) for s, sp in zip(seqs, spans, strict=True)]
        gold = item["gold"] if ts.task_type != "language_modeling" else -1
        examples.append(Example(idx, [c[0] for c in cut], [c[1] for c in cut], gold))
    return examples


# -----------------------------------------------------------------------------
# Rows: one example per row, its common prefix once and each choice as a branch


@dataclass
class Row:
    tokens: list[int]
    positions: list[int]
    branch: list[int]  # -1: the shared prefix; k: choice k's own tokens
    # per scored token: (index in the row of the position that predicts it, the target token, group)
    scored: list[tuple[int, int, int]]


def build_row(ex: Example, first_group: int, share_prefix: bool) -> list[Row]:
    """Rows for one example; groups first_group + k collect the scored tokens of choice k."""
    if not share_prefix:
        return [
            Row(
                seq,
                list(range(len(seq))),
                [-1] * len(seq),
                [(q, seq[q + 1], first_group + k) for q in range(s - 1, e - 1)],
            )
            for k, (seq, (s, e)) in enumerate(zip(ex.seqs, ex.spans, strict=True))
        ]
    p = common_prefix(ex.seqs) if len(ex.seqs) > 1 else len(ex.seqs[0])
    tokens, positions, branch = list(ex.seqs[0][:p]), list(range(p)), [-1] * p
    scored = []
    for k, (seq, (s, e)) in enumerate(zip(ex.seqs, ex.spans, strict=True)):
        base = len(tokens) - p  # where this branch's position p lands in the row, minus p
        tokens += seq[p:]
        positions += range(p, len(seq))
        branch += [k] * (len(seq) - p)
        for q in range(s - 1, e - 1):
            scored.append((q if q < p else base + q, seq[q + 1], first_group + k))
    return [Row(tokens, positions, branch, scored)]


def batches(rows: list[Row], batch_tokens: int) -> Iterator[list[Row]]:
    """Rows sorted by length (little padding), as many per batch as fit batch_tokens padded."""
    rows = sorted(rows, key=lambda r: len(r.tokens))
    batch: list[Row] = []
    for row in rows:
        if batch and (len(batch) + 1) * len(row.tokens) > batch_tokens:
            yield batch
            batch = []
        batch.append(row)
    if batch:
        yield batch


def has_fast_path(model: Any) -> bool:
    """miniseries' GPT: packed rows with positions and a mask, and the lm_head only where scored."""
    return hasattr(model, "hidden_states") and hasattr(model, "logits")


@torch.inference_mode()
def score_rows(
    model: Any, rows: list[Row], n_groups: int, *, device: torch.device, pad_id: int, batch_tokens: int
) -> tuple[Tensor, Tensor]:
    """Mean loss and all-tokens-greedy of every group (a choice's scored tokens), on the CPU."""
    loss_sum = torch.zeros(n_groups, dtype=torch.float64)
    count = torch.zeros(n_groups, dtype=torch.float64)
    wrong = torch.zeros(n_groups, dtype=torch.float64)
    fast = has_fast_path(model)
    for batch in batches(rows, batch_tokens):
        T = max(len(r.tokens) for r in batch)
        idx = torch.full((len(batch), T), pad_id, dtype=torch.long)
        pos = torch.zeros((len(batch), T), dtype=torch.long)
        br = torch.full((len(batch), T), -2, dtype=torch.long)  # padding: a branch of its own
        sel_b, sel_t, targets, groups = [], [], [], []
        for b, r in enumerate(batch):
            n = len(r.tokens)
            idx[b, :n] = torch.tensor(r.tokens)
            pos[b, :n] = torch.tensor(r.positions)
            br[b, :n] = torch.tensor(r.branch)
            for t, target, g in r.scored:
                sel_b.append(b)
                sel_t.append(t)
                targets.append(target)
                groups.append(g)
        if not targets:
            continue
        idx = idx.to(device)
        sel = (torch.tensor(sel_b, device=device), torch.tensor(sel_t, device=device))
        if fast:
            if (br >= 0).any():
                # token i sees token j: j not later in position, and j in the prefix or i's own branch
                pos, br = pos.to(device), br.to(device)
                causal = pos[:, None, :] <= pos[:, :, None]
                same = (br[:, None, :] == -1) | (br[:, None, :] == br[:, :, None])
                h = model.hidden_states(idx, positions=pos, attn_mask=(causal & same)[:, None])
            else:  # no branches (language modeling): the plain causal forward, positions 0..T-1
                h = model.hidden_states(idx)
            logits = model.logits(h[sel])
        else:
            logits = model(idx)[sel]
        logits = logits.float()
        tgt = torch.tensor(targets, device=device)
        losses = F.cross_entropy(logits, tgt, reduction="none").double().cpu()
        miss = (logits.argmax(dim=-1) != tgt).double().cpu()
        g = torch.tensor(groups)
        loss_sum.index_add_(0, g, losses)
        count.index_add_(0, g, torch.ones_like(losses))
        wrong.index_add_(0, g, miss)
    return loss_sum / count, wrong == 0  # an empty group: nan loss, "all correct" (as nanochat)


def decide(ex: Example, mean_loss: list[float], greedy: list[bool]) -> bool:
    if ex.gold < 0:
        return greedy[0]
    # the first lowest mean loss, comparing like Python's min() (a nan never wins unless first)
    best = 0
    for k, loss in enumerate(mean_loss):
        if loss < mean_loss[best]:
            best = k
    return best == ex.gold


def evaluate_task(
    model: Any,
    examples: list[Example],
    *,
    device: torch.device,
    pad_id: int,
    batch_tokens: int,
    share_prefix: bool = True,
) -> float:
    """Accuracy over the examples; under torch.distributed each rank scores its share, then all sum."""
    rank, world = rank_world()
    # every world-th example by length: the ranks get equal work
    mine = sorted(examples, key=lambda e: e.tokens)[rank::world]
    share_prefix = share_prefix and has_fast_path(model)  # a plain callable only knows causal rows
    rows, first, group = [], [], 0
    for ex in mine:
        first.append(group)
        rows += build_row(ex, group, share_prefix)
        group += len(ex.seqs)
    mean_loss, greedy = score_rows(model, rows, group, device=device, pad_id=pad_id, batch_tokens=batch_tokens)
    correct = torch.zeros(len(examples), dtype=torch.float64, device=device)
    for ex, g in zip(mine, first, strict=True):
        k = len(ex.seqs)
        correct[ex.index] = float(decide(ex, mean_loss[g : g + k].tolist(), greedy[g : g + k].tolist()))
    if world > 1:
        dist.all_reduce(correct)
    return float(correct.sum().item()) / len(examples)


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
