"""The report's view through training: val-bpb curves, the forecast error per run, the collapse
check and each run's provenance (issue 20). Reads the store like rows.py; never raises for a run
that lacks a piece: the piece is skipped and the document says so.

- Validation curves: each finished run's val_curve.jsonl (val bpb on a fixed slice every N steps)
  against tokens and FLOPs, with the final full evaluation as a marker (science/curves.py).
- Forecast error: every finished run replayed from the first FORECAST_UPTO of its loss curve
  (science/forecast.replay), with the runs that finished before it as the prior ("earlier", what
  the operator could have known live) and with all the others ("others", leave one out); per run
  the forecast, its interval, the actual value and the relative error.
- Collapse (Qiu et al. 2025): only with an irreducible loss E from the Chinchilla fit; without
  one the check is skipped and the document says why.
- Provenance: each run's results.json provenance, and the fields on which the sweep's runs differ.
"""

from __future__ import annotations

import math
from typing import Any

from miniseries.api.spec import ScalingSweepSpec
from miniseries.contract.layout import SweepLayout
from miniseries.contract.results import ResultsError, RunResults, read_loss_curve, read_results, read_val_curve
from miniseries.contract.schedule import recorded_multipliers
from miniseries.contract.store import Store, StoreError
from miniseries.science.report.rows import RunRow

#: The fraction of each finished run's steps the report's forecast replay sees.
FORECAST_UPTO = 0.5


def _schedule(res: RunResults, spec: ScalingSweepSpec | None) -> list[float] | None:
    try:  # the recorded schedule ((1-sqrt) cooldowns and wsd trunks included); the spec's for older rows
        return recorded_multipliers(res.steps, res.provenance.lr_schedule if res.provenance else {},
                                    warmup_steps=spec.training.warmup_steps if spec else None,
                                    warmdown_ratio=spec.training.warmdown_ratio if spec else None)  # fmt: skip
    except ValueError:
        return None


_Finished = dict[str, tuple[RunResults, list[dict[str, float]]]]  # run -> (its results, its loss curve)


def _finished_runs(store: Store, layout: SweepLayout, rows: list[RunRow], notes: list[str]) -> _Finished:
    """Each usable run's results and loss curve; a run whose files cannot be read is a note."""
    finished: _Finished = {}
    for r in rows:
        if not r.usable:
            continue
        try:
            res = read_results(store, layout.run(r.name))
            curve = read_loss_curve(store, layout.run(r.name))
        except (ResultsError, StoreError, ValueError) as e:
            notes.append(f"{r.name}: {e}")
            continue
        if res is not None:
            finished[r.name] = (res, curve)
    return finished


def _val_curves(store: Store, layout: SweepLayout, finished: _Finished, notes: list[str],
                plots: dict[str, bytes]) -> tuple[dict[str, list[dict[str, float]]], str | None]:  # fmt: skip
    """The finished runs' val-bpb traces (their plots into `plots`), and a note if there are none."""
    from miniseries.science.curves import val_curve_plots

    val_curves: dict[str, list[dict[str, float]]] = {}
    for name in finished:
        try:
            pts = read_val_curve(store, layout.run(name))
        except (StoreError, ValueError) as e:
            notes.append(f"{name}: val curve unreadable ({e})")
            continue
        if pts:
            val_curves[name] = pts
    if val_curves:
        finals = {n: (float(res.tokens), float(res.flops), res.val_bpb) for n, (res, _c) in finished.items()}
        plots.update(val_curve_plots(val_curves, {n: f for n, f in finals.items() if n in val_curves}))
    val_note = None if val_curves else "no finished run recorded a val-bpb trace (trainer flag --val-every)"
    return val_curves, val_note


