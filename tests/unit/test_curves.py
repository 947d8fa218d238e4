"""science/curves.py: the collapse check on synthetic curves, and the plots render."""

from __future__ import annotations

import numpy as np
import pytest

from miniseries.contract.schedule import lr_multipliers
from miniseries.science.curves import collapse_check, forecast_plot, val_curve_plots
from miniseries.science.forecast import RunTrace, law, replay, schedule


def curve(steps: int, scale: float, bend: float = 0.0) -> tuple[list[dict[str, float]], int, float]:
    """A curve whose shape in normalised time is shared (scaled by `scale`), optionally bent."""
    s = schedule(lr_multipliers(steps, steps // 20, 0.4))  # warmup a fixed fraction, as the collapse needs
    loss = scale * law(s.s1, s.s2, 1.0, 1.0, 0.4, 0.5) * (1 + bend * np.sin(np.pi * np.arange(steps) / steps))
    rows = [{"step": i + 1, "loss": float(v)} for i, v in enumerate(loss)]
    return rows, steps, float(np.mean(loss[-max(1, steps // 10) :]))


def test_curves_of_one_shape_collapse_and_a_bent_one_is_named() -> None:
    healthy = {"d1": curve(100, 3.0), "d2": curve(200, 2.5), "d3": curve(400, 2.0), "d4": curve(300, 2.2)}
    check = collapse_check(healthy)
    assert check.ok, check.to_dict()
    bent = dict(healthy, d3=curve(400, 2.0, bend=0.1))
    check = collapse_check(bent)
    assert not check.ok
    assert [r.run for r in check.runs if r.off] == ["d3"]
    off = next(r for r in check.runs if r.off)
    assert off.max_deviation > 0.05 and 0.3 < off.at_fraction < 0.7
    with pytest.raises(ValueError, match="at least 3 finished runs"):
        collapse_check({"d1": healthy["d1"], "d2": healthy["d2"]})


def test_plots_render_png_and_svg() -> None:
    rows = {"d1": [{"step": s, "tokens": 512.0 * s, "flops": 1e6 * s, "val_bpb": 3 - s / 100} for s in (10, 20, 30)]}
    out = val_curve_plots(rows, {"d1": (512.0 * 40, 4e7, 2.6)})
    assert set(out) == {f"val_bpb_vs_{a}.{e}" for a in ("tokens", "flops") for e in ("png", "svg")}
    assert out["val_bpb_vs_tokens.png"].startswith(b"\x89PNG")
    traces = []
    for i, (steps, scale) in enumerate(((100, 3.0), (200, 2.5), (400, 2.0))):
        r, n, final = curve(steps, scale)
        mult = lr_multipliers(n, n // 20, 0.4)
        traces.append(
            RunTrace(f"d{i + 1}", mult, [x["step"] for x in r], [x["loss"] for x in r], final, final * 0.6, i)
        )
    plot = forecast_plot(replay(traces, 0.5, "others", bootstrap=20))
    assert plot["forecast_vs_actual_val_bpb.png"].startswith(b"\x89PNG")
