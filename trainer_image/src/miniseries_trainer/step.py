"""One optimizer step: gradient accumulation over micro-batches, gradients averaged over ranks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist


def all_reduce_gradients(model: torch.nn.Module, world: int) -> None:
    """Average gradients over ranks in one flat buffer (gloo has no AVG, so SUM / world)."""
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def train_step(
    model: Callable[..., torch.Tensor],
    params_owner: torch.nn.Module,
    optimizers: list[torch.optim.Optimizer],
    micro_batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    grad_accum: int,
    autocast: Callable[[], contextlib.AbstractContextManager[Any]],
    world: int,
) -> torch.Tensor:
    """One optimizer step over grad_accum micro-batches; returns the mean loss over all ranks."""
    total: torch.Tensor | None = None
    for _ in range(grad_accum):
        x, y = next(micro_batches)
        with autocast():
            loss = model(x, y)
        (loss / grad_accum).backward()
        # stays on the device: no host sync per micro-batch (the caller syncs once per step)
        total = loss.detach().float() if total is None else total + loss.detach().float()
    assert total is not None
    total = total / grad_accum
    if world > 1:
        all_reduce_gradients(params_owner, world)
        dist.all_reduce(total)
        total = total / world
    for opt in optimizers:
        opt.step()
    params_owner.zero_grad(set_to_none=True)
    return total
