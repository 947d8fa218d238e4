"""The report's plots: PNG and SVG bytes by file name (matplotlib, imported only when plotting)."""

from __future__ import annotations

import math
from typing import Any

from miniseries.api.spec import Mode
from miniseries.science import figures
from miniseries.science.fit.wsd import ratio_at
from miniseries.science.reference import GPT2_CORE, GPT3_CORE_ESTIMATED
from miniseries.science.report.rows import RunRow


def _plain_log_y(ax: Any) -> None:
    """Losses span less than a decade: 2, 3, 4 reads better than 2x10^0."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def render_plots(rows: list[RunRow], result: dict[str, Any], mode: Mode) -> dict[str, bytes]:
    """Loss curves (against tokens and FLOPs), final loss and CORE against compute, isoFLOP curves."""
    plt = figures.pyplot()
    out: dict[str, bytes] = {}
    depths = sorted({r.depth for r in rows})
    cmap = plt.get_cmap("viridis")
    color = {d: cmap(i / max(1, len(depths) - 1) * 0.9) for i, d in enumerate(depths)}
    for axis, idx, label in (("tokens", 0, "training tokens"), ("flops", 1, "training FLOPs")):
        figures.save(_loss_curves(plt, rows, color, idx, label), f"loss_vs_{axis}", out)
    ok = [r for r in rows if r.usable and r.flops]
    fits = result["fits"]
    figures.save(_final_loss(plt, ok, fits, mode, color), "final_loss_vs_compute", out)
    if mode is Mode.isoflop:
        figures.save(_isoflop(plt, ok, fits.get("isoflop")), "isoflop", out)
    if mode is Mode.wsd:
        figures.save(_wsd_points(plt, ok, fits.get("chinchilla"), color), "wsd_loss_vs_ratio", out)
        figures.save(
            _wsd_optimum(plt, ok, fits.get("chinchilla"), fits.get("wsd_optimal_ratio")), "wsd_optimal_ratio", out
        )
    figures.save(_core(plt, ok, fits.get("core"), result["extrapolation"], mode, color), "core_vs_compute", out)
    return out


def _loss_curves(plt: Any, rows: list[RunRow], color: dict[int, Any], idx: int, label: str) -> Any:
    fig, ax = figures.figure(figsize=(7, 4.5))
    with_curve = [r for r in rows if r.curve]
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
    _plain_log_y(ax)
    ax.set_title(f"loss vs {label}" + ("" if with_curve else " (no loss curves yet)"))
    ax.grid(True, which="both", alpha=0.3)
    if with_curve:
        ax.legend(title="depth", fontsize=8)
    return fig


def _final_loss(plt: Any, ok: list[RunRow], fits: dict[str, Any], mode: Mode, color: dict[int, Any]) -> Any:
    import numpy as np

    fig, ax = figures.figure(figsize=(7, 4.5))
    for r in ok:
        ax.scatter(r.flops, r.final_loss, color=color[r.depth], zorder=3, s=30)
        ax.annotate(r.name, (r.flops, r.final_loss), fontsize=7, xytext=(3, 3), textcoords="offset points")
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
    _plain_log_y(ax)
    ax.set_title("final loss vs compute" + ("" if law else " (no fit: see Problems)"))
    ax.grid(True, which="both", alpha=0.3)
    return fig


def _isoflop(plt: Any, ok: list[RunRow], iso: Any) -> Any:
    """Left: loss over N per budget with its parabola; right: N_opt and D_opt against the budget."""
    import numpy as np

    fig, (ax, ax2) = figures.figure(1, 2, figsize=(12, 4.5))
    budgets = sorted({r.budget_flops for r in ok if r.budget_flops})
    bcol = {b: plt.get_cmap("plasma")(i / max(1, len(budgets) - 1) * 0.85) for i, b in enumerate(budgets)}
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
        ax2.scatter(cs, [o.params for o in iso.optima], color="C0", label=f"N_opt ∝ C^{iso.params_law.exponent:.2f}")
        ax2.scatter(cs, [o.tokens for o in iso.optima], color="C1", label=f"D_opt ∝ C^{iso.tokens_law.exponent:.2f}")
        cc = np.geomspace(cs.min() / 2, cs.max() * 2, 40)
        ax2.plot(cc, iso.params_law(cc), "C0--", lw=1)
        ax2.plot(cc, iso.tokens_law(cc), "C1--", lw=1)
        ax2.legend(fontsize=8)
    ax2.set_xscale("log")
    ax2.set_yscale("log")
    ax2.set_xlabel("FLOP budget C")
    ax2.set_title("compute-optimal N and D" + ("" if iso and iso.params_law else " (needs 2+ budgets)"))
    ax2.grid(True, which="both", alpha=0.3)
    return fig


#: The two answers the seed's open question weighs: nanochat's Muon optimum and Chinchilla's.
REFERENCE_RATIOS = {"nanochat (Muon) 8": 8.0, "Chinchilla 20": 20.0}


def _wsd_points(plt: Any, ok: list[RunRow], fit: Any, color: dict[int, Any]) -> Any:
    """Left: final loss of each depth's branches against D/N, with the Approach-3 law through them
    (what the fit saw). Right: final val bpb of the same points, each twin next to its branch."""
    import numpy as np

    fig, (ax, ax2) = figures.figure(1, 2, figsize=(12, 4.5))
    branches = [r for r in ok if r.role == "branch" and r.params and r.tokens]
    twins = [r for r in ok if r.role == "twin" and r.params and r.tokens and r.val_bpb]
    for depth in sorted({r.depth for r in branches}):
        rs = sorted([r for r in branches if r.depth == depth], key=lambda r: r.tokens or 0.0)
        ratios = [r.tokens / r.params for r in rs]  # type: ignore[operator]
        ax.plot(ratios, [r.final_loss for r in rs], "o", color=color[depth], label=f"d{depth}")
        if fit is not None:
            n = rs[0].params
            rr = np.geomspace(min(ratios) / 1.5, max(ratios) * 1.5, 50)
            ax.plot(rr, fit.loss(n, rr * n), "--", color=color[depth], lw=1)
        bpb = [(x, r.val_bpb) for x, r in zip(ratios, rs, strict=True) if r.val_bpb]
        ax2.plot([x for x, _ in bpb], [y for _, y in bpb], "o-", color=color[depth], lw=1, label=f"d{depth} branch")
    for r in twins:
        ax2.scatter(r.tokens / r.params, r.val_bpb, marker="s", s=70, facecolors="none",  # type: ignore[operator]
                    edgecolors=color[r.depth], linewidths=1.5, zorder=4, label=f"d{r.depth} twin (from scratch)")  # fmt: skip
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for a in (ax, ax2):
        a.set_xscale("log")
        a.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))  # 0.5, 1, 2 rather than 5x10^-1
        a.xaxis.set_minor_formatter(NullFormatter())
        a.set_xlabel("tokens per scaling parameter D/N")
        a.grid(True, which="both", alpha=0.3)
    ax.set_ylabel("final training loss")
    ax.set_title(
        "WSD branches" + (" and the Approach-3 law (dashed)" if fit is not None else " (no fit: see Problems)")
    )
    ax2.set_ylabel("final val bpb")
    ax2.set_title("val bpb per depth; squares: independent twins")
    if branches:
        ax.legend(title="depth", fontsize=8)
        handles, labels = ax2.get_legend_handles_labels()
        uniq = dict(zip(labels, handles, strict=True))
        ax2.legend(uniq.values(), uniq.keys(), fontsize=8)
    return fig


def _ratio_or_nan(fit: Any, compute: float) -> float:
    """The law's optimum ratio at `compute`, or NaN (a gap in the line) where it has none."""
    from miniseries.science.fit import FitError

    try:
        return ratio_at(fit, compute)
    except FitError:
        return float("nan")


