"""Operator CPU on the real test cluster (tests/harness/cluster.py), one JSON line per measurement.

    python bench/operator_cpu.py [--sweeps 10] [--poll 2] [--seconds 60] [--s3]

The operator is `miniseries operator` as a process with the given poll interval. Its CPU time
(utime + stime from /proc/<pid>/stat) is measured over `--seconds` in two states:

1. `in_flight`: N sweeps of two runs each, every run training (tests/support/fake_trainer.py, run by
   the JobDriver of tests/harness/operator_process.py, `--step-seconds` per step), so every poll finds
   new progress in the store and writes it to status;
2. `finished`: the same N sweeps after every run succeeded and every fit was made, plus one
   invalid sweep (training.totalBatchTokens not a multiple of the micro-batch, which every
   version of the operator refuses); also its Warning Events (objects, and their summed count).

The store is a directory, or with --s3 a bucket of the versitygw S3 server (tests/harness/s3.py),
as on a real cluster. Also printed: reconciles and status writes (the sweeps' resourceVersion moves) in each window.
Run it from any checkout: it measures that checkout's operator (issue 15 compares before/after).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.harness

from tests.harness.cluster import running_cluster
from tests.harness.operator_process import JobDriver, Operator, custom, events, get_sweep, install_crds, sweep_doc
from tests.harness.processes import wait_for
from tests.harness.s3 import new_bucket, s3_server

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15 of stat)


def doc(name: str, store: str) -> dict[str, Any]:
    d = sweep_doc(name, store, depths=[1, 2], parallelism=2, nodeGpus=8)
    d["spec"]["data"]["tokenizerUri"] = f"{store}/tokenizer/"  # no tokenizer stage: runs start at once
    return d


def versions(api: Any, ns: str, names: list[str]) -> dict[str, str]:
    return {n: get_sweep(api, ns, n)["metadata"]["resourceVersion"] for n in names}


def measure(op: Operator, api: Any, ns: str, names: list[str], seconds: float) -> dict[str, Any]:
    assert op.proc is not None
    rv0, rec0 = versions(api, ns, names), op.metric("miniseries_operator_reconciles_total")
    c0, t0 = cpu_seconds(op.proc.pid), time.monotonic()
    time.sleep(seconds)  # a measurement window, not a wait for a state
    c1, t1 = cpu_seconds(op.proc.pid), time.monotonic()
    rv1 = versions(api, ns, names)
    return {
        "cpu_percent_of_a_core": round(100 * (c1 - c0) / (t1 - t0), 1),
        "reconciles": op.metric("miniseries_operator_reconciles_total") - rec0,
        "sweeps_written": sum(rv0[n] != rv1[n] for n in names),
        "seconds": round(t1 - t0, 1),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sweeps", type=int, default=10)
    p.add_argument("--poll", type=float, default=2.0)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--s3", action="store_true", help="an S3 store (versitygw) instead of a directory")
    p.add_argument("--step-seconds", type=float, default=1.5, help="fake training step time (runs last ~100 steps)")
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-operator-cpu-"))
    names = [f"s{k:02d}" for k in range(a.sweeps)]
    with running_cluster(work / "cluster") as kc, contextlib.ExitStack() as stack:
        store, env = (work / "store").as_uri(), {}
        if a.s3:
            bucket = new_bucket(stack.enter_context(s3_server(work / "s3")), "bench")
            store, env = f"{bucket.uri}/sweeps", bucket.env
        install_crds(kc)
        api = custom(kc)
        ns = "bench-cpu"
        kc.kubectl("create", "namespace", ns)
        op = Operator(kc, ns, work / "operator.log", env=env, poll_seconds=a.poll, store_roots=[store]).start()
        base = {"bench": "operator.cpu", "sweeps": a.sweeps, "poll_seconds": a.poll, "store": store.split(":")[0]}
        try:
            with JobDriver(kc, ns, env, step_seconds=a.step_seconds, log_dir=work):
                kc.apply([doc(n, store) for n in names], "-n", ns)
                wait_for("every run training", lambda: all(
                    [r.get("step", 0) > 0 for r in (get_sweep(api, ns, n).get("status") or {}).get("runs", [])]
                    == [True, True] for n in names), 300)  # fmt: skip
                print(json.dumps({**base, "state": "in_flight", **measure(op, api, ns, names, a.seconds)}), flush=True)
                wait_for("every sweep Succeeded", lambda: all(
                    (get_sweep(api, ns, n).get("status") or {}).get("phase") == "Succeeded" for n in names), 600)  # fmt: skip
            bad = doc("invalid", store)
            bad["spec"]["training"]["totalBatchTokens"] = 1000
            kc.apply(bad, "-n", ns)
            wait_for(
                "invalid refused", lambda: (get_sweep(api, ns, "invalid").get("status") or {}).get("conditions"), 60
            )
            result = measure(op, api, ns, names, a.seconds)
            warnings = [e for e in events(kc, ns, "invalid") if e["type"] == "Warning"]
            result |= {"invalid_sweep_warning_events": len(warnings),
                       "invalid_sweep_warning_count": sum(e.get("count") or 1 for e in warnings)}  # fmt: skip
            print(json.dumps({**base, "state": "finished", **result}), flush=True)
        finally:
            op.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