def _forecast_error(finished: _Finished, spec: ScalingSweepSpec | None, notes: list[str], plots: dict[str, bytes],
                    bootstrap: int) -> dict[str, Any]:  # fmt: skip
    """Every finished run replayed at FORECAST_UPTO against the earlier runs and against all the
    others: per run the forecast and its error, and the median error (its plot into `plots`)."""
    from miniseries.science.curves import forecast_plot
    from miniseries.science.forecast import RunTrace, median_abs, replay

    traces = []
    for name, (res, curve) in finished.items():
        mult = _schedule(res, spec)
        if mult is None or not curve:
            notes.append(f"{name}: not replayed ({'no LR schedule known' if mult is None else 'no loss curve'})")
            continue
        traces.append(RunTrace(name, mult, [int(p["step"]) for p in curve], [float(p["loss"]) for p in curve],
                               res.loss.final, res.val_bpb, res.created_at))  # fmt: skip
    forecast: dict[str, Any] = {"upto": FORECAST_UPTO, "runs": [], "median_abs_val_bpb_error": {}}
    if traces:
        earlier = replay(traces, FORECAST_UPTO, "earlier", bootstrap=bootstrap)
        others = replay(traces, FORECAST_UPTO, "others", bootstrap=bootstrap)
        loo = {r.run: r for r in others}
        for r in earlier:
            d = r.to_dict()
            d["val_bpb_error_others"] = loo[r.run].val_bpb_error
            forecast["runs"].append(d)
        forecast["median_abs_val_bpb_error"] = {
            "earlier": median_abs([r.val_bpb_error for r in earlier]),
            "others": median_abs([r.val_bpb_error for r in others]),
        }
        if any(r.forecast is not None for r in others):
            plots.update(forecast_plot(others, "val_bpb"))
    return forecast


def _collapse(finished: _Finished, fits: dict[str, Any]) -> dict[str, Any]:
    """The collapse check, only against an irreducible loss from the Chinchilla fit; else why it was skipped."""
    from miniseries.science.curves import collapse_check

    ch = fits.get("chinchilla")
    if ch is None:
        return {"skipped": "no irreducible loss E: no Chinchilla fit (ratio mode, or too few runs); normalising "
                           "by the final loss alone is not the check of Qiu et al."}  # fmt: skip
    e = float(ch.E)
    curves = {n: (c, res.steps, res.loss.final) for n, (res, c) in finished.items()
              if c and res.loss.final is not None and math.isfinite(res.loss.final)}  # fmt: skip
    try:
        return {"irreducible": e, **collapse_check(curves, e).to_dict()}
    except ValueError as err:
        return {"skipped": str(err)}


def through_training(store: Store, layout: SweepLayout, spec: ScalingSweepSpec | None, rows: list[RunRow],
                     fits: dict[str, Any], bootstrap: int = 100) -> tuple[dict[str, Any], dict[str, bytes]]:  # fmt: skip
    """(report.json's `through_training` section, its plots by file name)."""
    from miniseries.science.provenance import differences

    notes: list[str] = []
    plots: dict[str, bytes] = {}
    finished = _finished_runs(store, layout, rows, notes)
    val_curves, val_note = _val_curves(store, layout, finished, notes, plots)
    forecast = _forecast_error(finished, spec, notes, plots, bootstrap)
    collapse = _collapse(finished, fits)
    labelled = [(n, res) for n, (res, _c) in finished.items()]
    prov = {n: (res.provenance.to_dict() if res.provenance is not None else None) for n, res in labelled}
    diffs = [d.to_dict() for d in differences(labelled)] if len(labelled) > 1 else []
    section = {
        "val_curves": {n: len(v) for n, v in val_curves.items()},
        "val_curves_note": val_note,
        "forecast": forecast,
        "collapse": collapse,
        "provenance": prov,
        "provenance_differences": diffs,
        "notes": notes,
    }
    return section, plots


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:+.2%}"


