"""How fast the run trains: tokens per second over the timed steps, and MFU against the device's peak."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import torch

#: Peak dense bf16 FLOP/s per device by name fragment (no sparsity), for MFU.
PEAK_FLOPS_BY_DEVICE = {"H100": 989e12, "H200": 989e12, "A100": 312e12}
#: CPU peak per thread when --peak-flops is not given: a modern x86 core's fp32 FMA
#: throughput (2 FMA units x 8 fp32 lanes x 2 FLOPs x ~3 GHz ~= 100 GFLOP/s). An
#: order-of-magnitude figure that keeps CPU MFU meaningful across machines.
CPU_PEAK_FLOPS_PER_THREAD = 100e9
#: The first steps of a process include compilation and warm-up: they are left out of throughput.
UNTIMED_STEPS = 3


def peak_flops_per_device(device: torch.device, override: float | None) -> float:
    if override:
        return override
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for fragment, flops in PEAK_FLOPS_BY_DEVICE.items():
            if fragment in name:
                return flops
        print(f"WARNING: unknown GPU {name!r}: MFU unavailable (pass --peak-flops)", file=sys.stderr)
        return float("nan")
    return CPU_PEAK_FLOPS_PER_THREAD * torch.get_num_threads()


@dataclass
class Throughput:
    """Training seconds and tokens of the timed steps of this process, all ranks together."""

    tokens_per_step: int
    flops_per_token: int
    peak_flops: float  # per device
    world: int
    seconds: float = 0.0
    tokens: int = 0

    def add(self, steps_before: int, seconds: float) -> None:
        """Count one step that took `seconds`, unless it is among this process's first UNTIMED_STEPS."""
        if steps_before >= UNTIMED_STEPS:
            self.seconds += seconds
            self.tokens += self.tokens_per_step

    @property
    def tokens_per_second(self) -> float | None:
        return self.tokens / self.seconds if self.seconds else None

    @property
    def mfu(self) -> float | None:
        """Model FLOPs utilisation: achieved FLOP/s over (ranks x peak FLOP/s)."""
        tps = self.tokens_per_second
        return self.flops_per_token * tps / (self.world * self.peak_flops) if tps else None
