"""report.md: the report's numbers as a page a person reads."""

from __future__ import annotations

import math
import time
from typing import Any

from miniseries.science.report.document import fit_status
from miniseries.science.report.rows import RunRow
from miniseries.science.report.side_by_side import depth_rows, render_depths
from miniseries.science.report.through_training import collapse_line


def fmt_number(v: Any, spec: str = ".4g") -> str:
    """`v` formatted, or a dash for a number that is missing or not finite."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, spec)


def _law_row(name: str, law: Any) -> str:
    if law is None:
        return f"| {name} | – | – | – | – |"
    lo, hi = law.exponent_ci
    return f"| {name} | {law.exponent:.4f} | [{fmt_number(lo)}, {fmt_number(hi)}] | {law.r2:.4f} | {law.points} |"


ROLLOUT_NAMES = {"loss_law": "loss over C", "bpb_law": "bpb over C", "chinchilla_free": "Approach 3, free exponents",
                 "chinchilla_shared": "Approach 3, shared exponent", "core": "CORE over C",
                 "core_two_step": "CORE over C, via loss"}  # fmt: skip


def rollout_lines(rollouts: dict[str, Any]) -> list[str]:
    """The Rollout validation section: each law refitted without the largest-compute run(s), predicting them."""
    lines = ["## Rollout validation", "",
             "Each law refitted without the sweep's largest-compute run(s) (isoFLOP: the largest budget; wsd: the "
             "largest model's branches) and asked to predict them: how far the law carries beyond the runs it saw, "
             "which its own interval does not say. Loss and bpb errors are relative, CORE errors in CORE points.", "",
             "| law | held out | predicted | measured | error | refitted on |", "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    for key, name in ROLLOUT_NAMES.items():
        r = rollouts.get(key)
        if r is None:
            continue
        if isinstance(r, dict):
            lines.append(f"| {name} | – | – | – | – | not made: {r['refused']} |")
            continue
        spec = "+.2%" if r.relative else "+.4f"
        lines.append(f"| {r.law} | {', '.join(r.held_out)} | {', '.join(f'{v:.4f}' for v in r.predicted)} | "
                     f"{', '.join(f'{v:.4f}' for v in r.actual)} | {format(r.error, spec)} | {r.fitted_on} runs |")  # fmt: skip
    choice = rollouts.get("chinchilla_choice")
    if choice:
        lines += ["", f"Approach 3 is reported in its **{choice['form']}**-exponent form, the one that predicted the "
                      f"held-out runs better ({choice['why']})."]  # fmt: skip
    route = rollouts.get("core_route")
    if route:
        lines += ["", f"CORE is extrapolated by the **{route['route']}** route ({route['why']})."]
    ext = rollouts.get("extrapolation") or {}
    if ext.get("compute_factor"):
        lines += ["", f"The extrapolation's compute carries the CORE rollout's error as its uncertainty: a factor of "
                      f"{ext['compute_factor']:.3g} either way (the CORE error over the CORE law's slope per decade)."]  # fmt: skip
    return [*lines, ""]


def _status_lines(doc: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """The title, the sweep's status line and its Problems section."""
    lines = [f"# Scaling report: `{doc['sweep']}`", ""]
    if not doc["partial"]:
        status = "complete"
    elif doc["runs_finished"] < doc["runs_planned"]:
        status = f"**PARTIAL**: {doc['runs_finished']} of {doc['runs_planned']} runs finished"
    else:
        status = f"**PARTIAL**: all {doc['runs_planned']} runs finished, but some fits could not be made (see Problems)"
    lines += [f"Mode **{doc['mode']}**, {doc['runs_planned']} runs planned; status: {status}.",
              f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(doc['generated_at']))}. "
              "Machine-readable: [report.json](report.json).", ""]  # fmt: skip
    if result["problems"]:
        lines += ["## Problems", ""] + [f"- {p}" for p in result["problems"]] + [""]
    return lines


