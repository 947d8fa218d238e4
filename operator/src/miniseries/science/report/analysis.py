"""Every fit and check a sweep's finished runs support, with a Problems line for each one they do not."""

from __future__ import annotations

import math
from typing import Any

from miniseries.api.spec import Mode
from miniseries.science.fit import (
    FitError,
    check_crossings,
    exponent_near_half,
    extrapolate,
    fit_chinchilla,
    fit_core,
    fit_isoflop,
    fit_power_law,
)
from miniseries.science.fit.rollout import (
    Rollout,
    compute_factor,
    rollout_chinchilla,
    rollout_core,
    rollout_core_two_step,
    rollout_power_law,
)
from miniseries.science.fit.wsd import optimal_ratio, twin_differences
from miniseries.science.report.rows import RunRow


def _try(problems: list[str], what: str, fn: Any, *args: Any, **kw: Any) -> Any:
    try:
        return fn(*args, **kw)
    except FitError as e:
        problems.append(f"{what}: {e}")
        return None


def _rollout(rollouts: dict[str, Any], key: str, fn: Any, *args: Any, **kw: Any) -> Rollout | None:
    """One law's rollout into `rollouts[key]`, or the sentence why it cannot be made."""
    try:
        got: Rollout = fn(*args, **kw)
    except FitError as e:
        rollouts[key] = {"refused": str(e)}
        return None
    rollouts[key] = got
    return got


def _core_route(cored: list[RunRow], direct: Any, direct_rollout: Rollout | None, rollouts: dict[str, Any],
                fits: dict[str, Any]) -> tuple[Any, Rollout | None]:  # fmt: skip
    """CORE over compute directly, or through the loss (fit/core_route.py), whichever predicts the
    largest run better when refitted without it; the direct law when the two-step one cannot be made."""
    from miniseries.science.fit.core_route import fit_two_step

    names, c = [r.name for r in cored], [r.flops for r in cored]
    losses, core = [r.final_loss for r in cored], [r.core for r in cored]
    two = _rollout(rollouts, "core_two_step", rollout_core_two_step, names, c, losses, core)
    if direct is None or direct_rollout is None or two is None:
        fits["core_route"] = {"route": "direct", "why": "the two-step route could not be refitted without the "
                              "largest run" if two is None else "the direct law has no rollout"}  # fmt: skip
        return direct, direct_rollout
    why = f"rollout |error| direct {abs(direct_rollout.error):.4f}, via loss {abs(two.error):.4f} CORE"
    if abs(two.error) < abs(direct_rollout.error):
        try:
            law = fit_two_step(c, losses, core)
        except FitError as e:
            fits["core_route"] = {"route": "direct", "why": f"{why}; the two-step fit on all runs failed: {e}"}
            return direct, direct_rollout
        fits["core_route"] = {"route": "two-step", "why": why}
        fits["core_two_step"] = law
        return law, two
    fits["core_route"] = {"route": "direct", "why": why}
    return direct, direct_rollout


def _pick_form(names: list[str], n: list[float], d: list[float], loss: list[float], group: list[float],
               rollouts: dict[str, Any]) -> bool:  # fmt: skip
    """Approach 3's form by rollout error: True for the shared exponent (Gadre et al.), False for free.
    Each form is refitted without the largest group and predicts it; the smaller |error| wins (a tie,
    or no rollout possible, keeps the free form, the one with the fewer assumptions)."""
    errors = {}
    for shared in (False, True):
        key = "chinchilla_shared" if shared else "chinchilla_free"
        got = _rollout(rollouts, key, rollout_chinchilla, names, n, d, loss, group, shared_exponent=shared)
        if got is not None:
            errors[shared] = abs(got.error)
    shared = len(errors) == 2 and errors[True] < errors[False]
    if errors:
        why = (f"rollout |error| free {errors[False]:.2%}, shared {errors[True]:.2%}" if len(errors) == 2
               else "only one form could be refitted without the largest runs")  # fmt: skip
        rollouts["chinchilla_choice"] = {"form": "shared" if shared else "free", "why": why}
    return shared


