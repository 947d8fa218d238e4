"""The learning-rate schedule: one definition for the trainer (which applies it) and the
forecast (which integrates it). Torch-free.

The multiplier scales every optimizer group's base learning rate: a linear warmup over
`warmup_steps`, constant 1, then a warmdown to 0 over the last `warmdown_ratio` of the
steps (nanochat's warmup-stable-decay schedule).

The warmdown has a shape: `linear` (nanochat's: 1 - p) or `sqrt` (Hägele et al. 2024's
(1-sqrt) cooldown: 1 - sqrt(p)), p going from 0 at the warmdown's first step to 1 at the end.
A WSD sweep (spec.training.mode wsd) gives the length of the warmdown in steps instead of as
a ratio (`warmdown_steps`): its trunk has none (constant to its end), and each branch cools
down over exactly its own steps after the trunk checkpoint it starts from.
"""

from __future__ import annotations

import math
from typing import Literal, cast

#: The warmdown shapes: nanochat's linear one and Hägele et al.'s (1-sqrt) cooldown.
Shape = Literal["linear", "sqrt"]
SHAPES: tuple[Shape, ...] = ("linear", "sqrt")


def _warmdown_steps(steps: int, warmdown_ratio: float, warmdown_steps: int | None) -> int:
    return round(warmdown_ratio * steps) if warmdown_steps is None else min(warmdown_steps, steps)


def lr_multiplier(
    step: int,
    steps: int,
    warmup_steps: int,
    warmdown_ratio: float,
    *,
    shape: Shape = "linear",
    warmdown_steps: int | None = None,
) -> float:
    """The multiplier applied at 0-based `step` of a run of `steps` optimizer steps.

    `warmdown_steps`, when given, replaces `warmdown_ratio` (the warmdown is the last that many steps)."""
    wd = _warmdown_steps(steps, warmdown_ratio, warmdown_steps)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if step < steps - wd:
        return 1.0
    left = max(0.0, (steps - step) / wd)  # 1 at the warmdown's first step, 1/wd at the last
    if shape == "sqrt":
        return max(0.0, 1.0 - math.sqrt(1.0 - left))
    return left


def lr_multipliers(
    steps: int, warmup_steps: int, warmdown_ratio: float, *, shape: Shape = "linear", warmdown_steps: int | None = None
) -> list[float]:
    """The whole schedule: element i is the multiplier of 0-based step i (logged as step i + 1)."""
    return [
        lr_multiplier(i, steps, warmup_steps, warmdown_ratio, shape=shape, warmdown_steps=warmdown_steps)
        for i in range(steps)
    ]


def warmdown_start(steps: int, warmdown_ratio: float, *, warmdown_steps: int | None = None) -> int:
    """The first 0-based step whose multiplier falls below 1 (== steps when there is no warmdown)."""
    return steps - _warmdown_steps(steps, warmdown_ratio, warmdown_steps)


def cooldown_steps(steps: int, cooldown_fraction: float) -> int:
    """Steps of a WSD branch's cooldown: `cooldown_fraction` of its whole length, at least 1."""
    return max(1, round(cooldown_fraction * steps))


def schedule_record(
    steps: int, warmup_steps: int, warmdown_ratio: float, *, shape: Shape = "linear", warmdown_steps: int | None = None
) -> dict[str, object]:
    """What results.json's provenance.lr_schedule says about a run's schedule: enough to rebuild it
    (`recorded_multipliers`), and its warmdown's shape and effective fraction, which two rows must
    share to be one curve family (a wsd branch's fraction is its cooldownFraction up to rounding)."""
    wd = _warmdown_steps(steps, warmdown_ratio, warmdown_steps)
    return {
        "kind": f"warmup-stable-decay ({'1-sqrt' if shape == 'sqrt' else 'linear'})",
        "warmup_steps": warmup_steps,
        "warmdown_ratio": warmdown_ratio,
        "warmdown_shape": shape,
        "warmdown_steps": wd,
        "warmdown_fraction": round(wd / steps, 4) if steps else 0.0,
    }


def recorded_multipliers(
    steps: int, record: dict[str, object], *, warmup_steps: int | None = None, warmdown_ratio: float | None = None
) -> list[float] | None:
    """A finished run's whole schedule from its provenance.lr_schedule (`schedule_record`); rows written
    before the shape was recorded were linear over warmdown_ratio. `warmup_steps`/`warmdown_ratio` stand in
    for what the record lacks (the spec's); None when neither says."""
    warmup = record.get("warmup_steps", warmup_steps)
    ratio = record.get("warmdown_ratio", warmdown_ratio)
    if not isinstance(warmup, int | float) or not isinstance(ratio, int | float):
        return None
    shape = record.get("warmdown_shape", "linear")
    if shape not in SHAPES:
        raise ValueError(f"lr_schedule.warmdown_shape {shape!r} is not one of {SHAPES}")
    wd = record.get("warmdown_steps")  # the effective count: the same schedule as the ratio's when linear
    return lr_multipliers(steps, int(warmup), float(ratio), shape=cast(Shape, shape),
                          warmdown_steps=int(wd) if isinstance(wd, int | float) else None)  # fmt: skip