def _runs_lines(rows: list[RunRow]) -> list[str]:
    """The Runs table: one row per run."""
    lines = ["## Runs", "", "| run | depth | status | N (scaling) | tokens | D/N | FLOPs | final loss | val bpb | CORE | MFU (trainer) |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        t = r.table()
        core = fmt_number(t["core"], ".4f") + (" (partial)" if r.core_partial else "")
        lines.append(
            f"| {r.name} | {r.depth} | {r.status} | {fmt_number(t['params'], '.3g')} | {fmt_number(t['tokens'], '.3g')} | "
            f"{fmt_number(t['tokens_per_param'], '.2f')} | {fmt_number(t['flops'], '.3g')} | {fmt_number(t['final_loss'], '.4f')} | "
            f"{fmt_number(t['val_bpb'], '.4f')} | {core} | {fmt_number(t['mfu'], '.1%')} |"
        )
    return lines


def _power_law_lines(fits: dict[str, Any]) -> list[str]:
    """The Fits section's power-law table (ratio and isoFLOP laws) and the isoFLOP optima."""
    lines = ["", "## Fits", "", "Power laws y ∝ C^k by least squares on logs; 95% t-intervals.", "",
             "| law | exponent | 95% CI | R² | points |", "|---|---:|---|---:|---:|"]  # fmt: skip
    if "ratio" in fits:
        r = fits["ratio"]
        for name, key in (
            ("N ∝ C^a", "params_law"),
            ("D ∝ C^b", "tokens_law"),
            ("loss ∝ C^-c", "loss_law"),
            ("bpb ∝ C^k", "bpb_law"),
        ):
            lines.append(_law_row(name, r.get(key)))
    iso = fits.get("isoflop")
    if iso is not None:
        for name, law in (("N_opt ∝ C^a", iso.params_law), ("D_opt ∝ C^b", iso.tokens_law),
                          ("loss_opt ∝ C^k", iso.loss_law), ("(D/N)_opt ∝ C^(b-a)", iso.ratio_law)):  # fmt: skip
            lines.append(_law_row(name, law))
        lines += ["", "IsoFLOP optima (vertex of a parabola of loss over log N, per budget):", "",
                  "| budget | N_opt | D_opt | D/N | loss | runs | note |", "|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for o in iso.optima:
            lines.append(f"| {o.budget_flops:.3g} | {o.params:.3g} | {o.tokens:.3g} | {o.tokens_per_param:.2f} | "
                         f"{o.loss:.4f} | {o.runs} | {o.message or ''} |")  # fmt: skip
    return lines


def _chinchilla_lines(fits: dict[str, Any]) -> list[str]:
    """Approach 3's fitted law with its intervals, or why it was not made."""
    ch = fits.get("chinchilla")
    lines = [""]
    if ch is not None:
        form = " with one shared exponent α = β (Gadre et al. 2024)" if ch.form == "shared" else ""
        lines += [f"Chinchilla Approach 3, L = E + A/N^α + B/D^β{form} (Huber δ=1e-3 on log-loss, L-BFGS, bootstrap 95% CI):", "",
                  "| E | A | B | α | β | a = β/(α+β) |", "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        ci = ch.ci

        def c(k: str, f: str) -> str:
            v = getattr(ch, k)
            return f"{v:{f}}" + (f" [{ci[k][0]:{f}}, {ci[k][1]:{f}}]" if k in ci else "")

        lines.append(
            f"| {c('E', '.3f')} | {c('A', '.3g')} | {c('B', '.3g')} | {c('alpha', '.3f')} | {c('beta', '.3f')} | {c('a', '.3f')} |"
        )
        for flag in ch.on_bounds:
            lines.append(f"- **Parameter on a bound**: {flag}.")
    elif fits.get("chinchilla_note"):
        lines.append(f"Chinchilla Approach 3: {fits['chinchilla_note']}.")
    return lines


def _approaches_lines(fits: dict[str, Any]) -> list[str]:
    """Approach 2 beside Approach 3, per budget, where both were made."""
    cmp_ = fits.get("approaches")
    if cmp_ is None:
        return []
    lines = ["", "Approach 2 (each budget's parabola vertex) beside Approach 3 (the fitted law's optimum): a "
             "parabola's vertex is biased where the valley is asymmetric (α ≠ β) and the sampled sizes sit off "
             "centre or span decades (see science/fit/approaches.py).", "",
             "| budget | N_opt, Approach 2 | N_opt, Approach 3 | 2 vs 3 |", "|---:|---:|---:|---:|"]  # fmt: skip
    for b in cmp_.budgets:
        lines.append(f"| {b.budget_flops:.3g} | {b.approach2_params:.3g} | {b.approach3_params:.3g} | "
                     f"{b.difference:+.1%} |")  # fmt: skip
    lines.append(f"| a (N_opt ∝ C^a) | {fmt_number(cmp_.approach2_a, '.3f')} | {cmp_.approach3_a:.3f} | |")
    return lines


def _wsd_and_core_lines(fits: dict[str, Any]) -> list[str]:
    """The WSD optimum tokens per parameter, the branch-vs-twin checks and the CORE law."""
    lines: list[str] = []
    opt = fits.get("wsd_optimal_ratio")
    if opt is not None and not opt.identified:
        lines += ["", f"Compute-optimal tokens per parameter at C = {opt.compute:.3g} FLOPs (Approach 3 on the WSD "
                  f"branches): **{opt.note}**."]  # fmt: skip
    elif opt is not None:
        lines += ["", f"Compute-optimal tokens per parameter at C = {opt.compute:.3g} FLOPs (Approach 3 on the WSD "
                  f"branches): **{opt.ratio:.3g}** (95% interval {opt.low:.3g} to {opt.high:.3g}, "
                  f"{opt.resamples} resamples)."]  # fmt: skip
    for point, diff in (fits.get("wsd_twins") or {}).items():
        lines.append(f"- Branch vs independent twin at {point} tokens/param: final val bpb differs by {diff:+.2%}"
                     f" (target within ±1.5%; the twin trains from step 0 with the same batch and schedule and "
                     f"its own seed).")  # fmt: skip
    cf = fits.get("core")
    if cf is not None:
        lines += ["", f"CORE = {cf.intercept:.4f} + {cf.slope:.4f} · log10(C) (R² {cf.r2:.3f}, {cf.points} points; "
                  f"slope 95% CI [{fmt_number(cf.slope_ci[0])}, {fmt_number(cf.slope_ci[1])}])."]  # fmt: skip
    return lines


def _checks_lines(checks: dict[str, Any]) -> list[str]:
    """The Checks section: curves crossing, exponents near one half, the collapse."""
    lines = ["## Checks", ""]
    cc = checks["curves_cross"]
    lines.append(f"- Curves cross: **{'yes' if cc else 'no' if cc is False else 'not checked (fewer than 2 runs)'}**")
    for x in checks["crossings"]:
        lines.append(f"  - {x.kind}: {x.smaller} vs {x.larger}: {x.detail}")
    lines.append(f"  - definition: {checks['crossing_definition']}")
    for key, what in (("params_exponent_near_half", "a"), ("tokens_exponent_near_half", "b")):
        v = checks[key]
        lines.append(
            f"- {what} ≈ 0.5 within its 95% CI: {'yes' if v else 'no' if v is False else 'unknown (too few points)'}"
        )
    if checks.get("equal_scaling_note"):
        lines.append(f"  - note: {checks['equal_scaling_note']}")
    if checks.get("collapse") is not None:
        lines += collapse_line(checks["collapse"])
    return lines


def _extrapolation_lines(doc: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """The Extrapolation section: compute, GPU-hours and dollars to each target CORE."""
    lines = ["", "## Extrapolation", "",
             f"Compute to reach a target CORE from the CORE fit; GPU-hours at {doc['peak_flops_per_gpu']:.3g} FLOP/s per GPU and "
             f"{result['mfu_used']:.2%} MFU ({'measured: mean achieved FLOP/s per device over runs' if result['mfu_measured'] else 'assumed: no run measured it'}), "
             f"${doc['price_per_gpu_hour']}/GPU-hour.", "",
             "| target | CORE | FLOPs | × or ÷ (rollout) | GPU-hours | USD | N_opt | D_opt | ≈ depth | note |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    if not result["extrapolation"]:
        lines.append("| – | – | – | – | – | – | – | – | – | no CORE fit (see Problems) |")
    for e in result["extrapolation"]:
        lines.append(f"| {e.target} | {e.core:.4f} | {fmt_number(e.flops, '.3g')} | {fmt_number(e.rollout_factor, '.3g')} | "
                     f"{fmt_number(e.gpu_hours, ',.1f')} | "
                     f"{fmt_number(e.cost_usd, ',.0f')} | {fmt_number(e.params, '.3g')} | {fmt_number(e.tokens, '.3g')} | "
                     f"{'d' + str(e.depth) if e.depth else '–'} | {e.message or ''} |")  # fmt: skip
    return lines


PLOT_TITLES = {"loss_vs_tokens": "Loss vs tokens", "loss_vs_flops": "Loss vs FLOPs", "final_loss_vs_compute": "Final loss vs compute",
               "isoflop": "IsoFLOP curves and optima", "wsd_loss_vs_ratio": "WSD: loss vs tokens per parameter, per depth",
               "wsd_optimal_ratio": "WSD: fitted optimum tokens per parameter vs compute",
               "core_vs_compute": "CORE vs compute"}  # fmt: skip


def _plot_lines(plots: list[str]) -> list[str]:
    """The Plots section: each drawn plot, in a fixed order, with its SVG."""
    lines = ["", "## Plots", ""]
    for name in [n for n in PLOT_TITLES if f"{n}.png" in plots]:
        lines += [
            f"### {PLOT_TITLES.get(name, name)}",
            "",
            f"![{PLOT_TITLES.get(name, name)}]({name}.png)",
            f"([SVG]({name}.svg))",
            "",
        ]
    return lines


def render_markdown(doc: dict[str, Any], result: dict[str, Any], rows: list[RunRow], plots: list[str]) -> str:
    """One sweep's report.md: status, problems, runs, fits, checks, extrapolation and plots."""
    fits = result["fits"]
    lines = [
        *_status_lines(doc, result),
        *_runs_lines(rows),
        *_power_law_lines(fits),
        *_chinchilla_lines(fits),
        *_approaches_lines(fits),
        *_wsd_and_core_lines(fits),
        "",
        *rollout_lines((fits.get("rollout") or {}) | {"core_route": fits.get("core_route")}),
        *_checks_lines(result["checks"]),
        *_extrapolation_lines(doc, result),
        *_plot_lines(plots),
    ]
    return "\n".join(lines) + "\n"


def _headline(doc: dict[str, Any]) -> dict[str, str]:
    st = fit_status(doc)
    ext = {e["target"]: e for e in doc["extrapolation"]}
    g2 = ext.get("GPT-2 small", {})
    return {
        "mode": doc["mode"],
        "runs finished": f"{doc['runs_finished']}/{doc['runs_planned']}",
        "a (N ∝ C^a)": fmt_number(st.params_exponent),
        "b (D ∝ C^b)": fmt_number(st.tokens_exponent),
        "loss exponent c": fmt_number(st.loss_exponent),
        "tokens per param": fmt_number(st.tokens_per_param, ".2f"),
        "curves cross": str(st.curves_cross),
        "best final loss": fmt_number(
            min([r["final_loss"] for r in doc["runs"] if r["final_loss"]], default=None), ".4f"
        ),
        "best CORE": fmt_number(max([r["core"] for r in doc["runs"] if r["core"] is not None], default=None), ".4f"),
        "FLOPs to GPT-2 small CORE": fmt_number(g2.get("flops"), ".3g"),
        "USD to GPT-2 small CORE": fmt_number(g2.get("cost_usd"), ",.0f"),
        "partial": str(doc["partial"]),
    }


def render_comparison(doc_a: dict[str, Any], doc_b: dict[str, Any]) -> str:
    """Two sweeps' headlines side by side (the report.md under `<a>/report/compare-<b>/`)."""
    a, b = doc_a["sweep"], doc_b["sweep"]
    ha, hb = _headline(doc_a), _headline(doc_b)
    lines = [f"# `{a}` vs `{b}`", "", f"| | {a} | {b} |", "|---|---:|---:|"]
    lines += [f"| {k} | {ha[k]} | {hb[k]} |" for k in ha]
    lines += ["", "## Per depth", "", *render_depths(a, b, depth_rows(doc_a, doc_b))]
    lines += ["", f"Full reports: [{a}](../report.md), [{b}](../../../{b}/report/report.md).", "",
              "![final loss vs compute](final_loss_vs_compute.png)", ""]  # fmt: skip
    return "\n".join(lines)
