"""The learning-rate schedule: one definition for the trainer (which applies it) and the
forecast (which integrates it). Torch-free.

The multiplier scales every optimizer group's base learning rate: a linear warmup over
`warmup_steps`, constant 1, then a linear warmdown to 0 over the last `warmdown_ratio` of
the steps (nanochat's warmup-stable-decay schedule).
"""

from __future__ import annotations


def lr_multiplier(step: int, steps: int, warmup_steps: int, warmdown_ratio: float) -> float:
    """The multiplier applied at 0-based `step` of a run of `steps` optimizer steps."""
    warmdown_steps = round(warmdown_ratio * steps)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if step < steps - warmdown_steps:
        return 1.0
    return max(0.0, (steps - step) / warmdown_steps)


def lr_multipliers(steps: int, warmup_steps: int, warmdown_ratio: float) -> list[float]:
    """The whole schedule: element i is the multiplier of 0-based step i (logged as step i + 1)."""
    return [lr_multiplier(i, steps, warmup_steps, warmdown_ratio) for i in range(steps)]


def warmdown_start(steps: int, warmdown_ratio: float) -> int:
    """The first 0-based step whose multiplier falls below 1 (== steps when there is no warmdown)."""
    return steps - round(warmdown_ratio * steps)
