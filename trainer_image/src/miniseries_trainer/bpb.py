"""Validation bits-per-byte: a tokenizer-independent loss, comparable across vocabularies.

bpb = sum of per-token cross-entropy (nats) / (ln 2 x sum of UTF-8 bytes of the target tokens).
Special tokens (BOS) have 0 bytes and are left out of both sums, as nanochat's
`loss_eval.evaluate_bpb` does. Under torch.distributed the sums are added over ranks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor


@torch.no_grad()
def evaluate_bpb(
    model: torch.nn.Module, batches: Iterable[tuple[Tensor, Tensor]], token_bytes: Tensor, device: torch.device | str
) -> float:
    token_bytes = token_bytes.to(device)
    nats = torch.zeros((), dtype=torch.float64, device=device)
    nbytes = torch.zeros((), dtype=torch.float64, device=device)
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        logits = model(x).float()
        loss = torch.nn.functional.cross_entropy(
            logits.view(-1, logits.size(-1)), y.view(-1), ignore_index=-1, reduction="none"
        )
        targets = y.view(-1)
        # ignored targets (-1) and special tokens (0 bytes) count in neither sum
        counted = torch.where(targets >= 0, token_bytes[targets.clamp(min=0)], 0)
        mask = counted > 0
        nats += loss[mask].double().sum()
        nbytes += counted[mask].double().sum()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(nats)
        dist.all_reduce(nbytes)
    if nbytes.item() == 0:
        return float("nan")
    return nats.item() / (math.log(2) * nbytes.item())