def _fit_wsd(ok: list[RunRow], fits: dict[str, Any], problems: list[str], bootstrap: int,
             rollouts: dict[str, Any]) -> tuple[None, None]:  # fmt: skip
    """A wsd sweep's answer: Approach 3 on the branch points only (trunks stop before their cooldown
    and twins repeat a branch's point, so neither is a point of the family), the compute-optimal
    tokens:params ratio at the largest compute the branches reached, with its resampling interval,
    and each twin against its branch (final val bpb). No N/D-over-C laws: those are Approach 3's."""
    branches = [r for r in ok if r.role == "branch"]
    fits["chinchilla"] = None
    if len(branches) < 6:  # Approach 3 fits 5 parameters (chinchilla.fit_chinchilla)
        problems.append(f"wsd Approach 3 needs at least 6 finished branches, have {len(branches)}")
    else:
        # held out: every branch of the largest model (the largest compute the law has to carry to)
        shared = _pick_form([r.name for r in branches], [r.params for r in branches], [r.tokens for r in branches],
                            [r.final_loss for r in branches], [r.params for r in branches], rollouts)  # fmt: skip
        got = _try(problems, "wsd Approach 3", optimal_ratio, [r.params for r in branches],
                   [r.tokens for r in branches], [r.final_loss for r in branches],
                   max(r.flops for r in branches), bootstrap=bootstrap, shared_exponent=shared)  # fmt: skip
        if got is not None:
            fits["chinchilla"], fits["wsd_optimal_ratio"] = got
            if got[1].note:  # an interval over decades: the sweep's answer is that it has none yet
                problems.append(f"wsd optimum tokens per parameter: {got[1].note}")
    key = {(r.depth, r.wsd_budget): r for r in branches if r.val_bpb}
    twins = {f"d{r.depth}@{r.wsd_budget:g}": (key[(r.depth, r.wsd_budget)].val_bpb, r.val_bpb)
             for r in ok if r.role == "twin" and r.val_bpb and (r.depth, r.wsd_budget) in key}  # fmt: skip
    fits["wsd_twins"] = twin_differences({k: b for k, (b, _) in twins.items()}, {k: t for k, (_, t) in twins.items()})
    return None, None


def _fit_ratio(
    ok: list[RunRow], fits: dict[str, Any], problems: list[str], rollouts: dict[str, Any]
) -> tuple[Any, Any]:
    """A ratio sweep's power laws over compute (N, D, loss, bpb) and their rollouts; no Approach 3.
    Returns the N and D laws (for the checks and the extrapolation)."""
    params_law = tokens_law = None
    if len(ok) < 2:
        problems.append(f"ratio fits need at least 2 finished runs, have {len(ok)}")
    else:
        c = [r.flops for r in ok]
        params_law = _try(problems, "N over C", fit_power_law, c, [r.params for r in ok], "N over C")
        tokens_law = _try(problems, "D over C", fit_power_law, c, [r.tokens for r in ok], "D over C")
        loss_law = _try(problems, "loss over C", fit_power_law, c, [r.final_loss for r in ok], "loss over C")
        fits["ratio"] = {"params_law": params_law, "tokens_law": tokens_law, "loss_law": loss_law}
        _rollout(rollouts, "loss_law", rollout_power_law, [r.name for r in ok], c, [r.final_loss for r in ok],
                 "loss over C")  # fmt: skip
        bpb = [r for r in ok if r.val_bpb and math.isfinite(r.val_bpb)]
        if len(bpb) >= 2:
            fits["ratio"]["bpb_law"] = _try(problems, "bpb over C", fit_power_law, [r.flops for r in bpb],
                                            [r.val_bpb for r in bpb], "bpb over C")  # fmt: skip
            _rollout(rollouts, "bpb_law", rollout_power_law, [r.name for r in bpb], [r.flops for r in bpb],
                     [r.val_bpb for r in bpb], "bpb over C")  # fmt: skip
    fits["chinchilla"] = None
    fits["chinchilla_note"] = ("not fitted: in ratio mode every run has the same D/N, so A/N^alpha and "
                               "B/D^beta cannot be told apart; use an isoFLOP sweep for Approach 3")  # fmt: skip
    return params_law, tokens_law


