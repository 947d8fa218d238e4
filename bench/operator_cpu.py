"""Operator CPU on the real test cluster (tests/cluster.py), one JSON line per measurement.

    python bench/operator_cpu.py [--sweeps 10] [--poll 2] [--seconds 60]

The operator is `miniseries operator` as a process with the given poll interval. Its CPU time
(utime + stime from /proc/<pid>/stat) is measured over `--seconds` in two states:

1. `in_flight`: N sweeps, every run held Running by the JobDriver (tests/operator_harness.py),
   so each sweep has work in flight and nothing changes;
2. `finished`: the same N sweeps after every run succeeded and every fit was made, plus one
   invalid sweep (cpu: lots); also its Warning Events (objects, and their summed count).

Also printed: reconciles and status writes (the sweeps' resourceVersion moves) in each window.
Run it from any checkout: it measures that checkout's operator (issue 15 compares before/after).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests.cluster

from tests.cluster import running_cluster, wait_for
from tests.operator_harness import JobDriver, Operator, custom, events, get_sweep, install_crds, sweep_doc

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
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-operator-cpu-"))
    store = (work / "store").as_uri()
    names = [f"s{k:02d}" for k in range(a.sweeps)]
    with running_cluster(work / "cluster") as kc:
        install_crds(kc)
        api = custom(kc)
        ns = "bench-cpu"
        kc.kubectl("create", "namespace", ns)
        op = Operator(kc, ns, work / "operator.log", poll_seconds=a.poll).start()
        base = {"bench": "operator.cpu", "sweeps": a.sweeps, "poll_seconds": a.poll}
        try:
            with JobDriver(kc, ns, hold={"d1", "d2"}, log_dir=work) as driver:
                kc.apply([doc(n, store) for n in names], "-n", ns)
                wait_for("every run Running", lambda: all(
                    [r.get("state") for r in (get_sweep(api, ns, n).get("status") or {}).get("runs", [])]
                    == ["Running", "Running"] for n in names), 180)  # fmt: skip
                print(json.dumps({**base, "state": "in_flight", **measure(op, api, ns, names, a.seconds)}), flush=True)
                driver.hold.clear()
                wait_for("every sweep Succeeded", lambda: all(
                    (get_sweep(api, ns, n).get("status") or {}).get("phase") == "Succeeded" for n in names), 600)  # fmt: skip
            bad = doc("invalid", store)
            bad["spec"]["resources"]["cpu"] = "lots"
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
