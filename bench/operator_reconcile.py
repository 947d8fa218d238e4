"""Operator reconcile benchmark on the real test cluster (tests/harness/cluster.py), one JSON line per result.

    python bench/operator_reconcile.py [--sweeps 50] [--repeats 3]

1. `first_wave`: seconds from `kubectl apply` of one sweep (tokenizer given, so its first wave
   can start at once) to all of its first-wave PyTorchJobs existing; target < 2 s.
2. `many_sweeps`: N sweeps applied in one `kubectl apply`; seconds until every first-wave job
   exists, then a settle period: jobs expected / created / duplicated / missing, the operator's
   own jobs-created counter, reconcile count and status writes (a reconcile that changes nothing
   writes nothing); target: none missed or duplicated, and time growing linearly with N.

Nothing runs the jobs (no JobDriver): the first wave is all that may exist. The operator is
`miniseries operator` as a process, watching one namespace, with its production poll interval.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.harness

from tests.harness.cluster import running_cluster
from tests.harness.operator_process import Operator, custom, install_crds, list_jobs, sweep_doc

PARALLELISM = 2  # tiny's three depths, two at a time: a first wave of two jobs per sweep


def doc(name: str, store_uri: str) -> dict[str, Any]:
    d = sweep_doc(name, store_uri, parallelism=PARALLELISM, nodeGpus=8)
    d["spec"]["data"]["tokenizerUri"] = f"{store_uri}/tokenizer/"
    return d


def wait_jobs(api: Any, ns: str, want: int, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if len(list_jobs(api, ns)) >= want:
            return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError(f"{want} jobs not created in {timeout}s (have {len(list_jobs(api, ns))})")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sweeps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    store = (work / "store").as_uri()
    with running_cluster(work / "cluster") as kc:
        install_crds(kc)
        api = custom(kc)
        # kubectl's first apply against a new server fills its discovery and OpenAPI caches (~2 s
        # here); a user's kubectl has them warm, so fill them before timing what the operator does
        kc.apply(doc("warm-up", store), "--dry-run=server")
        for i in range(a.repeats):
            ns = f"bench-one-{i}"
            kc.kubectl("create", "namespace", ns)
            op = Operator(kc, ns, work / f"{ns}.log", poll_seconds=10).start()
            try:
                t0 = time.monotonic()
                kc.apply(doc("one", store), "-n", ns)
                t_apply = time.monotonic()
                t1 = wait_jobs(api, ns, PARALLELISM, 60)
                print(json.dumps({"bench": "operator.first_wave", "repeat": i, "jobs": PARALLELISM,
                                  "seconds": round(t1 - t0, 3), "kubectl_apply_seconds": round(t_apply - t0, 3),
                                  "target_seconds": 2.0}), flush=True)  # fmt: skip
            finally:
                op.stop()

        ns = "bench-many"
        kc.kubectl("create", "namespace", ns)
        op = Operator(kc, ns, work / f"{ns}.log", poll_seconds=10).start()
        try:
            expected = a.sweeps * PARALLELISM
            t0 = time.monotonic()
            kc.apply([doc(f"s{k:03d}", store) for k in range(a.sweeps)], "-n", ns)
            t_apply = time.monotonic()
            t1 = wait_jobs(api, ns, expected, 600)
            time.sleep(15)  # a settle period: a timer tick and job events for every sweep
            items = list_jobs(api, ns)
            names = [j["metadata"]["name"] for j in items]
            want = {f"s{k:03d}-{r}" for k in range(a.sweeps) for r in ("d3", "d2")}
            print(json.dumps({
                "bench": "operator.many_sweeps", "sweeps": a.sweeps, "jobs_expected": expected,
                "jobs_existing": len(items), "jobs_created_counter": op.metric("miniseries_operator_jobs_created_total"),
                "duplicates": len(names) - len(set(names)), "missing": len(want - set(names)),
                "unexpected": len(set(names) - want), "kubectl_apply_seconds": round(t_apply - t0, 3),
                "seconds_to_all_first_wave": round(t1 - t0, 3),
                "jobs_per_second": round(expected / (t1 - t0), 1),
                "reconciles": op.metric("miniseries_operator_reconciles_total"),
                "status_patches": op.metric("miniseries_operator_status_patches_total"),
                "reconcile_errors": op.metric("miniseries_operator_errors_total"),
            }), flush=True)  # fmt: skip
        finally:
            op.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
