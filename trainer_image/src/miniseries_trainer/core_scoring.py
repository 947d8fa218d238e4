"""Scoring CORE examples with a model: which choice has the lowest loss, or is the continuation greedy.

- multiple choice and schema: the choice (option) whose scored tokens have the lowest mean loss wins;
- language modeling: correct only if every continuation token is the greedy argmax.

How the numbers are computed (see `bench/core_eval.py`):
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

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from miniseries_trainer.core_prompts import Example, common_prefix
from miniseries_trainer.dist import rank_world


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


def is_correct(ex: Example, mean_loss: list[float], greedy: list[bool]) -> bool:
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
        correct[ex.index] = float(is_correct(ex, mean_loss[g : g + k].tolist(), greedy[g : g + k].tolist()))
    if world > 1:
        dist.all_reduce(correct)
    return float(correct.sum().item()) / len(examples)
