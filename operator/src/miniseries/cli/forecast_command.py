"""`miniseries forecast SWEEP_DIR_OR_URI`: replay a finished sweep's forecasts from a cut of its curves.

    miniseries forecast ./miniseries-store/local/tiny [--upto 0.5] [--priors earlier|others] [--output json]
    miniseries forecast s3://bucket/prefix/NAMESPACE/SWEEP --upto 0.3

SWEEP_DIR_OR_URI is the sweep's own prefix in the store, <store>/<namespace>/<sweep> (a local
directory or a file:// or s3:// URI). Every run there with a results.json is cut at
--upto of its steps and forecast (science/forecast.py); the table shows, per run, the
forecast of the final training loss and val bpb with their 95% intervals, the actual values
and the relative errors, and the median absolute error over the runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from miniseries.cli import fmt
from miniseries.contract.layout import LayoutError, RunLayout
from miniseries.contract.results import ResultsError, RunResults, read_loss_curve, read_results
from miniseries.contract.schedule import recorded_multipliers
from miniseries.contract.store import Store, StoreError, open_store, path_to_uri


class ReplayError(ValueError):
    pass


def sweep_location(target: str) -> tuple[str, str, str]:
    """(store root URI, namespace, sweep) from <store>/<namespace>/<sweep> as a path or URI."""
    uri = target if "://" in target else path_to_uri(target)
    parts = uri.rstrip("/").rsplit("/", 2)
    if len(parts) != 3 or not parts[1] or not parts[2] or parts[0].endswith(":/"):
        raise ReplayError(
            f"SWEEP_DIR_OR_URI {target!r}: expected <store>/<namespace>/<sweep>, e.g. ./miniseries-store/local/tiny"
        )
    return parts[0], parts[1], parts[2]


def run_names(store: Store, namespace: str, sweep: str) -> list[str]:
    """Runs of the sweep that have a results.json."""
    prefix = f"{namespace}/{sweep}/"
    names = set()
    for key in store.list(prefix):
        rest = key[len(prefix) :]
        if rest.count("/") == 1 and rest.endswith("/results.json"):
            names.add(rest.split("/", 1)[0])
    return sorted(names)


def run_schedule(results: RunResults, curve: list[dict[str, float]]) -> list[float]:
    """The run's whole LR schedule: from its recorded flags, else from a curve logged at every step."""
    try:  # the recorded schedule, (1-sqrt) cooldowns and wsd trunks included
        recorded = recorded_multipliers(results.steps, results.provenance.lr_schedule if results.provenance else {})
    except ValueError as e:
        raise ReplayError(f"run {results.run}: {e}") from None
    if recorded is not None:
        return recorded
    by_step = {int(r["step"]): float(r["lr"]) for r in curve if "lr" in r}
    if sorted(by_step) == list(range(1, results.steps + 1)):
        return [by_step[s] for s in range(1, results.steps + 1)]
    raise ReplayError(
        f"run {results.run}: results.json records no LR schedule (provenance.lr_schedule) and its loss curve "
        f"does not log every one of its {results.steps} steps, so the schedule is unknown"
    )


def load_traces(target: str) -> list[Any]:
    from miniseries.science.forecast import RunTrace

    root, namespace, sweep = sweep_location(target)
    try:
        store = open_store(root)
        names = run_names(store, namespace, sweep)
    except StoreError as e:
        raise ReplayError(str(e)) from None
    if not names:
        raise ReplayError(
            f"{target}: no run with a results.json under {root}/{namespace}/{sweep}/ (not a finished sweep?)"
        )
    traces = []
    for name in names:
        try:
            layout = RunLayout(namespace, sweep, name)
            results = read_results(store, layout)
            curve = read_loss_curve(store, layout)
        except (LayoutError, ResultsError, StoreError, ValueError) as e:
            raise ReplayError(f"run {name}: {e}") from None
        assert results is not None
        traces.append(
            RunTrace(
                run=name,
                multipliers=run_schedule(results, curve),
                steps=[int(r["step"]) for r in curve],
                losses=[float(r["loss"]) for r in curve],
                final_loss=results.loss.final,
                val_bpb=results.val_bpb,
                finished_at=results.created_at,
            )
        )
    return traces


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.2%}"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def cmd_forecast(args: argparse.Namespace) -> int:
    from miniseries.science.forecast import median_abs, replay

    try:
        traces = load_traces(args.sweep_dir)
        rows = replay(traces, args.upto, args.priors)
    except (ReplayError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = {
        "upto": args.upto,
        "priors": args.priors,
        "median_abs_loss_error": median_abs([r.loss_error for r in rows]),
        "median_abs_val_bpb_error": median_abs([r.val_bpb_error for r in rows]),
        "forecast": sum(r.forecast is not None for r in rows),
        "refused": sum(r.forecast is None for r in rows),
    }
    if args.output == "json":
        print(json.dumps({"sweep": args.sweep_dir, **summary, "runs": [r.to_dict() for r in rows]}, indent=2))
        return 0
    headers = ["run", "cut", "method", "loss fc [95%]", "loss", "err", "val bpb fc [95%]", "val bpb", "err"]
    table = []
    for r in rows:
        f = r.forecast
        if f is None:
            table.append([r.run, f"{r.cut_step}/{r.steps}", "-", "-", _num(r.actual_loss), "-", "-",
                          _num(r.actual_val_bpb), "-"])  # fmt: skip
            continue
        bpb = "-" if f.val_bpb is None else f"{f.val_bpb:.4f} [{f.val_bpb_low:.4f}, {f.val_bpb_high:.4f}]"
        table.append([r.run, f"{r.cut_step}/{r.steps}", f.method,
                      f"{f.final_loss:.4f} [{f.final_loss_low:.4f}, {f.final_loss_high:.4f}]", _num(r.actual_loss),
                      _pct(r.loss_error), bpb, _num(r.actual_val_bpb), _pct(r.val_bpb_error)])  # fmt: skip
    print(f"forecast from {args.upto:.0%} of each run's steps; alpha and C from the {args.priors} runs of the sweep")
    print(fmt.table(headers, table, right={1, 3, 4, 5, 6, 7, 8}))
    for r in rows:
        if r.refused:
            print(f"{r.run}: {r.refused}")
    le, ve = summary["median_abs_loss_error"], summary["median_abs_val_bpb_error"]
    print(f"median |error|: final loss {'-' if le is None else f'{le:.2%}'}, "
          f"val bpb {'-' if ve is None else f'{ve:.2%}'} ({summary['forecast']} runs forecast, {summary['refused']} refused)")  # fmt: skip
    return 0


def _fraction(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--upto must be a number, got {v!r}") from None
    if not 0.0 < x <= 1.0:
        raise argparse.ArgumentTypeError(f"--upto must be a fraction in (0, 1], got {x}")
    return x


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("forecast", help="replay a finished sweep's forecasts from a cut of each run's loss curve")
    p.add_argument("sweep_dir", metavar="SWEEP_DIR_OR_URI", help="<store>/<namespace>/<sweep>: a directory or URI")
    p.add_argument("--upto", type=_fraction, default=0.5, help="fraction of each run's steps the forecast sees")
    p.add_argument("--priors", choices=["earlier", "others"], default="earlier",
                   help="earlier: learn alpha and C from the runs that finished before each run (what a live "
                   "forecast knew); others: from every other run of the sweep")  # fmt: skip
    p.add_argument("--output", "-o", choices=["table", "json"], default="table")
    p.set_defaults(func=cmd_forecast)
