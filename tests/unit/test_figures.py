"""science/figures.py: log-axis labels as plain text (no mathtext to parse at each draw)."""

from __future__ import annotations

import pytest

from miniseries.science import figures


@pytest.mark.parametrize(
    ("mathtext", "plain"),
    [
        (r"$\mathdefault{10^{13}}$", "10¹³"),
        (r"$\mathdefault{2\times10^{9}}$", "2×10⁹"),
        (r"$\mathdefault{10^{-3}}$", "10⁻³"),
        (r"$\mathdefault{-10^{2}}$", "-10²"),
        (r"$\mathdefault{1}$", "1"),
        ("", ""),  # a minor tick without a label stays without
        ("0.5", "0.5"),  # not mathtext: as it is
        (r"$\mathdefault{10^{1.5}}$", r"$\mathdefault{10^{1.5}}$"),  # not an integer exponent: left to mathtext
    ],
)
def test_plain_label(mathtext: str, plain: str) -> None:
    assert figures.plain_label(mathtext) == plain


def test_a_saved_log_axis_is_labelled_in_plain_text_where_matplotlib_labels_it() -> None:
    fig, ax = figures.figure(figsize=(4, 3))
    ax.plot([3e12, 2e16], [2.0, 6.0])
    ax.set_xscale("log")
    out: dict[str, bytes] = {}
    figures.save(fig, "f", out)
    assert set(out) == {"f.png", "f.svg"} and out["f.png"].startswith(b"\x89PNG")
    labels = [t.get_text() for t in ax.xaxis.get_ticklabels() if t.get_text()]
    assert {"10¹³", "10¹⁴", "10¹⁵", "10¹⁶"} <= set(labels), labels
    assert not [s for s in labels if "$" in s], labels
