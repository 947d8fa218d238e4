"""Chinchilla Approach 3 on Epoch AI's extracted data: the fit before and after it was made fast.

    python bench/fit_chinchilla.py [--csv PATH] [--bootstrap 200] [--skip-reference]

--csv is Epoch AI's extracted data (`chinchilla_svg_extracted_data.csv`); by default the copy in
the shared reference data, $MINISERIES_SHARED_DATA/scaling/ or else ../shared/data/scaling/ beside
this checkout.

Prints JSON lines: one per method ("reference", the fit as it was at commit
fb9df91, kept in tests/support/fit_reference.py; "current", miniseries.science.fit), each with
its wall time without and with the bootstrap and its estimates and 95%
intervals, then one "compare" line with the speed-ups and the largest
differences between the two (relative for the estimates, as a fraction of the
interval's width for the interval endpoints). The load average is printed too:
on a shared machine every time is only as good as the cores it got. With the default 200
resamples the reference takes about 3 minutes on 2 busy cores; --skip-reference times only the current fit.

Reference (Besiroglu et al. 2024, arXiv:2404.10102): E 1.8172, A 482.01, B 2085.43, alpha 0.3478, beta 0.3658.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.support.fit_reference

from miniseries.cli.science_commands import read_scaling_csv
from miniseries.science.fit import ChinchillaFit, fit_chinchilla
from tests.support.fit_reference import reference_fit_chinchilla

REPO = Path(__file__).resolve().parents[1]
#: the reference data beside the checkout (../shared/data), or where MINISERIES_SHARED_DATA says
SHARED_DATA = Path(os.environ.get("MINISERIES_SHARED_DATA") or REPO.parent / "shared" / "data")
DEFAULT_CSV = SHARED_DATA / "scaling" / "chinchilla_svg_extracted_data.csv"
EPOCH = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}
NAMES = ("E", "A", "B", "alpha", "beta", "a", "b")


def run(method: str, fit: Any, n: Any, d: Any, loss: Any, bootstrap: int) -> tuple[dict[str, Any], ChinchillaFit]:
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    f = fit(n, d, loss, bootstrap=0)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    fb = fit(n, d, loss, bootstrap=bootstrap)
    t_boot = time.perf_counter() - t0
    line = {
        "bench": "fit_chinchilla",
        "method": method,
        "points": len(n),
        "fit_seconds": round(t_fit, 3),
        "fit_with_bootstrap_seconds": round(t_boot, 3),
        "bootstrap": fb.bootstrap_samples,
        "load_average_1m": round(load, 2),
        "fit": {k: getattr(f, k) for k in NAMES},
        "ci95": fb.ci,
        "epoch_2024": EPOCH,
    }
    return line, fb


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--csv",
        type=Path,
        default=DEFAULT_CSV if DEFAULT_CSV.is_file() else None,
        help="Epoch AI's chinchilla_svg_extracted_data.csv (default: scaling/ in $MINISERIES_SHARED_DATA, "
        f"else ../shared/data beside the checkout; here {DEFAULT_CSV}"
        f"{'' if DEFAULT_CSV.is_file() else ', absent'})",
    )
    p.add_argument("--bootstrap", type=int, default=200)
    p.add_argument("--skip-reference", action="store_true", help="time only the current fit")
    a = p.parse_args()
    if a.csv is None:
        p.error(f"--csv is required: {DEFAULT_CSV} does not exist (set MINISERIES_SHARED_DATA or pass --csv)")
    n, d, loss = read_scaling_csv(a.csv, drop_highest_loss=5)
    new, fn = run("current", fit_chinchilla, n, d, loss, a.bootstrap)
    print(json.dumps(new), flush=True)
    if a.skip_reference:
        return
    old, fo = run("reference", reference_fit_chinchilla, n, d, loss, a.bootstrap)
    print(json.dumps(old), flush=True)
    width = {k: fo.ci[k][1] - fo.ci[k][0] for k in NAMES}
    print(json.dumps({
        "bench": "fit_chinchilla",
        "compare": "reference/current",
        "fit_speedup": round(old["fit_seconds"] / new["fit_seconds"], 1),
        "fit_with_bootstrap_speedup": round(old["fit_with_bootstrap_seconds"] / new["fit_with_bootstrap_seconds"], 1),
        "max_relative_estimate_difference": max(abs(getattr(fn, k) / getattr(fo, k) - 1) for k in NAMES),
        "max_ci_endpoint_difference_over_width": max(
            abs(fn.ci[k][i] - fo.ci[k][i]) / width[k] for k in NAMES for i in (0, 1)
        ),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
