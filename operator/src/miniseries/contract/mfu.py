"""The MFU a plan assumes at each depth, until a GPU measures it: one small table, one interpolation.

The plan's wall time is FLOPs / (GPUs x peak x MFU). Small models reach a lower MFU than large ones
(the matmuls are smaller, the fixed per-step costs weigh more), so one constant overstates the speed
of d10 and understates d20. Each anchor below says where its number comes from. When
`bench/gpu_check.sh` has measured a depth on the sweep's GPU (bench/RESULTS.md), replace that depth's
anchor here with the measured MFU and its source: the plan, `miniseries plan` and the operator's
status.plan all read this table. A spec's `resources.assumedMfu` still overrides it for every depth.

MFU here is nanochat's: achieved FLOP/s counted as `shapes.flops_per_token` x tokens/s, over the
dense bf16 peak (H100 SXM 989e12), on 8 x H100 with torch.compile and bf16.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise


@dataclass(frozen=True)
class MfuAnchor:
    depth: int
    mfu: float
    source: str


#: Ascending in depth. Replace with bench/RESULTS.md rows as they are measured (gpu_check's `train` figure,
#: compiled, at the plan's device batch).
PLANNED_MFU: tuple[MfuAnchor, ...] = (
    MfuAnchor(12, 0.41, "nanochat dev/LOG.md 2026-01-12 (MTP), d12 baseline on 8xH100: MFU 41%"),
    MfuAnchor(18, 0.46, "nanochat dev/LOG.md 2026-02-19 (MoE), d18 dense baseline on 8xH100: MFU ~46%"),
    MfuAnchor(
        26,
        0.52,
        "nanochat dev/LOG.md 2026-02-02 (FP8), d26 bf16 baseline 630K tok/s on 8xH100; "
        "x shapes.flops_per_token(d26) 6.57e9 / (8 x 989e12) = 52% (its sliding windows did less "
        "attention work than this full-context count: an upper estimate)",
    ),
)
#: Below the first anchor the line through the first two is extended (small depths reach less), but
#: never below this floor: an extrapolation, not a measurement (no nanochat figure below d12).
MIN_PLANNED_MFU = 0.25


def planned_mfu(depth: int, anchors: tuple[MfuAnchor, ...] = PLANNED_MFU) -> float:
    """The MFU assumed for `depth`: linear between anchors, held at the last one above it, and
    extrapolated down from the first two below the first one (floored at MIN_PLANNED_MFU)."""
    if depth >= anchors[-1].depth:
        return anchors[-1].mfu
    lo, hi = anchors[0], anchors[1]
    for a, b in pairwise(anchors):
        if a.depth <= depth <= b.depth:
            lo, hi = a, b
            break
    slope = (hi.mfu - lo.mfu) / (hi.depth - lo.depth)
    return max(MIN_PLANNED_MFU, lo.mfu + slope * (depth - lo.depth))


def mfu_source(depth: int, anchors: tuple[MfuAnchor, ...] = PLANNED_MFU) -> str:
    """Where `planned_mfu(depth)` comes from, in words (for the plan's printout)."""
    exact = next((a for a in anchors if a.depth == depth), None)
    if exact is not None:
        return exact.source
    if depth > anchors[-1].depth:
        return f"held at d{anchors[-1].depth}'s figure"
    if depth < anchors[0].depth:
        return (
            f"extrapolated from d{anchors[0].depth} and d{anchors[1].depth} (no measurement below d{anchors[0].depth})"
        )
    return "interpolated between " + " and ".join(
        f"d{a.depth}" for a in anchors if a.depth in _neighbours(depth, anchors)
    )


def _neighbours(depth: int, anchors: tuple[MfuAnchor, ...]) -> tuple[int, int]:
    below = max(a.depth for a in anchors if a.depth < depth)
    above = min(a.depth for a in anchors if a.depth > depth)
    return below, above
