"""This process's place in a torch.distributed group."""

from __future__ import annotations

import torch.distributed as dist


def rank_world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when no process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
