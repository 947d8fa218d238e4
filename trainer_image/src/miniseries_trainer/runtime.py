"""Where the run executes: the device, this process's place among torchrun's ranks, and the numerics.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; a plain `python -m`
run is rank 0 of 1. Ranks talk over NCCL on CUDA and gloo on the CPU.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from miniseries_trainer import precision as numerics
from miniseries_trainer.flags import fail


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int
    world: int
    local_rank: int
    precision: str = "fp32"  # resolved by precision.resolve_precision: fp32, bf16 or fp8

    @property
    def master(self) -> bool:
        """Rank 0 writes what the run shares (manifest, progress, loss curve, results) and prints."""
        return self.rank == 0

    def print0(self, *args: Any, **kwargs: Any) -> None:
        if self.master:
            print(*args, **kwargs)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        # --precision auto: bf16 autocast on CUDA; plain fp32 on CPU (CPU bf16 matmuls are slow and less exact)
        return numerics.autocast(self.device, self.precision)

    def device_name(self) -> str:
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu"


def start_runtime(device_flag: str, precision_flag: str = "auto") -> Runtime:
    """Pick the device (--device auto: CUDA when visible) and its precision (--precision, refused where the
    hardware cannot), and join the process group when there are ranks."""
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device_flag == "auto":
        device_flag = "cuda" if torch.cuda.is_available() else "cpu"
    if device_flag == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: no CUDA device is visible (use --device cpu or auto)")
    device = torch.device("cuda", local_rank) if device_flag == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    precision = numerics.resolve_precision(precision_flag, device)
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, rank, world, local_rank, precision)


def set_numerics(runtime: Runtime, *, seed: int, deterministic: bool) -> None:
    if deterministic:
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.manual_seed(seed)  # the same on every rank: identical initial weights
    if runtime.device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True


def peak_memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def stop_runtime(runtime: Runtime) -> None:
    """Leave the process group together, so no rank exits while another still needs it."""
    if runtime.world > 1:
        dist.barrier()
        dist.destroy_process_group()