def _fit_isoflop(ok: list[RunRow], fits: dict[str, Any], problems: list[str], bootstrap: int,
                 rollouts: dict[str, Any]) -> tuple[Any, Any]:  # fmt: skip
    """An isoFLOP sweep's Approach 2 (parabola vertices per budget), Approach 3 in the form that
    predicts the largest budget better, and the two side by side. Returns the N_opt and D_opt laws."""
    params_law = tokens_law = None
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
        if len(iso.optima) >= 3:  # Approach 2's loss at the optimum, without the largest budget's
            _rollout(rollouts, "loss_law", rollout_power_law, [f"optimum@{o.budget_flops:.3g}" for o in iso.optima],
                     [o.budget_flops for o in iso.optima], [o.loss for o in iso.optima], "loss_opt over C")  # fmt: skip
    shared = False
    if len(ok) >= 6 and len({r.budget_flops for r in ok}) >= 2:  # held out: every run of the largest budget
        shared = _pick_form([r.name for r in ok], [r.params for r in ok], [r.tokens for r in ok],
                            [r.final_loss for r in ok], [r.budget_flops or r.flops for r in ok], rollouts)  # fmt: skip
    fits["chinchilla"] = _try(problems, "Chinchilla Approach 3", fit_chinchilla, [r.params for r in ok],
                              [r.tokens for r in ok], [r.final_loss for r in ok], bootstrap=bootstrap,
                              shared_exponent=shared)  # fmt: skip
    if iso is not None and iso.optima and fits["chinchilla"] is not None:  # Approach 2 beside Approach 3
        from miniseries.science.fit.approaches import compare

        fits["approaches"] = compare(iso, fits["chinchilla"])
    return params_law, tokens_law


def _cored_runs(ok: list[RunRow], mode: Mode) -> list[RunRow]:
    """The runs the CORE law is fitted on: those with a full CORE score; in isoFLOP mode only the
    best of each budget (CORE of the compute-optimal frontier)."""
    cored = [r for r in ok if r.core is not None and not r.core_partial]
    if mode is Mode.isoflop:
        best: dict[float, RunRow] = {}
        for r in cored:
            if r.budget_flops and (r.budget_flops not in best or r.core > best[r.budget_flops].core):  # type: ignore[operator]
                best[r.budget_flops] = r
        cored = list(best.values())
    return cored


def _fit_core(ok: list[RunRow], cored: list[RunRow], fits: dict[str, Any], problems: list[str],
              rollouts: dict[str, Any]) -> tuple[Any, Any, Rollout | None]:  # fmt: skip
    """CORE over compute: the direct fit, the law the extrapolation solves (the direct fit, or the
    two-step route if it predicts better) and that law's rollout; Nones with a Problems line if too few runs."""
    core_fit = core_law = core_rollout = None
    if len(cored) >= 2:
        core_fit = _try(problems, "CORE over C", fit_core, [r.flops for r in cored], [r.core for r in cored])
        core_law = core_fit
        core_rollout = _rollout(rollouts, "core", rollout_core, [r.name for r in cored], [r.flops for r in cored],
                                [r.core for r in cored])  # fmt: skip
        core_law, core_rollout = _core_route(cored, core_fit, core_rollout, rollouts, fits)
    elif not any(r.core is not None for r in ok):
        problems.append(
            "CORE fit needs at least 2 runs with a full CORE score, have 0: no run was evaluated on CORE (no eval "
            "bundle: set spec.data.evalBundleUri; `miniseries data fetch --eval-bundle` downloads DCLM's, and "
            "`miniseries run --local` then uses it from the cache)"
        )
    else:
        problems.append(f"CORE fit needs at least 2 runs with a full CORE score, have {len(cored)}")
    return core_fit, core_law, core_rollout


