"""The sanity check on a sweep's loss curves: do larger models end, and train, below smaller ones?"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from miniseries.science.fit.common import _Result


@dataclass
class Crossing(_Result):
    smaller: str
    larger: str
    kind: str  # final_order | tokens_axis
    detail: str


def _local_linear(t: np.ndarray, y: np.ndarray, at: np.ndarray, half_width: float = math.log(1.25)) -> np.ndarray:
    """Loss at `at`, smoothed by a local straight line in log-tokens (LOESS of degree 1).

    A moving average in step index would be biased upward wherever the logged
    points are sparse relative to the curve's bend (early training, large runs);
    a local line in log t has no slope bias and averages out step noise.
    """
    lt, la = np.log(t), np.log(at)
    out = np.interp(la, lt, y)
    for i, x in enumerate(la):
        m = np.abs(lt - x) <= half_width
        if m.sum() >= 3 and np.ptp(lt[m]) > 0:
            slope, icept = np.polyfit(lt[m], y[m], 1)
            out[i] = icept + slope * x
    return out


def check_crossings(
    runs: list[dict[str, Any]],
    *,
    warmdown_ratio: float = 0.4,
    tolerance: float = 0.01,
) -> list[Crossing]:
    """Flag pairs of runs whose losses are in the wrong order.

    runs: {name, params, final_loss, curve: [(tokens, loss), ...], warmup_tokens}.
    Two definitions, each chosen so that an honest setup never trips it:

    1. final_order: in a ratio sweep a larger model also trains on more tokens,
       so its final loss must be lower. Any inversion is flagged.
    2. tokens_axis: at an equal number of training tokens a larger model must
       have the lower loss (it has seen the same data with more capacity). We
       compare smoothed curves on the shared token range after both warmups
       and before the smaller run's warmdown begins: during warmdown the two
       runs sit at different points of their LR schedules by design, and the
       smaller one's annealing drop says nothing about the setup. The curves
       "cross" if the larger model is worse by more than `tolerance` (relative)
       on more than 10% of that range.

    Not a check: loss against FLOPs. There a larger model starts above a
    smaller one (it spends more FLOPs per token) and ends below it; one
    crossing is the compute-optimal frontier itself, not a bug.
    """
    out: list[Crossing] = []
    rs = sorted([r for r in runs if r.get("params")], key=lambda r: r["params"])
    for i, small in enumerate(rs):
        for large in rs[i + 1 :]:
            if large["params"] < small["params"] * 1.05:
                continue  # the same model (another budget): nothing to order
            fs, fl = small.get("final_loss"), large.get("final_loss")
            if fs is not None and fl is not None and math.isfinite(fs) and math.isfinite(fl) and fl > fs * (1 + 1e-9):
                out.append(Crossing(small["name"], large["name"], "final_order",
                                    f"final loss {fl:.4f} of {large['name']} is above {fs:.4f} of {small['name']}"))  # fmt: skip
            cs, cl = small.get("curve") or [], large.get("curve") or []
            if len(cs) < 5 or len(cl) < 5:
                continue
            ts, ls = np.array([p[0] for p in cs], float), np.array([p[1] for p in cs], float)
            tl, ll = np.array([p[0] for p in cl], float), np.array([p[1] for p in cl], float)
            ok_s, ok_l = np.isfinite(ls) & (ts > 0), np.isfinite(ll) & (tl > 0)
            ts, ls, tl, ll = ts[ok_s], ls[ok_s], tl[ok_l], ll[ok_l]
            if len(ts) < 5 or len(tl) < 5:
                continue
            start = max(small.get("warmup_tokens", 0), large.get("warmup_tokens", 0), ts[0], tl[0])
            end = min(ts[-1] * (1 - warmdown_ratio), tl[-1])
            if end <= start * 1.05:
                continue
            # Compare at the logged tokens of the more coarsely logged run and interpolate the
            # finer one in log-tokens (where a loss curve is nearly straight): interpolating a
            # coarse, convex curve linearly would overstate its loss and invent crossings.
            fine_s = len(ts) / math.log(ts[-1] / ts[0]) >= len(tl) / math.log(tl[-1] / tl[0])
            anchor = tl if fine_s else ts
            grid = anchor[(anchor >= start) & (anchor <= end)]
            if len(grid) < 5:
                continue
            ys = _local_linear(ts, ls, grid)
            yl = _local_linear(tl, ll, grid)
            worse = yl > ys * (1 + tolerance)
            if worse.mean() > 0.10:
                where = grid[worse]
                out.append(Crossing(small["name"], large["name"], "tokens_axis",
                                    f"{large['name']} is above {small['name']} at equal tokens on {worse.mean():.0%} of "
                                    f"{start:.3g}..{end:.3g} tokens (first at {where[0]:.3g})"))  # fmt: skip
    return out
