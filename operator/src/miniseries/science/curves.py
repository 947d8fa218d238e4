"""Curves through training for the report: val bpb plots, forecast vs actual, and the collapse check.

Pure functions over the trainer's documents (contract.results.read_val_curve / read_loss_curve
rows, science.forecast.ReplayRow); each plot returns {file name: bytes} (png and svg), as
science/report.py's plots do, for the report to write next to its others.

The collapse check follows Qiu et al. 2025 ("Scaling Collapse Reveals Universal Dynamics in
Compute-Optimally Trained Neural Networks", arXiv 2507.02119): in a healthy compute-optimal
sweep, loss curves normalised by their final compute (x = step / steps) and final loss,
y = (L - E) / (L_final - E) with E the irreducible loss (the report's Chinchilla fit gives it;
0 without one), fall on one curve. A run whose normalised curve leaves the others' band is
worth a look (a bad learning rate, a data problem, a run cut short).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from miniseries.science import figures

#: Fractions of training on which normalised curves are compared (the first tenth is warmup noise).
COLLAPSE_GRID = np.linspace(0.1, 1.0, 19)
#: A run is off the collapse when its normalised curve is this far (relative) from the others' median.
COLLAPSE_TOLERANCE = 0.03


def val_curve_plots(
    curves: Mapping[str, Sequence[Mapping[str, float]]],
    finals: Mapping[str, tuple[float, float, float | None]] | None = None,
) -> dict[str, bytes]:
    """val_bpb_vs_tokens and val_bpb_vs_flops: one line per run (its val_curve rows), and the
    final full evaluation as a marker where `finals[run]` = (tokens, flops, val_bpb) is given."""
    plt = figures.pyplot()
    out: dict[str, bytes] = {}
    names = sorted(curves)
    cmap = plt.get_cmap("viridis")
    color = {n: cmap(i / max(1, len(names) - 1) * 0.9) for i, n in enumerate(names)}
    for axis, idx, label in (("tokens", 0, "training tokens"), ("flops", 1, "training FLOPs")):
        fig, ax = figures.figure(figsize=(7, 4.5))
        for n in names:
            pts = [(r[axis], r["val_bpb"]) for r in curves[n] if r[axis] > 0 and math.isfinite(r["val_bpb"])]
            if pts:
                ax.plot(*zip(*pts, strict=True), "-o", ms=3, color=color[n], label=f"{n} (slice)")
            final = (finals or {}).get(n)
            if final is not None and final[2] is not None:
                ax.plot(final[idx], final[2], "*", ms=10, color=color[n], label=f"{n} final")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("validation bits per byte")
        ax.set_title(f"Validation bpb through training, against {label}")
        ax.grid(True, which="both", alpha=0.3)
        if names:
            ax.legend(fontsize=8)
        figures.save(fig, f"val_bpb_vs_{axis}", out)
    return out


def forecast_plot(rows: Sequence[Any], what: str = "val_bpb") -> dict[str, bytes]:
    """forecast_vs_actual: each run's forecast with its interval against the actual final value
    (`rows`: science.forecast.ReplayRow; `what`: "val_bpb" or "loss")."""
    fig, ax = figures.figure(figsize=(5.5, 5))
    xs, lo, hi = [], [], []
    for r in rows:
        f = r.forecast
        if f is None:
            continue
        actual, value, low, high = (
            (r.actual_val_bpb, f.val_bpb, f.val_bpb_low, f.val_bpb_high)
            if what == "val_bpb"
            else (r.actual_loss, f.final_loss, f.final_loss_low, f.final_loss_high)
        )
        if actual is None or value is None:
            continue
        ax.errorbar([actual], [value], yerr=[[value - (low or value)], [(high or value) - value]], fmt="o", capsize=3)
        ax.annotate(r.run, (actual, value), textcoords="offset points", xytext=(5, 5), fontsize=8)
        xs.append(actual)
        lo.append(low or value)
        hi.append(high or value)
    if xs:
        span = [min(xs + lo), max(xs + hi)]
        ax.plot(span, span, "k--", lw=0.8, label="forecast = actual")
        ax.legend(fontsize=8)
    name = "val bpb" if what == "val_bpb" else "training loss"
    ax.set_xlabel(f"actual final {name}")
    ax.set_ylabel(f"forecast final {name} (95% interval)")
    ax.grid(True, alpha=0.3)
    out: dict[str, bytes] = {}
    figures.save(fig, f"forecast_vs_actual_{what}", out)
    return out


@dataclass
class CollapseRun:
    run: str
    max_deviation: float  # max over the grid of |y_run / median of the others' y - 1|
    at_fraction: float
    off: bool


@dataclass
class CollapseCheck:
    runs: list[CollapseRun]
    tolerance: float = COLLAPSE_TOLERANCE

    @property
    def ok(self) -> bool:
        return not any(r.off for r in self.runs)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "tolerance": self.tolerance, "runs": [asdict(r) for r in self.runs]}


def normalised_curve(
    rows: Sequence[Mapping[str, float]], steps: int, final_loss: float, irreducible: float = 0.0, window: int = 5
) -> np.ndarray:
    """(loss - E) / (final loss - E) at COLLAPSE_GRID fractions of its steps (moving mean over `window` steps)."""
    st = np.array([r["step"] for r in rows], dtype=float)
    loss = np.array([r["loss"] for r in rows], dtype=float)
    if len(st) < window:
        raise ValueError(f"a curve of {len(st)} points cannot be compared (need {window})")
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    x = np.convolve(st, np.ones(window) / window, mode="valid") / steps  # centred: no lag
    if not final_loss > irreducible:
        raise ValueError(f"final loss {final_loss} is not above the irreducible loss {irreducible}")
    return np.asarray((np.interp(COLLAPSE_GRID, x, smooth) - irreducible) / (final_loss - irreducible))


def collapse_check(
    curves: Mapping[str, tuple[Sequence[Mapping[str, float]], int, float]],
    irreducible: float = 0.0,
    tolerance: float = COLLAPSE_TOLERANCE,
) -> CollapseCheck:
    """`curves[run]` = (loss_curve rows, planned steps, final loss). Needs three runs or more.

    Meaningful for a compute-optimal sweep past its first transient: the tiny CPU sweep's runs
    all start at the uniform-prediction loss ln(V) and end far apart, so they do not collapse.
    """
    if len(curves) < 3:
        raise ValueError(f"a collapse check needs at least 3 finished runs with loss curves, have {len(curves)}")
    ys = {n: normalised_curve(rows, steps, final, irreducible) for n, (rows, steps, final) in curves.items()}
    out = []
    for n, y in ys.items():
        others = np.median(np.stack([v for m, v in ys.items() if m != n]), axis=0)
        dev = np.abs(y / others - 1)
        i = int(np.argmax(dev))
        out.append(CollapseRun(n, float(dev[i]), float(COLLAPSE_GRID[i]), bool(dev[i] > tolerance)))
    return CollapseCheck(out, tolerance)
