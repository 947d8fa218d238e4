"""The sweep report: `<store>/<namespace>/<sweep>/report/{report.json, report.md, *.png, *.svg}`.

It reads only what the trainer wrote (results.json, loss_curve.jsonl, through
`miniseries.contract.results`) and the plan (`miniseries.plan.planner`), fits what the data can
support (`miniseries.science.fit`), and always writes what it can: a run without
results, a NaN loss or too few runs for a fit is a line under "Problems" and a
`partial` mark, never a crash and never a silently smaller table.

`build_report(store, layout, spec)` is what the operator and the local runner call
in-process; `miniseries report A [B]` (cli/science_commands.py) wraps it, and with two sweeps writes a
side-by-side comparison under the first sweep's report folder (`compare_reports`).

The parts, in the order a report is made: `rows` (one row per planned run), `analysis`
(the fits and checks those rows support), `document` (report.json and the headline for
status.fit), `plots` and `markdown` (report.md).
"""

from __future__ import annotations

import json
import math
from typing import Any

from miniseries.api.spec import FitStatus, Mode, ScalingSweepSpec
from miniseries.api.sweepfile import load_spec
from miniseries.contract.doc import json_ready
from miniseries.contract.layout import SweepLayout, join_uri
from miniseries.contract.store import Store
from miniseries.science.report.document import compute_report, fit_status
from miniseries.science.report.markdown import render_comparison, render_markdown
from miniseries.science.report.plots import comparison_plot, render_plots
from miniseries.science.report.through_training import render_training, through_training

__all__ = ["ReportError", "build_report", "compare_reports", "joint_fit"]


class ReportError(RuntimeError):
    """A report that cannot be made as asked (no such sweep, a bad spec file); the message says why."""


def build_report(store: Store, layout: SweepLayout, spec: ScalingSweepSpec | None,
                 targets: dict[str, float] | None = None, bootstrap: int = 100) -> tuple[str, FitStatus]:  # fmt: skip
    """Write the report into `<store>/<namespace>/<sweep>/report/`; returns its URI and the headline fit."""
    doc, result, rows = compute_report(store, layout, spec, targets, bootstrap)
    plots = render_plots(rows, result, Mode(doc["mode"]))
    training, training_plots = through_training(store, layout, spec or load_spec(store, layout), rows, result["fits"],
                                                bootstrap)  # fmt: skip
    plots.update(training_plots)
    doc["through_training"] = json_ready(training)
    doc["checks"]["collapse"] = result["checks"]["collapse"] = doc["through_training"]["collapse"]
    doc["plots"] = sorted(plots)
    prefix = layout.report
    for name, data in plots.items():
        store.write_bytes(prefix + name, data)
    md = render_markdown(doc, result, rows, sorted(plots)) + "\n" + render_training(training, sorted(plots))
    store.write_bytes(prefix + "report.md", md.encode())
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
    joint = joint_fit(store, la, lb)
    (store.write_bytes(prefix + "report.md", (render_comparison(docs[a], docs[b]) + "\n" + render_joint(joint))
                       .encode()))  # fmt: skip
    return join_uri(store.uri, prefix)


def joint_fit(store: Store, la: SweepLayout, lb: SweepLayout) -> dict[str, Any]:
    """Both sweeps' finished runs: every provenance difference between them, and a joint fit of final
    loss over compute, or its refusal naming the conventions that differ (science/provenance.py)."""
    from miniseries.contract.results import ResultsError, read_results
    from miniseries.contract.store import StoreError
    from miniseries.science.fit import FitError, fit_power_law
    from miniseries.science.provenance import ProvenanceMismatch, check_joint_fit, differences

    labelled = []
    for layout in (la, lb):
        for key in store.list(layout.root):
            parts = key[len(layout.root) :].split("/")
            if len(parts) != 2 or parts[1] != "results.json":
                continue
            try:
                res = read_results(store, layout.run(parts[0]))
            except (ResultsError, StoreError, ValueError):
                continue  # the sweeps' own reports name it
            if res is not None and res.loss.final is not None and math.isfinite(res.loss.final) and res.flops > 0:
                labelled.append((f"{layout.sweep}/{parts[0]}", res))
    out: dict[str, Any] = {"rows": len(labelled), "differences": [d.to_dict() for d in differences(labelled)]}
    try:
        check_joint_fit(labelled)
    except ProvenanceMismatch as e:
        out["refused"] = str(e)
        return out
    try:
        law = fit_power_law([r.flops for _, r in labelled], [r.loss.final for _, r in labelled], "loss over C")
        out["loss_law"] = {"exponent": law.exponent, "coefficient": law.coefficient,
                           "exponent_ci": list(law.exponent_ci), "r2": law.r2, "points": law.points}  # fmt: skip
    except FitError as e:
        out["refused"] = f"no joint fit: {e}"
    return out


def render_joint(joint: dict[str, Any]) -> str:
    lines = ["## Provenance differences", ""]
    diffs = joint["differences"]
    if not diffs:
        lines.append("None: the two sweeps' finished runs agree on every provenance field.")
    for d in diffs:
        values = " vs ".join(f"`{v}` ({', '.join(runs)})" for v, runs in d["values"].items())
        lines.append(f"- **{d['field']}**{' (blocks a joint fit)' if d['blocking'] else ''}: {values}")
    lines += ["", "## Joint fit", ""]
    if "refused" in joint:
        lines.append(f"Refused: {joint['refused']}.")
    else:
        law = joint["loss_law"]
        lines.append(f"Final loss ∝ C^{law['exponent']:.4f} over both sweeps' {law['points']} runs "
                     f"(95% CI [{law['exponent_ci'][0]:.4f}, {law['exponent_ci'][1]:.4f}], R² {law['r2']:.4f}).")  # fmt: skip
    return "\n".join(lines) + "\n"
