"""report.json: the rows, the fits and the checks as one JSON document, and its headline for status.fit."""

from __future__ import annotations

import time
from typing import Any

from miniseries.api.spec import MAX_DEPTH, CostSpec, FitStatus, Mode, ResourceSpec, ScalingSweepSpec, TrainingSpec
from miniseries.api.sweepfile import load_spec
from miniseries.contract import shapes
from miniseries.contract.doc import json_ready
from miniseries.contract.layout import SweepLayout
from miniseries.contract.store import Store
from miniseries.plan.run_shape import shape_for
from miniseries.science.reference import DEFAULT_CORE_TARGETS, GPT2_CORE, GPT3_CORE_ESTIMATED
from miniseries.science.report.analysis import fit_sweep
from miniseries.science.report.rows import RunRow, gather_runs

REPORT_SCHEMA_VERSION = 1


def compute_report(store: Store, layout: SweepLayout, spec: ScalingSweepSpec | None,
                   targets: dict[str, float] | None = None, bootstrap: int = 100) -> tuple[dict[str, Any], dict[str, Any], list[RunRow]]:  # fmt: skip
    """report.json's document, the fits behind it (objects, for the plots and the markdown) and the rows.

    Without a spec (neither given nor kept in the store) the runs come from the results.json
    files found, and price and peak FLOP/s are the API's defaults: a Problems line says so.
    """
    sweep = layout.sweep
    spec = spec or load_spec(store, layout)
    rows, problems = gather_runs(store, layout, spec)
    if spec is None:
        problems.insert(0, f"no spec for {sweep!r} (neither given nor at {layout.spec}): runs found from results.json alone, "
                           "price and peak FLOP/s are the API defaults")  # fmt: skip
        mode = Mode.isoflop if any(r.budget_flops for r in rows) else Mode.ratio
    else:
        mode = spec.training.mode
    res, cost, tr = (spec.resources, spec.cost, spec.training) if spec else (ResourceSpec(), CostSpec(), TrainingSpec())
    all_targets = {**DEFAULT_CORE_TARGETS, **(targets or {})}
    # the extrapolation is to models larger than the sweep's: without assumedMfu, the table's largest-depth MFU
    result = fit_sweep(rows, mode, peak=res.peak_flops_per_gpu, mfu_assumed=res.mfu_for(MAX_DEPTH), price=cost.price_per_gpu_hour,
                       warmdown_ratio=tr.warmdown_ratio, targets=all_targets, bootstrap=bootstrap)  # fmt: skip
    result["problems"] = problems + result["problems"]
    if spec is not None:
        for e in result["extrapolation"]:
            e.depth = depth_for_compute(spec, e.flops)
    finished = sum(r.usable for r in rows)
    doc: dict[str, Any] = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "sweep": sweep,
        "generated_at": time.time(),
        "mode": mode.value,
        "runs_planned": len(rows),
        "runs_finished": finished,
        "partial": finished < len(rows) or bool(result["problems"]),
        "peak_flops_per_gpu": res.peak_flops_per_gpu,
        "price_per_gpu_hour": cost.price_per_gpu_hour,
        "mfu_used": result["mfu_used"],
        "mfu_measured": result["mfu_measured"],
        "core_targets": all_targets,
        "reference_core": {"gpt2": GPT2_CORE, "gpt3_estimated": GPT3_CORE_ESTIMATED},
        "runs": [r.table() for r in rows],
        "fits": json_ready(result["fits"]),
        "extrapolation": json_ready(result["extrapolation"]),
        "checks": json_ready(result["checks"]),
        "problems": result["problems"],
    }
    return doc, result, rows


def depth_for_compute(spec: ScalingSweepSpec, flops: float | None) -> int | None:
    """The smallest depth of this sweep's family whose run at its tokens:params ratio spends `flops`."""
    if flops is None:
        return None
    family = (shape_for(spec, depth) for depth in range(1, MAX_DEPTH + 1))
    shape = shapes.smallest_spending(family, spec.training.tokens_per_param, flops)
    return shape.depth if shape else None


def fit_status(doc: dict[str, Any]) -> FitStatus:
    """The headline of a report.json document, as status.fit carries it."""
    fits = doc["fits"]
    law_src = fits.get("ratio") or fits.get("isoflop") or {}
    pl, tl = law_src.get("params_law"), law_src.get("tokens_law")
    ll = law_src.get("loss_law")
    ratio = None
    if fits.get("wsd_optimal_ratio"):
        opt = fits["wsd_optimal_ratio"]
        ratio = opt["ratio"] if opt.get("identified", True) else None  # the wsd sweep's answer, when it has one
    elif fits.get("isoflop") and fits["isoflop"].get("optima"):
        opt = fits["isoflop"]["optima"]
        ratio = opt[-1]["tokens_per_param"]  # at the largest budget: what to train at next
    elif doc["runs"]:
        ratios = [r["tokens_per_param"] for r in doc["runs"] if r.get("tokens_per_param") and r["status"] == "finished"]
        ratio = sum(ratios) / len(ratios) if ratios else None
    msg = "; ".join(doc["problems"])[:1000] or None
    rollout = {k: r["error"] for k, r in (fits.get("rollout") or {}).items() if isinstance(r, dict) and "error" in r}
    ext = (fits.get("rollout") or {}).get("extrapolation") or {}
    if ext.get("compute_factor"):
        rollout["extrapolation"] = ext["compute_factor"]
    return FitStatus(
        params_exponent=pl["exponent"] if pl else None,
        tokens_exponent=tl["exponent"] if tl else None,
        tokens_per_param=ratio,
        loss_exponent=-ll["exponent"] if ll else None,
        curves_cross=doc["checks"]["curves_cross"],
        partial=doc["partial"],
        runs_fitted=doc["runs_finished"],
        message=msg,
        rollout=rollout or None,
    )
