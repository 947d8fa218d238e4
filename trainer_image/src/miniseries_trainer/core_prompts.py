"""CORE prompts, exactly as nanochat renders them, tokenised: one `Example` per task row.

- task data is shuffled with random.Random(1337) and capped at max_per_task;
- example idx gets num_fewshot shots drawn by random.Random(1234 + idx) from the (capped) task
  data without idx itself, rendered as `shot{delimiter}answer\\n\\n` before the example
  (nanochat's Jinja templates, written out as strings);
- every prompt is BOS + tokens; a prompt longer than the model's sequence length loses tokens
  on the left;
- the scored span of each choice: multiple choice from the first token where the prompts differ,
  schema the shared continuation (the common token suffix), language modeling the continuation.
All prompts of a task are tokenised once, in one threaded tiktoken batch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from miniseries.contract.core import CoreError
from miniseries_trainer.core_bundle import Task

#: nanochat's seeds: the data shuffle before capping, and the few-shot draw of example idx.
SHUFFLE_SEED = 1337
FEWSHOT_SEED = 1234


class EvalTokenizer(Protocol):
    bos_token_id: int

    def encode_batch(self, texts: Sequence[str], *, prepend_bos: bool = False) -> list[list[int]]: ...


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
