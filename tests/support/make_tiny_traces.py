"""Regenerate tests/support/tiny_traces.json: the tiny sweep's own training curves, for the forecast test.

    make tiny-traces                                   # = python -m tests.support.make_tiny_traces
    python -m tests.support.make_tiny_traces --store DIR   # reuse DIR's finished runs (3 s), else train them

Runs `miniseries run examples/tiny.yaml --local --store DIR` (the `make local` sweep: data, tokenizer,
three runs on this machine's CPU, about 5-15 minutes on 2 cores), then reads each finished run back
the way `miniseries forecast` does (`cli.forecast_command.load_traces`: the recorded LR schedule, the loss
curve, results.json's final loss and val bpb) and writes them with where they came from. The curves
are real training, not drawn from the forecaster's law: tests/unit/test_forecast_real_curves.py
forecasts each from its first part and compares with how it really ended.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from miniseries.cli.forecast_command import load_traces
from miniseries.contract.layout import LOCAL_NAMESPACE

REPO = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).with_name("tiny_traces.json")
EXAMPLE = "examples/tiny.yaml"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="the local store to (re)use; default: a fresh temporary one")
    parser.add_argument("--out", default=str(FIXTURE))
    args = parser.parse_args(argv)
    store = Path(args.store) if args.store else Path(tempfile.mkdtemp(prefix="tiny-traces-"))
    cmd = [sys.executable, "-m", "miniseries.cli", "run", EXAMPLE, "--local", "--store", str(store)]
    subprocess.run(cmd, cwd=REPO, check=True)
    traces = load_traces(str(store / LOCAL_NAMESPACE / "tiny"))
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    doc = {
        "made_by": "python -m tests.support.make_tiny_traces (make tiny-traces)",
        "sweep": EXAMPLE,
        "made_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "commit": commit,
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}, CPU",
        "runs": [dataclasses.asdict(t) for t in traces],
    }
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}: {', '.join(f'{t.run} ({len(t.steps)} steps)' for t in traces)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
