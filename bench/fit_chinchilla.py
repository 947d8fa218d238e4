"""Chinchilla Approach 3 on Epoch AI's extracted data: wall time and the fitted law, one JSON line.

    python bench/fit_chinchilla.py [--bootstrap 200]

Reference (Besiroglu et al. 2024, arXiv:2404.10102): E 1.8172, A 482.01, B 2085.43, alpha 0.3478, beta 0.3658.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from miniseries.cli_science import read_scaling_csv
from miniseries.fit import fit_chinchilla

DEFAULT = Path("/work/shared/data/scaling/chinchilla_svg_extracted_data.csv")
EPOCH = {"E": 1.8172, "A": 482.01, "B": 2085.43, "alpha": 0.3478, "beta": 0.3658}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--csv", type=Path, default=DEFAULT)
    p.add_argument("--bootstrap", type=int, default=200)
    a = p.parse_args()
    n, d, loss = read_scaling_csv(a.csv, drop_highest_loss=5)
    t0 = time.perf_counter()
    f = fit_chinchilla(n, d, loss, bootstrap=0)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    fb = fit_chinchilla(n, d, loss, bootstrap=a.bootstrap)
    t_boot = time.perf_counter() - t0
    out = {
        "bench": "fit_chinchilla",
        "points": len(n),
        "fit_seconds": round(t_fit, 3),
        "fit_with_bootstrap_seconds": round(t_boot, 3),
        "bootstrap": a.bootstrap,
        "fit": {k: getattr(f, k) for k in ("E", "A", "B", "alpha", "beta", "a")},
        "ci95": fb.ci,
        "epoch_2024": EPOCH,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
