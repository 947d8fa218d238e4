"""`miniseries run SWEEP.yaml --local` and `miniseries status SWEEP.yaml` (the embedded runner).

    miniseries run examples/tiny.yaml --local [--store DIR] [--device cpu|cuda|auto]
    miniseries status examples/tiny.yaml [--store DIR] [--output table|json]

`miniseries report` (cli/science_commands.py) reads the same local store.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from miniseries.api.sweepfile import load_sweep
from miniseries.cli import fmt
from miniseries.contract.store import DEFAULT_STORE_DIR
from miniseries.local.runner import LocalRunError, LocalSweep, run_states, run_sweep


def _local_sweep(args: argparse.Namespace) -> LocalSweep:
    return LocalSweep(load_sweep(args.sweep), Path(args.store), device=getattr(args, "device", "auto"))


def cmd_run(args: argparse.Namespace) -> int:
    if not args.local:
        print(
            "error: `miniseries run` executes sweeps locally and needs --local; on a cluster, "
            f"`kubectl apply -f {args.sweep}` hands the sweep to the operator",
            file=sys.stderr,
        )
        return 2
    ls = _local_sweep(args)
    try:
        return run_sweep(ls, report=not args.no_report)
    except LocalRunError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 1


def cmd_status(args: argparse.Namespace) -> int:
    ls = _local_sweep(args)
    rows = run_states(ls)
    if args.output == "json":
        print(json.dumps({"sweep": ls.name, "store": str(ls.store_dir), "runs": rows}, indent=2))
        return 0

    def num(v: object, spec: str) -> str:
        return format(v, spec) if isinstance(v, int | float) else "-"

    table = [
        [str(r["run"]), str(r["state"]), f"{r.get('step', 0)}/{r['steps']}", num(r.get("loss"), ".4f"),
         num(r.get("val_bpb"), ".4f"), num(r.get("core"), ".4f"), fmt.sci(float(r["flops"])),  # type: ignore[arg-type]
         str(r.get("forecast") or "-")]
        for r in rows
    ]  # fmt: skip
    done = sum(r["state"] == "Succeeded" for r in rows)
    print(f"sweep {ls.name} in {ls.store_dir}: {done}/{len(rows)} runs finished")
    print(fmt.table(["run", "state", "step", "loss", "val bpb", "CORE", "FLOPs", "forecast"], table))
    report = ls.store_dir / ls.layout.report / "report.md"
    if report.exists():
        print(f"report: {report}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("run", help="run a sweep's plan as local trainer processes (--local)")
    p.add_argument("sweep", help="ScalingSweep YAML file")
    p.add_argument("--local", action="store_true", help="run here, with a local directory as the store")
    p.add_argument("--store", default=DEFAULT_STORE_DIR, help=f"store directory (default ./{DEFAULT_STORE_DIR})")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="trainer device")
    p.add_argument("--no-report", action="store_true", help="skip the report at the end")
    p.set_defaults(func=cmd_run)

    s = sub.add_parser("status", help="progress of a local sweep: per run state, step, loss, CORE")
    s.add_argument("sweep", help="ScalingSweep YAML file")
    s.add_argument("--store", default=DEFAULT_STORE_DIR, help=f"store directory (default ./{DEFAULT_STORE_DIR})")
    s.add_argument("--output", "-o", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_status)