def _wsd_optimum(plt: Any, ok: list[RunRow], fit: Any, opt: Any) -> Any:
    """D_opt/N_opt of the Approach-3 law against compute, its bootstrap interval where the report
    states it, and the ratios the seed's question weighs (8 and 20)."""
    import numpy as np

    fig, ax = figures.figure(figsize=(7, 4.5))
    branches = [r.flops for r in ok if r.role == "branch" and r.flops]
    if fit is not None and opt is not None and branches:
        cs = np.geomspace(min(branches) / 10, opt.compute * 1e4, 60)
        ax.plot(cs, [_ratio_or_nan(fit, c) for c in cs], "k-", lw=1.2, label="Approach 3: D_opt/N_opt")
        if opt.identified:
            # a percentile interval need not contain the full-data estimate: clip the bars at 0
            err = [[max(0.0, opt.ratio - opt.low)], [max(0.0, opt.high - opt.ratio)]]
            ax.errorbar([opt.compute], [opt.ratio], yerr=err, fmt="o", color="crimson", capsize=4, zorder=4,
                        label=f"{opt.ratio:.3g} [{opt.low:.3g}, {opt.high:.3g}] at the largest branch")  # fmt: skip
        else:  # no point and no number: the interval spans decades
            ax.text(0.5, 0.08, "optimum ratio not identified by this sweep (see the report)", transform=ax.transAxes,
                    ha="center", color="crimson")  # fmt: skip
        ax.axvspan(min(branches), max(branches), color="grey", alpha=0.12, label="compute of the branches")
    else:
        ax.text(0.5, 0.5, "no Approach-3 fit (see Problems)", transform=ax.transAxes, ha="center", color="crimson")
    for name, v in REFERENCE_RATIOS.items():
        ax.axhline(v, color="grey", lw=0.8, ls=":")
        ax.text(1.0, v, f" {name}", transform=ax.get_yaxis_transform(), fontsize=7, va="center", ha="left")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel("compute-optimal tokens per parameter")
    ax.set_title("fitted optimum ratio vs compute")
    ax.grid(True, which="both", alpha=0.3)
    if fit is not None and opt is not None and branches:
        ax.legend(fontsize=8, loc="upper left")
    return fig


