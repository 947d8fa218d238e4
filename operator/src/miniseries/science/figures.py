"""matplotlib for the report's plots: imported only when plotting (the operator loads it at its first
fit), one figure at a time, saved as PNG and SVG bytes.

Two choices make a report cheaper to draw (the operator draws one at every sweep's fit; a 6-depth
sweep's report took 2.13 CPU s before them, 1.69 after):
- the layout is computed once (`tight_layout`), not by `savefig(bbox_inches="tight")`, which draws the
  figure once more per format to measure it;
- log axes' labels are plain text with Unicode superscripts ("2×10⁹"), the same labels matplotlib's own
  formatter picks, without its mathtext: parsing mathtext was a fifth of a report's CPU time.
"""

from __future__ import annotations

import io
import re
from typing import Any

DPI = 110

#: What matplotlib's log formatters write: `$\mathdefault{2\times10^{9}}$`.
_MATHTEXT_LABEL = re.compile(r"\$\\mathdefault\{(.*)\}\$")
_EXPONENT = re.compile(r"\^\{(-?\d+)\}")
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def figure(*grid: int, figsize: tuple[float, float]) -> tuple[Any, Any]:
    """plt.subplots(*grid): (figure, axes)."""
    return pyplot().subplots(*grid, figsize=figsize)  # type: ignore[no-any-return]


def plain_label(label: str) -> str:
    """A log-axis label without mathtext: `$\\mathdefault{2\\times10^{-3}}$` -> `2×10⁻³`; a label this does
    not know is returned as it is (matplotlib renders it as before)."""
    m = _MATHTEXT_LABEL.fullmatch(label)
    if m is None:
        return label
    text = _EXPONENT.sub(lambda e: e.group(1).translate(_SUPERSCRIPT), m.group(1).replace(r"\times", "×"))
    return label if any(c in text for c in "\\{}^$") else text


def _plain_log_formatters(fig: Any) -> None:
    """Each log axis's own formatters (major and minor), their labels made plain by `plain_label`."""
    from matplotlib.ticker import Formatter, LogFormatterMathtext

    class PlainLabels(Formatter):  # type: ignore[misc]
        def __init__(self, inner: Any) -> None:
            self.inner = inner  # keeps its axis: it decides which ticks get a label, as before

        def set_locs(self, locs: Any) -> None:
            self.inner.set_locs(locs)

        def __call__(self, x: float, pos: int | None = None) -> str:
            return plain_label(self.inner(x, pos))

    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            if isinstance(axis.get_major_formatter(), LogFormatterMathtext):
                axis.set_major_formatter(PlainLabels(axis.get_major_formatter()))
            if isinstance(axis.get_minor_formatter(), LogFormatterMathtext):
                axis.set_minor_formatter(PlainLabels(axis.get_minor_formatter()))


def save(fig: Any, name: str, out: dict[str, bytes]) -> None:
    """`name`.png and `name`.svg of the figure into `out`; the figure is closed."""
    _plain_log_formatters(fig)
    fig.tight_layout()
    for ext in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=DPI)
        out[f"{name}.{ext}"] = buf.getvalue()
    pyplot().close(fig)
