"""The sweep report: `<store>/<namespace>/<sweep>/report/{report.json, report.md, *.png, *.svg}`.

It reads only what the trainer wrote (results.json, loss_curve.jsonl, through
`miniseries.contract.results`) and the plan (`miniseries.control.plan`), fits what the data can
support (`miniseries.science.fit`), and always writes what it can: a run without
results, a NaN loss or too few runs for a fit is a line under "Problems" and a
`partial` mark, never a crash and never a silently smaller table.

`build_report(store, layout, spec)` is what the operator and the local runner call
in-process; `miniseries report A [B]` (cli/science.py) wraps it, and with two sweeps writes a
side-by-side comparison under the first sweep's report folder (`compare_reports`).

The parts, in the order a report is made: `rows` (one row per planned run), `analysis`
(the fits and checks those rows support), `document` (report.json and the headline for
status.fit), `plots` and `markdown` (report.md).
"""

from __future__ import annotations

import json

from miniseries.api.spec import FitStatus, Mode, ScalingSweepSpec
from miniseries.contract.layout import SweepLayout, join_uri
from miniseries.contract.store import Store
from miniseries.science.report.document import compute_report, fit_status
from miniseries.science.report.markdown import render_comparison, render_markdown
from miniseries.science.report.plots import comparison_plot, render_plots

__all__ = ["ReportError", "build_report", "compare_reports"]


class ReportError(RuntimeError):
    """A report that cannot be made as asked (no such sweep, a bad spec file); the message says why."""


def build_report(store: Store, layout: SweepLayout, spec: ScalingSweepSpec | None,
                 targets: dict[str, float] | None = None, bootstrap: int = 100) -> tuple[str, FitStatus]:  # fmt: skip
    """Write the report into `<store>/<namespace>/<sweep>/report/`; returns its URI and the headline fit."""
    doc, result, rows = compute_report(store, layout, spec, targets, bootstrap)
    plots = render_plots(rows, result, Mode(doc["mode"]))
    doc["plots"] = sorted(plots)
    prefix = layout.report
    for name, data in plots.items():
        store.write_bytes(prefix + name, data)
    store.write_bytes(prefix + "report.md", render_markdown(doc, result, rows, sorted(plots)).encode())
    store.write_bytes(prefix + "report.json", json.dumps(doc, indent=2, allow_nan=False).encode())
    return join_uri(store.uri, prefix), fit_status(doc)


def compare_reports(store: Store, la: SweepLayout, lb: SweepLayout, spec_a: ScalingSweepSpec | None = None,
                    spec_b: ScalingSweepSpec | None = None) -> str:  # fmt: skip
    """Side by side: `<store>/<ns>/<a>/report/compare-<b>/report.md` with an overlay plot (one namespace)."""
    docs = {}
    for layout, spec in ((la, spec_a), (lb, spec_b)):
        build_report(store, layout, spec)
        docs[layout.sweep] = json.loads(store.read_bytes(layout.report + "report.json"))
    a, b = la.sweep, lb.sweep
    prefix = la.report + f"compare-{b}/"
    for name, data in comparison_plot(docs, f"{a} vs {b}").items():
        store.write_bytes(prefix + name, data)
    store.write_bytes(prefix + "report.md", render_comparison(docs[a], docs[b]).encode())
    return join_uri(store.uri, prefix)
