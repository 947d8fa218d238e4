"""The evaluations of a trained model: validation bits per byte, and CORE when a bundle is given.

Every rank takes part in both (the sums are added over ranks) and gets the same numbers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import Tensor

from miniseries.contract.results import CoreResult
from miniseries.contract.store import Store
from miniseries_trainer.bpb import evaluate_bpb
from miniseries_trainer.loader import validation_batches
from miniseries_trainer.runtime import Runtime
from miniseries_trainer.tokenizer import Tokenizer

if TYPE_CHECKING:
    from miniseries_trainer.core_bundle import Bundle


def load_validation(
    data_store: Store,
    val_key: str,
    tokenizer: Tokenizer,
    runtime: Runtime,
    *,
    batch_size: int,
    seq_len: int,
    eval_tokens: int,
) -> list[tuple[Tensor, Tensor]]:
    """This rank's validation batches, on the device; every rank keeps as many as the rank with fewest."""
    val = validation_batches(
        data_store,
        val_key,
        tokenizer,
        batch_size=batch_size,
        seq_len=seq_len,
        eval_tokens=eval_tokens,
        rank=runtime.rank,
        world_size=runtime.world,
    )
    n = torch.tensor(len(val))
    if runtime.world > 1:
        dist.all_reduce(n, op=dist.ReduceOp.MIN)  # every rank must run the same number of collectives
    return [(x.to(runtime.device), y.to(runtime.device)) for x, y in val[: int(n)]]


def validation_bpb(
    forward: Callable[..., Tensor], val: list[tuple[Tensor, Tensor]], tokenizer: Tokenizer, runtime: Runtime
) -> float:
    """Bits per byte of the model on the validation batches, over all ranks."""
    with runtime.autocast():
        return evaluate_bpb(forward, val, tokenizer.token_bytes(), runtime.device)  # type: ignore[arg-type]


def core_score(
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    bundle: Bundle,
    runtime: Runtime,
    *,
    max_per_task: int | None,
    max_seq_len: int,
    allow_partial: bool,
) -> CoreResult:
    """CORE (or a labelled partial score) of the model on the bundle loaded before training."""
    from miniseries_trainer.core_eval import evaluate_core

    # Every rank scores its share of the examples and all get the summed result. The eager
    # model, not the compiled one: evaluation batches vary in shape and would recompile.
    with runtime.autocast():
        return evaluate_core(
            model,
            tokenizer,
            bundle,
            device=runtime.device,
            max_per_task=max_per_task,
            max_seq_len=max_seq_len,
            allow_partial=allow_partial,
        )
