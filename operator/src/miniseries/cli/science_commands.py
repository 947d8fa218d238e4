"""`miniseries fit chinchilla FILE` and `miniseries report [SWEEP ...]` (the science commands).

    miniseries fit chinchilla data.csv [--drop-highest-loss 5] [--compute 1e24] [--output json]
    miniseries fit validate --ladder gadre2024 --data DIR [--output json]
    miniseries report SWEEP [SWEEP_B] [--store DIR_OR_URI] [--spec SWEEP.yaml] [--namespace NS]

The CSV needs a loss column and a parameter column, and either a token column
or a FLOPs column (tokens = FLOPs / (6 x params), as Epoch AI derive them).
Column names are matched case-insensitively against the common spellings.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from miniseries.contract.layout import LOCAL_NAMESPACE
from miniseries.contract.store import DEFAULT_STORE_DIR

PARAM_COLUMNS = ("params", "model size", "n", "parameters", "eff_params")
TOKEN_COLUMNS = ("tokens", "training tokens", "d", "data")
FLOP_COLUMNS = ("flops", "training flop", "training flops", "compute", "c")
LOSS_COLUMNS = ("loss", "val_loss", "final_loss")


class CsvError(ValueError):
    pass


def _column(header: list[str], wanted: tuple[str, ...]) -> str | None:
    lower = {h.strip().lower(): h for h in header}
    for w in wanted:
        if w in lower:
            return lower[w]
    return None


def read_scaling_csv(path: str | Path, drop_highest_loss: int = 0) -> tuple[list[float], list[float], list[float]]:
    """(params, tokens, loss) from a CSV, or a CsvError naming what is missing."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise CsvError(f"{p}: no such file") from None
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    pc, tc, fc, lc = (_column(header, w) for w in (PARAM_COLUMNS, TOKEN_COLUMNS, FLOP_COLUMNS, LOSS_COLUMNS))
    missing = []
    if pc is None:
        missing.append(f"a parameter column (one of {', '.join(PARAM_COLUMNS)})")
    if tc is None and fc is None:
        missing.append(f"a token column ({', '.join(TOKEN_COLUMNS)}) or a FLOPs column ({', '.join(FLOP_COLUMNS)})")
    if lc is None:
        missing.append(f"a loss column (one of {', '.join(LOSS_COLUMNS)})")
    if missing:
        raise CsvError(f"{p}: missing {'; '.join(missing)}; the header is {header}")
    rows: list[tuple[float, float, float]] = []
    for i, r in enumerate(reader, start=2):
        try:
            n = float(r[pc])  # type: ignore[index]
            d = float(r[tc]) if tc else float(r[fc]) / (6.0 * n)  # type: ignore[index]
            loss = float(r[lc])  # type: ignore[index]
        except (TypeError, ValueError) as e:
            raise CsvError(f"{p} line {i}: not a number ({e})") from None
        rows.append((n, d, loss))
    if drop_highest_loss < 0 or drop_highest_loss >= len(rows):
        raise CsvError(
            f"--drop-highest-loss {drop_highest_loss}: must be between 0 and {len(rows) - 1} for {len(rows)} rows"
        )
    if drop_highest_loss:
        rows = sorted(rows, key=lambda t: t[2])[:-drop_highest_loss]
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def chinchilla_summary(fit: Any, compute: float) -> dict[str, Any]:
    n_opt, d_opt = fit.optimum(compute)
    out: dict[str, Any] = fit.to_dict()
    out["at_compute"] = {"flops": compute, "params_opt": n_opt, "tokens_opt": d_opt, "tokens_per_param": d_opt / n_opt}
    return out