def _extrapolation(core_law: Any, core_rollout: Rollout | None, cored: list[RunRow], rollouts: dict[str, Any],
                   laws: tuple[Any, Any], targets: dict[str, float], *, peak: float, mfu: float,
                   price: float) -> list[Any]:  # fmt: skip
    """Compute, GPU-hours and dollars to each target CORE, each carrying the CORE rollout's error as
    a factor on compute (recorded in `rollouts["extrapolation"]`)."""
    extrap = extrapolate(core_law, targets, peak_flops_per_gpu=peak, mfu=mfu, price_per_gpu_hour=price,
                         max_compute_seen=max(r.flops for r in cored), params_law=laws[0],
                         tokens_law=laws[1])  # fmt: skip
    # the extrapolation's stated uncertainty: the CORE rollout's error, as a factor on compute
    factor = compute_factor(core_rollout, core_law.slope) if core_rollout is not None else None
    for e in extrap:
        if e.flops is not None:
            e.rollout_factor = factor
    rollouts["extrapolation"] = (
        {"compute_factor": factor, "from": "core"} if factor is not None
        else {"refused": "no CORE rollout: the extrapolation's uncertainty is unknown"}
    )  # fmt: skip
    return extrap


def _checks(ok: list[RunRow], mode: Mode, params_law: Any, tokens_law: Any, warmdown_ratio: float) -> dict[str, Any]:
    """Whether the loss curves cross, and whether the N and D exponents sit near one half."""
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
    return checks


def fit_sweep(rows: list[RunRow], mode: Mode, *, peak: float, mfu_assumed: float, price: float,
              warmdown_ratio: float, targets: dict[str, float], bootstrap: int = 100) -> dict[str, Any]:  # fmt: skip
    """Every fit the finished runs support, plus the checks and the extrapolation."""
    problems: list[str] = []
    ok = [r for r in rows if r.usable and r.params and r.flops]
    fits: dict[str, Any] = {}
    rollouts: dict[str, Any] = {}  # law -> its Rollout (science/fit/rollout.py), or {"refused": why}
    if mode is Mode.ratio:
        params_law, tokens_law = _fit_ratio(ok, fits, problems, rollouts)
    elif mode is Mode.wsd:
        params_law, tokens_law = _fit_wsd(ok, fits, problems, bootstrap, rollouts)
    else:
        params_law, tokens_law = _fit_isoflop(ok, fits, problems, bootstrap, rollouts)

    # CORE against compute and the extrapolation.
    cored = _cored_runs(ok, mode)
    # Measured MFU against the spec's peak: the trainer's own MFU may use another peak (a CPU
    # guess, a different GPU), so the achieved FLOP/s per device is what we carry over.
    mfus = [r.achieved_flops_per_device / peak for r in ok if r.achieved_flops_per_device]
    mfu = sum(mfus) / len(mfus) if mfus else mfu_assumed
    core_fit, core_law, core_rollout = _fit_core(ok, cored, fits, problems, rollouts)
    extrap = []
    if core_fit is not None:
        extrap = _extrapolation(core_law, core_rollout, cored, rollouts, (params_law, tokens_law), targets,
                                peak=peak, mfu=mfu, price=price)  # fmt: skip
    fits["core"] = core_fit
    fits["rollout"] = rollouts
    checks = _checks(ok, mode, params_law, tokens_law, warmdown_ratio)
    return {"fits": fits, "extrapolation": extrap, "checks": checks, "problems": problems, "mfu_used": mfu,
            "mfu_measured": bool(mfus), "runs_fitted": len(ok)}  # fmt: skip