def _num(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def collapse_line(collapse: dict[str, Any]) -> list[str]:
    """The collapse check's lines for the report's Checks list."""
    if "skipped" in collapse:
        return [f"- Loss curves collapse (Qiu et al. 2025): skipped: {collapse['skipped']}"]
    off = [r["run"] for r in collapse["runs"] if r["off"]]
    lines = [f"- Loss curves collapse (Qiu et al. 2025, E = {collapse['irreducible']:.3f}, tolerance "
             f"{collapse['tolerance']:.0%}): **{'yes' if collapse['ok'] else 'no: ' + ', '.join(off)}**"]  # fmt: skip
    lines += [f"  - {r['run']}: max deviation {r['max_deviation']:.2%} at {r['at_fraction']:.0%} of its steps"
              for r in collapse["runs"]]  # fmt: skip
    return lines


def render_training(section: dict[str, Any], plots: list[str]) -> str:
    """report.md's "Through training" section."""
    lines = ["## Through training", ""]
    if section["val_curves_note"]:
        lines += [f"Validation curves: {section['val_curves_note']}.", ""]
    for name, title in (
        ("val_bpb_vs_tokens", "Validation bpb vs tokens"),
        ("val_bpb_vs_flops", "Validation bpb vs FLOPs"),
    ):
        if f"{name}.png" in plots:
            lines += [f"### {title}", "", f"![{title}]({name}.png) ([SVG]({name}.svg))", ""]
    f = section["forecast"]
    lines += [f"### Forecast error (from {f['upto']:.0%} of each run's steps)", ""]
    if not f["runs"]:
        lines += ["No finished run could be replayed (see the notes).", ""]
    else:
        med = f["median_abs_val_bpb_error"]
        lines += [
            "Each finished run forecast from the first half of its loss curve (science/forecast.py), with the runs "
            "that had finished before it as the prior (what the operator knew live) and, in the last column, all the "
            "others. The 95% intervals ignore model error and are too narrow.",
            "",
            "| run | cut step | forecast val bpb | 95% interval | actual | error (earlier) | error (others) |",
            "|---|---:|---:|---|---:|---:|---:|",
        ]
        for r in f["runs"]:
            fc = r["forecast"] or {}
            interval = f"[{_num(fc.get('val_bpb_low'))}, {_num(fc.get('val_bpb_high'))}]" if fc else "–"
            value = _num(fc.get("val_bpb")) if fc else f"refused: {r['refused']}"
            lines.append(f"| {r['run']} | {r['cut_step']}/{r['steps']} | {value} | {interval} | "
                         f"{_num(r['actual_val_bpb'])} | {_pct(r['val_bpb_error'])} | {_pct(r['val_bpb_error_others'])} |")  # fmt: skip
        lines += ["", f"Median |error| of the final val bpb: {_pct(med.get('earlier')).lstrip('+')} (earlier runs "
                      f"as prior), {_pct(med.get('others')).lstrip('+')} (all others).", ""]  # fmt: skip
        if "forecast_vs_actual_val_bpb.png" in plots:
            lines += ["![forecast vs actual](forecast_vs_actual_val_bpb.png)", ""]
    lines += ["### Provenance", ""]
    prov = section["provenance"]
    if not prov:
        lines += ["No finished run.", ""]
    else:
        keys = ("trainer_version", "source_commit", "torch_version", "device_name", "device_count", "precision",
                "dataset_manifest_sha256", "tokenizer_sha256", "params_convention", "flops_convention", "seed")  # fmt: skip
        lines += ["| run | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
        for run, p in prov.items():
            cells = ["unknown (no provenance)"] * len(keys) if p is None else [
                "–" if p.get(k) is None else (str(p[k])[:12] if k.endswith("sha256") or k == "source_commit" else str(p[k]))
                for k in keys
            ]  # fmt: skip
            lines.append(f"| {run} | " + " | ".join(cells) + " |")
        diffs = section["provenance_differences"]
        lines += [""] + (
            [f"- differs: {d['field']}: " + " vs ".join(f"{v} ({', '.join(rs)})" for v, rs in d["values"].items())
             + (" (**blocks a joint fit**)" if d["blocking"] else "") for d in diffs]
            if diffs else ["All finished runs agree on every provenance field."]
        ) + [""]  # fmt: skip
    if section["notes"]:
        lines += ["Notes: " + "; ".join(section["notes"]), ""]
    return "\n".join(lines)