def cmd_fit_chinchilla(args: argparse.Namespace) -> int:
    from miniseries.science.fit import FitError, fit_chinchilla

    try:
        n, d, loss = read_scaling_csv(args.file, args.drop_highest_loss)
        fit = fit_chinchilla(n, d, loss, bootstrap=args.bootstrap, seed=args.seed)
    except (CsvError, FitError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = chinchilla_summary(fit, args.compute)
    if args.output == "json":
        print(json.dumps(out, indent=2))
        return 0
    ci = out["ci"]

    def show(name: str, fmtstr: str) -> str:
        v = out[name]
        if name in ci:
            lo, hi = ci[name]
            return f"{name:>6} = {v:{fmtstr}}   [{lo:{fmtstr}}, {hi:{fmtstr}}]"
        return f"{name:>6} = {v:{fmtstr}}"

    print(f"Chinchilla Approach 3 on {out['points']} points (Huber delta 1e-3 on log-loss, L-BFGS)")
    for name, f in (
        ("E", ".4f"),
        ("A", ".2f"),
        ("B", ".2f"),
        ("alpha", ".4f"),
        ("beta", ".4f"),
        ("a", ".4f"),
        ("b", ".4f"),
    ):
        print("  " + show(name, f))
    if ci:
        print(f"  (95% bootstrap intervals, {out['bootstrap_samples']} resamples)")
    at = out["at_compute"]
    print(f"  at C = {at['flops']:.3g} FLOPs: N_opt = {at['params_opt']:.3g}, D_opt = {at['tokens_opt']:.3g}, "
          f"D/N = {at['tokens_per_param']:.1f}")  # fmt: skip
    return 0


def cmd_fit_validate(args: argparse.Namespace) -> int:
    """Fit each loss-law form on a published ladder's small models and predict its large ones."""
    from miniseries.science.fit.ladder import load_gadre, render, validate_ladder

    root = Path(args.data)
    try:
        result = validate_ladder(load_gadre(root), ladder=args.ladder)
    except (OSError, ValueError, KeyError) as e:
        print(f"error: --data {root}: {e} (expected the {args.ladder} directory, with models/*.json)", file=sys.stderr)
        return 2
    print(json.dumps(result.to_dict(), indent=2) if args.output == "json" else render(result))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from miniseries.science.report import ReportError

    try:
        return report_sweeps(
            args.sweeps, store=args.store, spec_path=args.spec, targets=args.target, namespace=args.namespace
        )
    except ReportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def report_sweeps(
    sweeps: list[str],
    *,
    store: str | None,
    spec_path: str | None,
    targets: list[tuple[str, float]],
    namespace: str = LOCAL_NAMESPACE,
) -> int:
    """`miniseries report`: one sweep's report, or two side by side; a ReportError says what is wrong."""
    from miniseries.api.errors import SpecError
    from miniseries.api.spec import ScalingSweepSpec
    from miniseries.api.sweepfile import load_sweep
    from miniseries.contract.layout import SweepLayout
    from miniseries.contract.store import StoreError, open_store, store_uri
    from miniseries.science.report import ReportError, build_report, compare_reports, joint_fit
    from miniseries.science.report.markdown import fmt_number
    from miniseries.science.report.side_by_side import depth_rows, render_depths

    if len(sweeps) > 2:
        raise ReportError(f"report takes one sweep or two to compare, got {len(sweeps)}: {sweeps}")
    try:
        st = open_store(store_uri(store))
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
    if len(resolved) == 1:
        uri_out, status = build_report(st, layouts[0], resolved[0][1], dict(targets))
        print(f"report: {uri_out}report.md")
        print(f"fit: a={fmt_number(status.params_exponent)} b={fmt_number(status.tokens_exponent)} "
              f"loss exponent={fmt_number(status.loss_exponent)} runs={status.runs_fitted} partial={status.partial}")  # fmt: skip
        if status.message:
            print(f"problems: {status.message}")
        return 0
    (_a, sa), (_b, sb) = resolved
    print(f"comparison: {compare_reports(st, layouts[0], layouts[1], sa, sb)}report.md")
    docs = [json.loads(st.read_bytes(layout.report + "report.json")) for layout in layouts]
    for line in render_depths(layouts[0].sweep, layouts[1].sweep, depth_rows(*docs)):
        print(line)
    joint = joint_fit(st, layouts[0], layouts[1])
    for d in joint["differences"]:
        values = " vs ".join(f"{v} ({', '.join(runs)})" for v, runs in d["values"].items())
        print(f"differs: {d['field']}{' (blocks a joint fit)' if d['blocking'] else ''}: {values}")
    if "refused" in joint:
        print(f"joint fit refused: {joint['refused']}")
    return 0


def _target(value: str) -> tuple[str, float]:
    name, _, score = value.rpartition("=")
    try:
        return (name or f"CORE {score}", float(score))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--target {value!r}: expected NAME=SCORE or SCORE, e.g. 'GPT-3 1.3B=0.3'"
        ) from None


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("fit", help="fit scaling laws to published or exported data")
    fsub = p.add_subparsers(dest="fit_kind", required=True, metavar="KIND")
    c = fsub.add_parser("chinchilla", help="Chinchilla Approach 3 on a (params, tokens or FLOPs, loss) CSV")
    c.add_argument("file", help="CSV with params, tokens (or FLOPs) and loss columns")
    c.add_argument("--drop-highest-loss", type=int, default=0, metavar="K",
                   help="drop the K highest-loss rows first (Epoch AI drop 5 from the Chinchilla data)")  # fmt: skip
    c.add_argument("--compute", type=float, default=1e24, help="FLOPs at which to report N_opt, D_opt and D/N")
    c.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples for the intervals (0: none)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--output", "-o", choices=["table", "json"], default="table")
    c.set_defaults(func=cmd_fit_chinchilla)
    v = fsub.add_parser("validate", help="fit the loss-law forms on a published ladder's small models and "
                                         "predict its large ones (rollout validation)")  # fmt: skip
    v.add_argument("--ladder", choices=["gadre2024"], default="gadre2024",
                   help="gadre2024: Gadre et al. 2024's testbed, fitted up to 411M, predicting 1.4B and 6.9B")  # fmt: skip
    v.add_argument("--data", required=True, metavar="DIR",
                   help="the ladder's directory (for gadre2024: .../scaling/gadre2024, with models/*.json)")  # fmt: skip
    v.add_argument("--output", "-o", choices=["table", "json"], default="table")
    v.set_defaults(func=cmd_fit_validate)

    r = sub.add_parser("report", help="write the scaling-law report of a sweep (two sweeps: side by side)")
    r.add_argument("sweeps", nargs="+", help="sweep name(s) in the store, or sweep YAML file(s)")
    r.add_argument("--store", default=None, help=f"store directory or URI (default ./{DEFAULT_STORE_DIR})")
    r.add_argument("--spec", default=None, help="the sweep YAML (price, MFU, peak FLOP/s for the extrapolation)")
    r.add_argument("--namespace", default=LOCAL_NAMESPACE,
                   help="the sweep's namespace: its data is under <store>/<namespace>/<sweep>/ "
                        "(default local, the local runner's)")  # fmt: skip
    r.add_argument("--target", action="append", type=_target, default=[],
                   help="extra CORE target, NAME=SCORE (repeatable); GPT-2 small and XL are always included")  # fmt: skip
    r.set_defaults(func=cmd_report)