def _core(
    plt: Any, ok: list[RunRow], core_fit: Any, extrapolation: list[Any], mode: Mode, color: dict[int, Any]
) -> Any:
    """CORE against compute with its fit, the extrapolated targets and the GPT-2/3 reference levels."""
    import numpy as np

    fig, ax = figures.figure(figsize=(7, 4.5))
    cored = [r for r in ok if r.core is not None and not r.core_partial]
    for r in cored:
        ax.scatter(r.flops, r.core, color=color[r.depth], s=30, zorder=3)
        if mode is Mode.ratio:  # isoFLOP sweeps stack many runs per budget: labels would overprint
            ax.annotate(r.name, (r.flops, r.core), fontsize=7, xytext=(3, 3), textcoords="offset points")
    xmax = max([r.flops for r in cored], default=1e18) * 4
    for e in extrapolation:
        if e.flops:
            xmax = max(xmax, e.flops * 1.5)
    if core_fit is not None and cored:
        cc = np.geomspace(min(r.flops for r in cored) / 2, xmax, 60)
        label = f"CORE = {core_fit.intercept:.3f} + {core_fit.slope:.3f}·log10 C"
        ax.plot(cc, core_fit.predict(cc), "k--", lw=1, label=label)
        for e in extrapolation:
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
        partial = any(r.core_partial for r in ok)
        why = "CORE partial (eval bundle incomplete)" if partial else "no CORE scores (no eval bundle)"
        ax.text(0.5, 0.6, why, transform=ax.transAxes, ha="center", color="crimson")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel("CORE")
    ax.set_title("CORE vs compute" + ("" if core_fit else " (no fit: see Problems)"))
    ax.grid(True, which="both", alpha=0.3)
    if core_fit is not None:
        ax.legend(fontsize=8, loc="upper left")
    return fig


def comparison_plot(docs: dict[str, dict[str, Any]], title: str) -> dict[str, bytes]:
    """Final loss against compute of two sweeps' report.json documents, overlaid."""
    out: dict[str, bytes] = {}
    fig, ax = figures.figure(figsize=(7, 4.5))
    for i, (name, doc) in enumerate(docs.items()):
        pts = [(r["flops"], r["final_loss"]) for r in doc["runs"] if r["status"] == "finished" and r["final_loss"]]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=f"C{i}", label=name)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training FLOPs C")
    ax.set_ylabel("final loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    figures.save(fig, "final_loss_vs_compute", out)
    return out
