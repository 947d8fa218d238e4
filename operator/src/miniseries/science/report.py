"""The sweep report: `<store>/<namespace>/<sweep>/report/{report.json, report.md, *.png, *.svg}`.

It reads only what the trainer wrote (results.json, loss_curve.jsonl, through
`miniseries.contract.results`) and the plan (`miniseries.control.plan`), fits what the data can
support (`miniseries.science.fit`), and always writes what it can: a run without
results, a NaN loss or too few runs for a fit is a line under "Problems" and a
`partial` mark, never a crash and never a silently smaller table.

`build_report(store, layout, spec)` is what the operator calls in-process; the
CLI (`miniseries report A [B]`) wraps it, and with two sweeps writes a
side-by-side comparison under the first sweep's report folder.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from miniseries.api.spec import FitStatus, Mode, ScalingSweepSpec
from miniseries.contract.layout import LOCAL_NAMESPACE, SweepLayout, join_uri
from miniseries.contract.results import ResultsError, RunResults, read_loss_curve, read_results
from miniseries.contract.store import Store, StoreError
from miniseries.control.accepted import load_spec
from miniseries.control.plan import make_plan
from miniseries.science.fit import (
    DEFAULT_CORE_TARGETS,
    GPT2_CORE,
    FitError,
    check_crossings,
    exponent_near_half,
    extrapolate,
    fit_chinchilla,
    fit_core,
    fit_isoflop,
    fit_power_law,
)

REPORT_SCHEMA_VERSION = 1
#: nanochat's estimates of CORE for GPT-3 (dev/estimate_gpt3_core.ipynb): never measured, calibrated on GPT-2.
GPT3_CORE_ESTIMATED = {"GPT-3 Small (125M, est.)": 0.1484, "GPT-3 XL (1.3B, est.)": 0.2914}


class ReportError(RuntimeError):
    pass


@dataclass
class RunRow:
    name: str
    depth: int
    budget_flops: float | None
    status: str  # finished | missing | invalid
    params: float | None = None
    tokens: float | None = None
    flops: float | None = None
    final_loss: float | None = None
    val_bpb: float | None = None
    core: float | None = None
    core_partial: bool = False
    mfu: float | None = None  # as the trainer reported it
    gpu_seconds: float | None = None
    achieved_flops_per_device: float | None = None  # training FLOP/s per GPU (or CPU process), measured
    warmup_tokens: float = 0.0
    curve: list[tuple[float, float, float]] = field(default_factory=list)  # (tokens, flops, loss)
    message: str | None = None

    @property
    def usable(self) -> bool:
        return self.status == "finished" and self.final_loss is not None

    def table(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in self.__dict__.items() if k != "curve"} | {
            "tokens_per_param": _finite(self.tokens / self.params) if self.tokens and self.params else None
        }


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


# ---------------------------------------------------------------- gathering


def _row_from_results(row: RunRow, res: RunResults, curve: list[dict[str, float]], warmup_steps: int) -> RunRow:
    row.status = "finished"
    row.params = float(res.params.get("scaling") or res.params.get("total") or 0) or None
    row.tokens, row.flops = float(res.tokens), float(res.flops)
    row.final_loss = res.loss.final
    row.val_bpb, row.mfu, row.gpu_seconds = res.val_bpb, res.mfu, res.gpu_seconds
    world = max(1, res.world_size)
    if res.tokens_per_second and res.tokens_per_second > 0:
        row.achieved_flops_per_device = res.tokens_per_second * res.flops_per_token / world
    elif res.wall_seconds > 0:
        row.achieved_flops_per_device = res.flops / res.wall_seconds / world
    row.warmup_tokens = float(warmup_steps * res.total_batch_tokens)
    if res.core is not None:
        row.core, row.core_partial = res.core.core, res.core.partial
        if res.core.partial:
            row.message = f"CORE partial (missing {', '.join(res.core.missing_tasks) or 'tasks'}): not used in fits"
    for p in curve:
        t, loss = p.get("tokens"), p.get("loss")
        if t is None or loss is None:
            continue
        f = p.get("flops", float(t) * res.flops_per_token)
        row.curve.append((float(t), float(f), float(loss)))
    if row.final_loss is None or not math.isfinite(row.final_loss):
        row.status, row.message = (
            "invalid",
            f"final loss is {row.final_loss} (missing or NaN): the run diverged or logged nothing",
        )
        row.final_loss = None
    return row


def gather_runs(store: Store, layout: SweepLayout, spec: ScalingSweepSpec | None) -> tuple[list[RunRow], list[str]]:
    """One row per planned run (or per results.json found, without a spec)."""
    problems: list[str] = []
    planned: list[tuple[str, int, float | None]] = []
    warmup = spec.training.warmup_steps if spec else 0
    if spec is not None:
        planned = [(r.name, r.depth, r.budget_flops) for r in make_plan(spec).runs]
    else:
        for key in store.list(layout.root):
            parts = key[len(layout.root) :].split("/")
            if len(parts) == 2 and parts[1] == "results.json":
                planned.append((parts[0], 0, None))
    rows = []
    for name, depth, budget in planned:
        row = RunRow(name, depth, budget, "missing")
        run = layout.run(name)
        try:
            res = read_results(store, run)
        except (ResultsError, StoreError) as e:
            row.status, row.message = "invalid", str(e)
            problems.append(f"{name}: {e}")
            rows.append(row)
            continue
        if res is None:
            row.message = "no results.json yet (not finished)"
            problems.append(f"{name}: no results (not finished); left out of the fits")
            rows.append(row)
            continue
        row.depth, row.budget_flops = res.depth, res.budget_flops
        try:
            curve = read_loss_curve(store, run)
        except (json.JSONDecodeError, StoreError) as e:
            curve = []
            problems.append(f"{name}: loss curve unreadable ({e}); plotted without it")
        _row_from_results(row, res, curve, warmup)
        if row.status == "invalid":
            problems.append(f"{name}: {row.message}; left out of the fits")
        rows.append(row)
    rows.sort(key=lambda r: (r.budget_flops or 0.0, r.depth, r.name))
    return rows, problems


# ---------------------------------------------------------------- fitting


def _try(problems: list[str], what: str, fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except FitError as e:
        problems.append(f"{what}: {e}")
        return None


def fit_sweep(rows: list[RunRow], mode: Mode, *, peak: float, mfu_assumed: float, price: float,
              warmdown_ratio: float, targets: dict[str, float], bootstrap: int = 100) -> dict[str, Any]:  # fmt: skip
    """Every fit the finished runs support, plus the checks and the extrapolation."""
    problems: list[str] = []
    ok = [r for r in rows if r.usable and r.params and r.flops]
    fits: dict[str, Any] = {}
    params_law = tokens_law = None
    if mode is Mode.ratio:
        if len(ok) < 2:
            problems.append(f"ratio fits need at least 2 finished runs, have {len(ok)}")
        else:
            c = [r.flops for r in ok]
            params_law = _try(problems, "N over C", fit_power_law, c, [r.params for r in ok], "N over C")
            tokens_law = _try(problems, "D over C", fit_power_law, c, [r.tokens for r in ok], "D over C")
            loss_law = _try(problems, "loss over C", fit_power_law, c, [r.final_loss for r in ok], "loss over C")
            fits["ratio"] = {"params_law": params_law, "tokens_law": tokens_law, "loss_law": loss_law}
            bpb = [r for r in ok if r.val_bpb and math.isfinite(r.val_bpb)]
            if len(bpb) >= 2:
                fits["ratio"]["bpb_law"] = _try(problems, "bpb over C", fit_power_law, [r.flops for r in bpb],
                                                [r.val_bpb for r in bpb], "bpb over C")  # fmt: skip
        fits["chinchilla"] = None
        fits["chinchilla_note"] = ("not fitted: in ratio mode every run has the same D/N, so A/N^alpha and "
                                   "B/D^beta cannot be told apart; use an isoFLOP sweep for Approach 3")  # fmt: skip
    else:
        iso_rows = [{"budget_flops": r.budget_flops, "params": r.params, "tokens": r.tokens, "loss": r.final_loss}
                    for r in ok if r.budget_flops]  # fmt: skip
        iso = fit_isoflop(iso_rows) if iso_rows else None
        if iso is None:
            problems.append("isoFLOP fit: no finished runs")
        elif iso.message:
            problems.append(f"isoFLOP fit: {iso.message}")
        fits["isoflop"] = iso
        if iso is not None:
            params_law, tokens_law = iso.params_law, iso.tokens_law
        fits["chinchilla"] = _try(problems, "Chinchilla Approach 3", fit_chinchilla, [r.params for r in ok],
                                  [r.tokens for r in ok], [r.final_loss for r in ok], bootstrap=bootstrap)  # fmt: skip

    # CORE against compute and the extrapolation.
    cored = [r for r in ok if r.core is not None and not r.core_partial]
    # Measured MFU against the spec's peak: the trainer's own MFU may use another peak (a CPU
    # guess, a different GPU), so the achieved FLOP/s per device is what we carry over.
    mfus = [r.achieved_flops_per_device / peak for r in ok if r.achieved_flops_per_device]
    mfu = sum(mfus) / len(mfus) if mfus else mfu_assumed
    core_fit = None
    if mode is Mode.isoflop:
        # Per budget only the best model counts: CORE of the compute-optimal frontier.
        best: dict[float, RunRow] = {}
        for r in cored:
            if r.budget_flops and (r.budget_flops not in best or r.core > best[r.budget_flops].core):  # type: ignore[operator]
                best[r.budget_flops] = r
        cored = list(best.values())
    if len(cored) >= 2:
        core_fit = _try(problems, "CORE over C", fit_core, [r.flops for r in cored], [r.core for r in cored])
    elif not any(r.core is not None for r in ok):
        problems.append(
            "CORE fit needs at least 2 runs with a full CORE score, have 0: no run was evaluated on CORE (no eval "
            "bundle: set spec.data.evalBundleUri; `miniseries data fetch --eval-bundle` downloads DCLM's, and "
            "`miniseries run --local` then uses it from the cache)"
        )
    else:
        problems.append(f"CORE fit needs at least 2 runs with a full CORE score, have {len(cored)}")
    extrap = []
    if core_fit is not None:
        extrap = extrapolate(core_fit, targets, peak_flops_per_gpu=peak, mfu=mfu, price_per_gpu_hour=price,
                             max_compute_seen=max(r.flops for r in cored), params_law=params_law,
                             tokens_law=tokens_law)  # fmt: skip
    fits["core"] = core_fit

    # Checks.
    curve_runs = [{"name": r.name, "params": r.params, "final_loss": r.final_loss if mode is Mode.ratio else None,
                   "curve": [(t, loss) for t, _f, loss in r.curve], "warmup_tokens": r.warmup_tokens} for r in ok]  # fmt: skip
    crossings = check_crossings(curve_runs, warmdown_ratio=warmdown_ratio)
    checks = {
        "crossings": crossings,
        "curves_cross": bool(crossings) if len(ok) >= 2 else None,
        "params_exponent_near_half": exponent_near_half(params_law),
        "tokens_exponent_near_half": exponent_near_half(tokens_law),
        "crossing_definition": (
            "final_order: in ratio mode a larger model's final loss must be lower. tokens_axis: at equal training "
            "tokens, after both warmups and before the smaller run's warmdown, a larger model's smoothed loss must "
            "not exceed the smaller's by more than 1% on more than 10% of the shared range. Loss against FLOPs is "
            "plotted but not checked: one crossing there is the compute-optimal frontier itself."
        ),
    }
    if mode is Mode.ratio and len(ok) >= 2:
        checks["equal_scaling_note"] = ("in ratio mode D = r x N by construction, so a = b = 0.5 only up to the "
                                        "attention FLOPs; the informative exponents come from an isoFLOP sweep")  # fmt: skip
    return {"fits": fits, "extrapolation": extrap, "checks": checks, "problems": problems, "mfu_used": mfu,
            "mfu_measured": bool(mfus), "runs_fitted": len(ok)}  # fmt: skip


# ---------------------------------------------------------------- plots


def _plots(rows: list[RunRow], result: dict[str, Any], mode: Mode, targets: dict[str, float]) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    out: dict[str, bytes] = {}
    depths = sorted({r.depth for r in rows})
    cmap = plt.get_cmap("viridis")
    color = {d: cmap(i / max(1, len(depths) - 1) * 0.9) for i, d in enumerate(depths)}

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    def plain_log_y(ax: Any) -> None:
        # Losses span less than a decade: 2, 3, 4 reads better than 2x10^0.
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())

    def save(fig: Any, name: str) -> None:
        for ext in ("png", "svg"):
            buf = io.BytesIO()
            fig.savefig(buf, format=ext, dpi=110, bbox_inches="tight")
            out[f"{name}.{ext}"] = buf.getvalue()
        plt.close(fig)

    with_curve = [r for r in rows if r.curve]
    for axis, idx, label in (("tokens", 0, "training tokens"), ("flops", 1, "training FLOPs")):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        seen = set()
        for r in with_curve:
            xs = [p[idx] for p in r.curve if p[idx] > 0 and math.isfinite(p[2])]
            ys = [p[2] for p in r.curve if p[idx] > 0 and math.isfinite(p[2])]
            lab = f"d{r.depth}" if r.depth not in seen else None
            seen.add(r.depth)
            ax.plot(xs, ys, color=color[r.depth], lw=1.2, label=lab, alpha=0.9)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("training loss (nats/token)")
        plain_log_y(ax)
        ax.set_title(f"loss vs {label}" + ("" if with_curve else " (no loss curves yet)"))
        ax.grid(True, which="both", alpha=0.3)
        if with_curve:
            ax.legend(title="depth", fontsize=8)
        save(fig, f"loss_vs_{axis}")

    ok = [r for r in rows if r.usable and r.flops]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in ok:
        ax.scatter(r.flops, r.final_loss, color=color[r.depth], zorder=3, s=30)
        ax.annotate(r.name, (r.flops, r.final_loss), fontsize=7, xytext=(3, 3), textcoords="offset points")
    fits = result["fits"]
    law = (
        (fits.get("ratio") or {}).get("loss_law")
        if mode is Mode.ratio
        else getattr(fits.get("isoflop"), "loss_law", None)
    )
    if law is not None and ok:
        cs = np.geomspace(min(r.flops for r in ok) / 2, max(r.flops for r in ok) * 4, 50)
        ax.plot(cs, law(cs), "k--", lw=1, label=f"loss ∝ C^{law.exponent:.3f}")
        ax.legend(fontsize=8)
    if mode is Mode.isoflop and fits.get("isoflop"):
        for o in fits["isoflop"].optima:
            ax.scatter(o.budget_flops, o.loss, marker="*", s=140, color="crimson", edgecolors="k", zorder=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel("final loss")
    plain_log_y(ax)
    ax.set_title("final loss vs compute" + ("" if law else " (no fit: see Problems)"))
    ax.grid(True, which="both", alpha=0.3)
    save(fig, "final_loss_vs_compute")

    if mode is Mode.isoflop:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
        budgets = sorted({r.budget_flops for r in ok if r.budget_flops})
        bcol = {b: plt.get_cmap("plasma")(i / max(1, len(budgets) - 1) * 0.85) for i, b in enumerate(budgets)}
        iso = fits.get("isoflop")
        for b in budgets:
            rs = sorted([r for r in ok if r.budget_flops == b], key=lambda r: r.params or 0)
            ax.scatter([r.params for r in rs], [r.final_loss for r in rs], color=bcol[b], label=f"{b:.2g}", s=25)
            if len(rs) >= 3:
                x = np.log([r.params for r in rs])
                p = np.polyfit(x, [r.final_loss for r in rs], 2)
                xx = np.linspace(x.min() - 0.2, x.max() + 0.2, 60)
                ax.plot(np.exp(xx), np.polyval(p, xx), "--", color=bcol[b], lw=1)
        if iso:
            for o in iso.optima:
                ax.scatter(
                    o.params, o.loss, marker="*", s=160, color=bcol.get(o.budget_flops, "k"), edgecolors="k", zorder=4
                )
        ax.set_xscale("log")
        ax.set_xlabel("scaling params N")
        ax.set_ylabel("final loss")
        ax.set_title("isoFLOP curves (star: parabola vertex)")
        if budgets:
            ax.legend(title="FLOPs", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        if iso and iso.params_law and iso.tokens_law:
            cs = np.array([o.budget_flops for o in iso.optima])
            ax2.scatter(
                cs, [o.params for o in iso.optima], color="C0", label=f"N_opt ∝ C^{iso.params_law.exponent:.2f}"
            )
            ax2.scatter(
                cs, [o.tokens for o in iso.optima], color="C1", label=f"D_opt ∝ C^{iso.tokens_law.exponent:.2f}"
            )
            cc = np.geomspace(cs.min() / 2, cs.max() * 2, 40)
            ax2.plot(cc, iso.params_law(cc), "C0--", lw=1)
            ax2.plot(cc, iso.tokens_law(cc), "C1--", lw=1)
            ax2.legend(fontsize=8)
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("FLOP budget C")
        ax2.set_title("compute-optimal N and D" + ("" if iso and iso.params_law else " (needs 2+ budgets)"))
        ax2.grid(True, which="both", alpha=0.3)
        save(fig, "isoflop")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    cored = [r for r in ok if r.core is not None and not r.core_partial]
    for r in cored:
        ax.scatter(r.flops, r.core, color=color[r.depth], s=30, zorder=3)
        if mode is Mode.ratio:  # isoFLOP sweeps stack many runs per budget: labels would overprint
            ax.annotate(r.name, (r.flops, r.core), fontsize=7, xytext=(3, 3), textcoords="offset points")
    core_fit = fits.get("core")
    xmax = max([r.flops for r in cored], default=1e18) * 4
    for e in result["extrapolation"]:
        if e.flops:
            xmax = max(xmax, e.flops * 1.5)
    if core_fit is not None and cored:
        cc = np.geomspace(min(r.flops for r in cored) / 2, xmax, 60)
        ax.plot(
            cc,
            core_fit.predict(cc),
            "k--",
            lw=1,
            label=f"CORE = {core_fit.intercept:.3f} + {core_fit.slope:.3f}·log10 C",
        )
        for e in result["extrapolation"]:
            if e.flops:
                ax.scatter(e.flops, e.core, marker="x", color="crimson", zorder=4)
    for name, v in {**GPT2_CORE, **GPT3_CORE_ESTIMATED}.items():
        ls = ":" if "est." in name else "-"
        ax.axhline(v, color="grey", lw=0.8, ls=ls)
        ax.text(1.0, v, f" {name} {v:.3f}", transform=ax.get_yaxis_transform(), fontsize=7, va="center", ha="left")
    ax.set_xscale("log")
    if not cored:
        # Nothing to plot but the reference levels: keep the axes on the sweep's compute range.
        xs = [r.flops for r in ok] or [1e18]
        ax.set_xlim(min(xs) / 3, max(xs) * 3)
        ax.set_ylim(0, 0.45)
        why = (
            "CORE partial (eval bundle incomplete)"
            if any(r.core_partial for r in ok)
            else "no CORE scores (no eval bundle)"
        )
        ax.text(0.5, 0.6, why, transform=ax.transAxes, ha="center", color="crimson")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel("CORE")
    ax.set_title("CORE vs compute" + ("" if core_fit else " (no fit: see Problems)"))
    ax.grid(True, which="both", alpha=0.3)
    if core_fit is not None:
        ax.legend(fontsize=8, loc="upper left")
    save(fig, "core_vs_compute")
    return out


# ---------------------------------------------------------------- markdown


def _fmt(v: Any, spec: str = ".4g") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return format(v, spec)


def _law_row(name: str, law: Any) -> str:
    if law is None:
        return f"| {name} | – | – | – | – |"
    lo, hi = law.exponent_ci
    return f"| {name} | {law.exponent:.4f} | [{_fmt(lo)}, {_fmt(hi)}] | {law.r2:.4f} | {law.points} |"


def render_markdown(doc: dict[str, Any], result: dict[str, Any], rows: list[RunRow], plots: list[str]) -> str:
    fits, checks = result["fits"], result["checks"]
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
    lines += ["## Runs", "", "| run | depth | status | N (scaling) | tokens | D/N | FLOPs | final loss | val bpb | CORE | MFU (trainer) |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        t = r.table()
        core = _fmt(t["core"], ".4f") + (" (partial)" if r.core_partial else "")
        lines.append(
            f"| {r.name} | {r.depth} | {r.status} | {_fmt(t['params'], '.3g')} | {_fmt(t['tokens'], '.3g')} | "
            f"{_fmt(t['tokens_per_param'], '.2f')} | {_fmt(t['flops'], '.3g')} | {_fmt(t['final_loss'], '.4f')} | "
            f"{_fmt(t['val_bpb'], '.4f')} | {core} | {_fmt(t['mfu'], '.1%')} |"
        )
    lines += ["", "## Fits", "", "Power laws y ∝ C^k by least squares on logs; 95% t-intervals.", "",
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
    ch = fits.get("chinchilla")
    lines.append("")
    if ch is not None:
        lines += ["Chinchilla Approach 3, L = E + A/N^α + B/D^β (Huber δ=1e-3 on log-loss, L-BFGS, bootstrap 95% CI):", "",
                  "| E | A | B | α | β | a = β/(α+β) |", "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        ci = ch.ci

        def c(k: str, f: str) -> str:
            v = getattr(ch, k)
            return f"{v:{f}}" + (f" [{ci[k][0]:{f}}, {ci[k][1]:{f}}]" if k in ci else "")

        lines.append(
            f"| {c('E', '.3f')} | {c('A', '.3g')} | {c('B', '.3g')} | {c('alpha', '.3f')} | {c('beta', '.3f')} | {c('a', '.3f')} |"
        )
    elif fits.get("chinchilla_note"):
        lines.append(f"Chinchilla Approach 3: {fits['chinchilla_note']}.")
    cf = fits.get("core")
    if cf is not None:
        lines += ["", f"CORE = {cf.intercept:.4f} + {cf.slope:.4f} · log10(C) (R² {cf.r2:.3f}, {cf.points} points; "
                  f"slope 95% CI [{_fmt(cf.slope_ci[0])}, {_fmt(cf.slope_ci[1])}])."]  # fmt: skip
    lines += ["", "## Checks", ""]
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
    lines += ["", "## Extrapolation", "",
              f"Compute to reach a target CORE from the CORE fit; GPU-hours at {doc['peak_flops_per_gpu']:.3g} FLOP/s per GPU and "
              f"{result['mfu_used']:.2%} MFU ({'measured: mean achieved FLOP/s per device over runs' if result['mfu_measured'] else 'assumed: no run measured it'}), "
              f"${doc['price_per_gpu_hour']}/GPU-hour.", "",
              "| target | CORE | FLOPs | GPU-hours | USD | N_opt | D_opt | ≈ depth | note |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    if not result["extrapolation"]:
        lines.append("| – | – | – | – | – | – | – | – | no CORE fit (see Problems) |")
    for e in result["extrapolation"]:
        lines.append(f"| {e.target} | {e.core:.4f} | {_fmt(e.flops, '.3g')} | {_fmt(e.gpu_hours, ',.1f')} | "
                     f"{_fmt(e.cost_usd, ',.0f')} | {_fmt(e.params, '.3g')} | {_fmt(e.tokens, '.3g')} | "
                     f"{'d' + str(e.depth) if e.depth else '–'} | {e.message or ''} |")  # fmt: skip
    lines += ["", "## Plots", ""]
    titles = {"loss_vs_tokens": "Loss vs tokens", "loss_vs_flops": "Loss vs FLOPs", "final_loss_vs_compute": "Final loss vs compute",
              "isoflop": "IsoFLOP curves and optima", "core_vs_compute": "CORE vs compute"}  # fmt: skip
    for name in [n for n in titles if f"{n}.png" in plots]:
        lines += [
            f"### {titles.get(name, name)}",
            "",
            f"![{titles.get(name, name)}]({name}.png)",
            f"([SVG]({name}.svg))",
            "",
        ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- entry points


def depth_for_compute(spec: ScalingSweepSpec, flops: float | None) -> int | None:
    """The smallest depth whose run at the sweep's tokens:params ratio spends at least `flops`.

    Answers "which model of this family would that be": the extrapolation's
    FLOPs in the units the user dials (depth), from the same shapes arithmetic.
    """
    from miniseries.api.spec import MAX_DEPTH
    from miniseries.contract import shapes
    from miniseries.control.plan import shape_for

    if flops is None:
        return None
    for depth in range(1, MAX_DEPTH + 1):
        shape = shape_for(spec, depth)
        if shapes.training_flops(shape, shapes.tokens_for_ratio(shape, spec.training.tokens_per_param)) >= flops:
            return depth
    return None


def _to_json(x: Any) -> Any:
    if hasattr(x, "to_dict"):
        return x.to_dict()
    if isinstance(x, dict):
        return {k: _to_json(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_to_json(v) for v in x]
    return _finite(x)


def compute_report(store: Store, layout: SweepLayout, spec: ScalingSweepSpec | None,
                   targets: dict[str, float] | None = None, bootstrap: int = 100) -> tuple[dict[str, Any], dict[str, Any], list[RunRow]]:  # fmt: skip
    sweep = layout.sweep
    spec = spec or load_spec(store, layout)
    rows, problems = gather_runs(store, layout, spec)
    if spec is None:
        problems.insert(0, f"no spec for {sweep!r} (neither given nor at {layout.spec}): runs found from results.json alone, "
                           "price and peak FLOP/s are the API defaults")  # fmt: skip
        mode = Mode.isoflop if any(r.budget_flops for r in rows) else Mode.ratio
    else:
        mode = spec.training.mode
    from miniseries.api.spec import CostSpec, ResourceSpec, TrainingSpec

    res, cost, tr = (spec.resources, spec.cost, spec.training) if spec else (ResourceSpec(), CostSpec(), TrainingSpec())
    all_targets = {**DEFAULT_CORE_TARGETS, **(targets or {})}
    result = fit_sweep(rows, mode, peak=res.peak_flops_per_gpu, mfu_assumed=res.assumed_mfu, price=cost.price_per_gpu_hour,
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
        "fits": _to_json(result["fits"]),
        "extrapolation": _to_json(result["extrapolation"]),
        "checks": _to_json(result["checks"]),
        "problems": result["problems"],
    }
    return doc, result, rows


def fit_status(doc: dict[str, Any]) -> FitStatus:
    fits = doc["fits"]
    law_src = fits.get("ratio") or fits.get("isoflop") or {}
    pl, tl = law_src.get("params_law"), law_src.get("tokens_law")
    ll = law_src.get("loss_law")
    ratio = None
    if fits.get("isoflop") and fits["isoflop"].get("optima"):
        opt = fits["isoflop"]["optima"]
        ratio = opt[-1]["tokens_per_param"]  # at the largest budget: what to train at next
    elif doc["runs"]:
        ratios = [r["tokens_per_param"] for r in doc["runs"] if r.get("tokens_per_param") and r["status"] == "finished"]
        ratio = sum(ratios) / len(ratios) if ratios else None
    msg = "; ".join(doc["problems"])[:1000] or None
    return FitStatus(
        params_exponent=pl["exponent"] if pl else None,
        tokens_exponent=tl["exponent"] if tl else None,
        tokens_per_param=ratio,
        loss_exponent=-ll["exponent"] if ll else None,
        curves_cross=doc["checks"]["curves_cross"],
        partial=doc["partial"],
        runs_fitted=doc["runs_finished"],
        message=msg,
    )


def build_report(store: Store, layout: SweepLayout, spec: ScalingSweepSpec | None,
                 targets: dict[str, float] | None = None, bootstrap: int = 100) -> tuple[str, FitStatus]:  # fmt: skip
    """Write the report into `<store>/<namespace>/<sweep>/report/`; returns its URI and the headline fit."""
    doc, result, rows = compute_report(store, layout, spec, targets, bootstrap)
    mode = Mode(doc["mode"])
    plots = _plots(rows, result, mode, doc["core_targets"])
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a, b = la.sweep, lb.sweep
    docs = {}
    for layout, spec in ((la, spec_a), (lb, spec_b)):
        build_report(store, layout, spec)
        docs[layout.sweep] = json.loads(store.read_bytes(layout.report + "report.json"))
    prefix = la.report + f"compare-{b}/"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, doc) in enumerate(docs.items()):
        pts = [(r["flops"], r["final_loss"]) for r in doc["runs"] if r["status"] == "finished" and r["final_loss"]]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=f"C{i}", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel("final loss")
    ax.set_title(f"{a} vs {b}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    for ext in ("png", "svg"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=110, bbox_inches="tight")
        store.write_bytes(prefix + f"final_loss_vs_compute.{ext}", buf.getvalue())
    plt.close(fig)

    def head(doc: dict[str, Any]) -> dict[str, str]:
        st = fit_status(doc)
        ext = {e["target"]: e for e in doc["extrapolation"]}
        g2 = ext.get("GPT-2 small", {})
        return {
            "mode": doc["mode"],
            "runs finished": f"{doc['runs_finished']}/{doc['runs_planned']}",
            "a (N ∝ C^a)": _fmt(st.params_exponent),
            "b (D ∝ C^b)": _fmt(st.tokens_exponent),
            "loss exponent c": _fmt(st.loss_exponent),
            "tokens per param": _fmt(st.tokens_per_param, ".2f"),
            "curves cross": str(st.curves_cross),
            "best final loss": _fmt(
                min([r["final_loss"] for r in doc["runs"] if r["final_loss"]], default=None), ".4f"
            ),
            "best CORE": _fmt(max([r["core"] for r in doc["runs"] if r["core"] is not None], default=None), ".4f"),
            "FLOPs to GPT-2 small CORE": _fmt(g2.get("flops"), ".3g"),
            "USD to GPT-2 small CORE": _fmt(g2.get("cost_usd"), ",.0f"),
            "partial": str(doc["partial"]),
        }

    ha, hb = head(docs[a]), head(docs[b])
    lines = [f"# `{a}` vs `{b}`", "", f"| | {a} | {b} |", "|---|---:|---:|"]
    lines += [f"| {k} | {ha[k]} | {hb[k]} |" for k in ha]
    lines += ["", f"Full reports: [{a}](../report.md), [{b}](../../../{b}/report/report.md).", "",
              "![final loss vs compute](final_loss_vs_compute.png)", ""]  # fmt: skip
    store.write_bytes(prefix + "report.md", "\n".join(lines).encode())
    return join_uri(store.uri, prefix)


def build_report_cli(
    sweeps: list[str],
    *,
    store: str | None,
    spec_path: str | None,
    targets: list[tuple[str, float]],
    namespace: str = LOCAL_NAMESPACE,
) -> int:
    from miniseries.api.errors import SpecError
    from miniseries.api.sweepfile import load_sweep
    from miniseries.contract.store import open_store, path_to_uri

    if len(sweeps) > 2:
        raise ReportError(f"report takes one sweep or two to compare, got {len(sweeps)}: {sweeps}")
    uri = store if store and "://" in store else path_to_uri(store or "miniseries-store")
    try:
        st = open_store(uri)
    except StoreError as e:
        raise ReportError(str(e)) from None
    resolved: list[tuple[str, ScalingSweepSpec | None]] = []
    for i, s in enumerate(sweeps):
        path = spec_path if (spec_path and i == 0) else (s if s.endswith((".yaml", ".yml")) else None)
        if path:
            try:
                sw = load_sweep(path)
            except SpecError as e:
                raise ReportError(f"{path}: {e}") from None
            resolved.append((sw.name, sw.spec))
        else:
            resolved.append((s, None))
    try:
        layouts = [SweepLayout(namespace, name) for name, _spec in resolved]
    except ValueError as e:
        raise ReportError(str(e)) from None
    for layout in layouts:
        if not st.list(layout.root):
            raise ReportError(
                f"sweep {layout.sweep!r} has nothing under {st.uri}/{layout.root} (check --store, --namespace "
                "and the sweep name)"
            )
    tmap = dict(targets)
    if len(resolved) == 1:
        _name, spec = resolved[0]
        uri_out, status = build_report(st, layouts[0], spec, tmap)
        print(f"report: {uri_out}report.md")
        print(f"fit: a={_fmt(status.params_exponent)} b={_fmt(status.tokens_exponent)} "
              f"loss exponent={_fmt(status.loss_exponent)} runs={status.runs_fitted} partial={status.partial}")  # fmt: skip
        if status.message:
            print(f"problems: {status.message}")
        return 0
    (_a, sa), (_b, sb) = resolved
    print(f"comparison: {compare_reports(st, layouts[0], layouts[1], sa, sb)}report.md")
    return 0
