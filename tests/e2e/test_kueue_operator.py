"""The operator itself (`miniseries operator`, tests/harness/operator_process.py) queueing its jobs
through the real Kueue (tests/harness/kueue.py): kwok 8-GPU nodes, the real training-operator.

Sweeps name a LocalQueue (spec.resources.queueName) whose ClusterQueue's GPU quota admits fewer
runs than the sweep has: runs show Queued with Kueue's reason, are admitted as quota frees, and
all succeed on their first attempt; a higher-priority sweep preempts a lower one, whose run shows
Preempted (not Failed, no attempt spent) and resumes from its checkpoint when readmitted; and
spec.suspend works under Kueue (through the Workload's spec.active, since Kueue unsuspends an
admitted job that someone else suspends).

No trainer runs in a pod here (kwok): a run "trains" by tests/support/fake_trainer.py run with its
job's own container args against the sweep's file:// store (progress, checkpoints, results.json),
and "finishes" by its pod being marked Succeeded, as the kubelet would report it. Each test
prints one JSON line (``KUEUE-OPERATOR ...``) with the admission timeline.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from miniseries.contract.layout import step_of_checkpoint_key
from tests.e2e.test_kueue import (
    condition,
    finish,
    pods,
    pytorchjobs,
    queues,
    running_pods,
    suspended,
    unique,
    workloads,
)
from tests.harness.kueue import KUEUE_API, PRIORITY_LABEL, QUEUE_LABEL, KueueCluster, fresh_namespace
from tests.harness.operator_process import PYTHONPATH, Operator, SweepHistory, events, sweep_doc, sweep_url
from tests.harness.processes import Violation, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.kueue, pytest.mark.slow]

DEADLINE = 180  # a safety net: every wait below ends on a state
GPU = "nvidia.com/gpu"


@pytest.fixture(scope="module")
def kq(kueue_shared: KueueCluster) -> KueueCluster:
    """The session's Kueue cluster (tests/e2e/conftest.py), shared with the other Kueue modules."""
    return kueue_shared


@pytest.fixture
def ns(kq: KueueCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    with fresh_namespace(kq, request.node.name) as name:
        yield name


@pytest.fixture
def operator(kq: KueueCluster, ns: str, tmp_path: Path) -> Iterator[Operator]:
    # The priority classes are the test's own; which ones a sweep may use is test_tenancy_cluster.py's.
    op = Operator(kq, ns, tmp_path / "operator.log", args=["--allow-any-priority-class"]).start()
    try:
        yield op
    finally:
        op.stop()


# ---- a sweep and its runs
def queued_sweep(
    ns: str, name: str, store: Path, depths: list[int], queue: str, priority: str | None = None
) -> dict[str, Any]:
    """examples/tiny.yaml with 4-GPU runs (so 8 GPUs of quota hold two), queued in ``queue``; the
    operator's own bound (16 GPUs, parallelism 4) is above Kueue's quota on purpose."""
    doc = sweep_doc(name, f"file://{store}", depths=depths, gpusPerRun=4, nodeGpus=16, parallelism=4,
                    queueName=queue)  # fmt: skip
    if priority:
        doc["spec"]["resources"]["priorityClassName"] = priority
    doc["metadata"]["namespace"] = ns
    doc["spec"]["training"]["deviceBatchSize"] = 8  # 8 x 128 x 4 GPUs = the 4096-token batch
    return doc


def sweep_status(kc: KueueCluster, ns: str, name: str) -> dict[str, Any]:
    return kc.get_json(sweep_url(ns, name)).get("status") or {}  # type: ignore[no-any-return]


def run_states(st: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in st.get("runs", [])}


def train(job: dict[str, Any], log: Path, **env: str) -> int:
    """The fake trainer with the job's own container args (its store, run, resume), to the end or
    to the failure ``env`` asks for; the exit code."""
    args = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["args"]
    full = {**os.environ, "PYTHONPATH": PYTHONPATH, "FAKE_TRAINER_STEP_SECONDS": "0.001", **env}
    with log.open("ab") as out:
        return subprocess.run([sys.executable, "-m", "tests.support.fake_trainer", *args], env=full, stdout=out,
                              stderr=subprocess.STDOUT, timeout=120).returncode  # fmt: skip


def tokenizer_through_kueue(kc: KueueCluster, ns: str, sweep: str, queue: str) -> dict[str, Any]:
    """The sweep's tokenizer Job: queued and admitted by Kueue like the runs; its output written as
    tests/support/fake_tokenizer.py writes it (kwok runs no container)."""
    name = f"{sweep}-tokenizer"

    def admitted() -> dict[str, Any] | None:
        out = kc.kubectl("get", "job", name, "-n", ns, "-o=json", check=False)
        if out.returncode != 0:
            return None
        job: dict[str, Any] = json.loads(out.stdout)
        return job if job["spec"].get("suspend") is False else None

    job = wait_for(f"tokenizer Job {name} admitted by Kueue", admitted, DEADLINE)
    assert job["metadata"]["labels"][QUEUE_LABEL] == queue
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    subprocess.run([sys.executable, "-m", "tests.support.fake_tokenizer", *args], check=True,
                   env={**os.environ, "PYTHONPATH": PYTHONPATH})  # fmt: skip
    return job


class Timeline:
    """When (seconds since ``t0``, by polling) each run of a sweep was first seen in each state,
    with the reason and message its status gave then."""

    def __init__(self, kc: KueueCluster, ns: str, sweep: str, t0: float) -> None:
        self.kc, self.ns, self.sweep, self.t0 = kc, ns, sweep, t0
        self.first: dict[str, dict[str, float]] = {}
        self.said: dict[str, dict[str, tuple[str | None, str | None]]] = {}

    def poll(self) -> dict[str, Any]:
        now = round(time.monotonic() - self.t0, 2)
        st = sweep_status(self.kc, self.ns, self.sweep)
        for r in st.get("runs", []):
            self.first.setdefault(r["name"], {}).setdefault(r["state"], now)
            self.said.setdefault(r["name"], {}).setdefault(r["state"], (r.get("reason"), r.get("message")))
        return st

    def until(self, what: str, check: Any) -> Any:
        return wait_for(what, lambda: check(self.poll()), DEADLINE)

    def __enter__(self) -> Timeline:
        """Poll in the background too, so that a state passed while the test trains a run is timed."""
        self._stop = threading.Event()

        def loop() -> None:
            while not self._stop.wait(0.3):
                try:
                    self.poll()
                except Exception:  # a failed kubectl: the next poll
                    continue

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def finish_run(kc: KueueCluster, ns: str, sweep: str, run: str, log: Path) -> None:
    """The run trains to the end (results.json in the store), then its pod reports Succeeded."""
    job = pytorchjobs(kc, ns)[f"{sweep}-{run}"]
    assert train(job, log) == 0
    finish(kc, ns, f"{sweep}-{run}")


# ---- the tests
def test_quota_queues_runs_admits_them_as_it_frees_and_loses_none(
    kq: KueueCluster, ns: str, operator: Operator, tmp_path: Path
) -> None:
    kc = kq
    _, lq = queues(kc, 8, [ns])
    store = tmp_path / "store"
    doc = queued_sweep(ns, "quota", store, [1, 2, 3, 4], lq)
    t0 = time.monotonic()
    with SweepHistory(kc, ns, "quota") as history, Timeline(kc, ns, "quota", t0) as tl:
        kc.apply(doc)
        tokenizer_through_kueue(kc, ns, "quota", lq)
        t_tok = round(time.monotonic() - t0, 2)

        # The operator creates all four (its bound), Kueue admits two (8 GPUs of quota).
        def two_admitted_two_queued(st: dict[str, Any]) -> dict[str, dict[str, Any]] | None:
            runs = run_states(st)
            moving = [n for n, r in runs.items() if r["state"] in ("Admitted", "Running")]
            queued = [n for n, r in runs.items() if r["state"] == "Queued"]
            if len(moving) > 2:
                raise Violation(f"more runs admitted than 8 GPUs of quota allow: {runs}")
            tried = [n for n in queued if "insufficient unused quota" in (runs[n].get("message") or "")]
            return runs if len(moving) == 2 and len(queued) == 2 and tried else None

        runs = tl.until("two runs admitted, two queued with Kueue's reason", two_admitted_two_queued)
        jobs_now = pytorchjobs(kc, ns)
        assert len(jobs_now) == 4
        for job in jobs_now.values():  # every job queued in the LocalQueue, created suspended
            assert job["metadata"]["labels"][QUEUE_LABEL] == lq
        queued = sorted(n for n, r in runs.items() if r["state"] == "Queued")
        for n in queued:
            assert suspended(jobs_now[f"quota-{n}"]) and pods(kc, ns, f"quota-{n}") == []
            assert runs[n]["attempts"] == 1
        head = next(n for n in queued if "insufficient unused quota" in (runs[n].get("message") or ""))
        assert runs[head]["reason"] == "Pending", runs[head]
        assert f"insufficient unused quota for {GPU}" in runs[head]["message"]
        assert "4 more needed" in runs[head]["message"], runs[head]
        st = sweep_status(kc, ns, "quota")
        assert st["phase"] == "Running" and condition({"status": st}, "Degraded")["status"] == "False"
        printed = kc.kubectl("get", "scalingsweeps", "-n", ns).stdout
        ev = {e["reason"] for e in events(kc, ns, "quota")}
        assert {"RunQueued", "RunAdmitted"} <= ev, ev

        # Finish the admitted ones one by one; each frees 4 GPUs and Kueue admits a queued run.
        finished_at: dict[str, float] = {}
        for _ in range(4):
            st = tl.poll()
            running = sorted(n for n, r in run_states(st).items() if r["state"] == "Running")
            if not running:
                running = tl.until("a run running", lambda s: sorted(n for n, r in run_states(s).items()
                                                                     if r["state"] == "Running") or None)  # fmt: skip
            n = running[0]
            wait_for(f"{n}'s pod running", lambda n=n: len(running_pods(kc, ns, f"quota-{n}")) == 1, DEADLINE)
            finish_run(kc, ns, "quota", n, tmp_path / f"{n}.log")
            finished_at[n] = round(time.monotonic() - t0, 2)
            tl.until(f"{n} Succeeded", lambda s, n=n: run_states(s)[n]["state"] == "Succeeded")

        final = tl.until("every run Succeeded", lambda s: s if s["totals"]["runsDone"] == 4 else None)
        statuses = history.statuses()
    # Nothing lost: each run succeeded on its first attempt; none was ever Failed or Retrying.
    assert {r["name"]: (r["state"], r["attempts"]) for r in final["runs"]} == {
        n: ("Succeeded", 1) for n in ("d1", "d2", "d3", "d4")
    }
    seen = {(r["name"], r["state"]) for s in statuses for r in s.get("runs", [])}
    assert not {st for _, st in seen} & {"Failed", "Retrying"}, seen
    for n in queued:  # the two that waited were recorded Queued, then Admitted/Running, then Succeeded
        assert {(n, "Queued"), (n, "Succeeded")} <= seen, seen
        assert tl.first[n]["Queued"] < tl.first[n].get("Admitted", tl.first[n]["Running"]) < tl.first[n]["Succeeded"]
    assert sorted(pytorchjobs(kc, ns)) == [f"quota-d{i}" for i in (1, 2, 3, 4)]  # one job each, never recreated
    ws = workloads(kc, ns)
    assert all(condition(w, "Finished")["status"] == "True" for w in ws.values()), ws
    print("KUEUE-OPERATOR " + json.dumps({
        "test": "quota", "tokenizer_admitted_s": t_tok, "first_seen_s": tl.first, "finished_s": finished_at,
        "queued_said": {n: tl.said[n]["Queued"] for n in queued}, "kubectl_get": printed.splitlines(),
    }))  # fmt: skip


def test_higher_priority_sweep_preempts_a_run_that_resumes_when_readmitted(
    kq: KueueCluster, ns: str, operator: Operator, tmp_path: Path
) -> None:
    kc = kq
    low_pc, high_pc = unique("low"), unique("high")
    kc.apply([{"apiVersion": KUEUE_API, "kind": "WorkloadPriorityClass", "metadata": {"name": low_pc}, "value": 100},
              {"apiVersion": KUEUE_API, "kind": "WorkloadPriorityClass", "metadata": {"name": high_pc},
               "value": 1000}])  # fmt: skip
    _, lq = queues(kc, 8, [ns], preemption=True)
    store = tmp_path / "store"
    t0 = time.monotonic()
    with SweepHistory(kc, ns, "explore") as history:
        kc.apply(queued_sweep(ns, "explore", store, [1, 2], lq, low_pc))
        low = Timeline(kc, ns, "explore", t0)
        tokenizer_through_kueue(kc, ns, "explore", lq)
        low.until("both low-priority runs running",
                  lambda s: len(s.get("runs", [])) == 2 and all(r["state"] == "Running" for r in s["runs"]))  # fmt: skip
        # Both train past a checkpoint (step 25) and stop there (their pods stay Running).
        for n in ("d1", "d2"):
            job = pytorchjobs(kc, ns)[f"explore-{n}"]
            assert job["metadata"]["labels"][PRIORITY_LABEL] == low_pc
            assert train(job, tmp_path / f"explore-{n}.log", FAKE_TRAINER_FAIL_RUN=n, FAKE_TRAINER_FAIL_STEP="25") == 3
        low.until("both checkpointed at step 25",
                  lambda s: all(step_of_checkpoint_key(r.get("checkpointUri") or "") == 25 for r in s["runs"]))  # fmt: skip

        t_high = time.monotonic()
        kc.apply(queued_sweep(ns, "deadline", store, [1], lq, high_pc))
        high = Timeline(kc, ns, "deadline", t0)
        tokenizer_through_kueue(kc, ns, "deadline", lq)

        def one_preempted(st: dict[str, Any]) -> str | None:
            pre = [r["name"] for r in st["runs"] if r["state"] == "Preempted"]
            if len(pre) > 1:
                raise Violation(f"both low-priority runs preempted: {st['runs']}")
            return pre[0] if pre else None

        victim = low.until("a low-priority run Preempted", one_preempted)
        preempted_s = round(time.monotonic() - t_high, 2)
        survivor = "d2" if victim == "d1" else "d1"
        r = run_states(sweep_status(kc, ns, "explore"))[victim]
        assert r["reason"] == "Preempted" and r["attempts"] == 1, r
        assert "Preempted to accommodate a workload" in r["message"], r
        high.until("the high-priority run running", lambda s: run_states(s).get("d1", {}).get("state") == "Running")
        high_running_s = round(time.monotonic() - t_high, 2)
        wait_for("victim's pod deleted", lambda: pods(kc, ns, f"explore-{victim}") == [], DEADLINE)
        assert suspended(pytorchjobs(kc, ns)[f"explore-{victim}"])
        assert run_states(sweep_status(kc, ns, "explore"))[survivor]["state"] == "Running"
        st = sweep_status(kc, ns, "explore")
        assert st["totals"]["runsFailed"] == 0 and st["phase"] == "Running"
        assert condition({"status": st}, "Degraded")["status"] == "False"
        preempt_events = [e for e in events(kc, ns, "explore") if e["reason"] == "RunPreempted"]
        assert len(preempt_events) == 1 and preempt_events[0]["type"] == "Warning", preempt_events

        # The high-priority run finishes: the victim is admitted again, same job, same attempt,
        # and resumes from its step-25 checkpoint.
        t_done = time.monotonic()
        finish_run(kc, ns, "deadline", "d1", tmp_path / "deadline-d1.log")
        low.until("victim readmitted and running",
                  lambda s: run_states(s)[victim]["state"] == "Running" and run_states(s)[victim]["attempts"] == 1)  # fmt: skip
        readmitted_s = round(time.monotonic() - t_done, 2)
        wait_for("victim's pod running again", lambda: len(running_pods(kc, ns, f"explore-{victim}")) == 1, DEADLINE)
        log = tmp_path / f"explore-{victim}-resumed.log"
        finish_run(kc, ns, "explore", victim, log)
        finish_run(kc, ns, "explore", survivor, tmp_path / f"explore-{survivor}-end.log")
        final = low.until("both low-priority runs Succeeded", lambda s: s if s["totals"]["runsDone"] == 2 else None)
        statuses = history.statuses()
    assert {r["name"]: (r["state"], r["attempts"]) for r in final["runs"]} == {"d1": ("Succeeded", 1),
                                                                               "d2": ("Succeeded", 1)}  # fmt: skip
    seen = {(r["name"], r["state"]) for s in statuses for r in s.get("runs", [])}
    assert (victim, "Preempted") in seen and not {st for _, st in seen} & {"Failed", "Retrying"}, seen
    results = json.loads((store / ns / "explore" / victim / "results.json").read_text())
    resumed = log.read_text()
    print("KUEUE-OPERATOR " + json.dumps({
        "test": "preemption", "victim": victim, "high_created_to_victim_preempted_s": preempted_s,
        "high_created_to_high_running_s": high_running_s, "high_finished_to_victim_running_s": readmitted_s,
        "victim_first_seen_s": low.first[victim], "victim_said": low.said[victim],
        "victim_results_steps": results.get("steps"), "resume_log_tail": resumed[-300:],
    }))  # fmt: skip


def test_spec_suspend_under_kueue_deactivates_the_workload_and_resumes(
    kq: KueueCluster, ns: str, operator: Operator, tmp_path: Path
) -> None:
    kc = kq
    _, lq = queues(kc, 8, [ns])
    t0 = time.monotonic()
    kc.apply(queued_sweep(ns, "pause", tmp_path / "store", [1], lq))
    tl = Timeline(kc, ns, "pause", t0)
    tokenizer_through_kueue(kc, ns, "pause", lq)
    tl.until("the run running", lambda s: run_states(s).get("d1", {}).get("state") == "Running")
    wait_for("its pod running", lambda: len(running_pods(kc, ns, "pause-d1")) == 1, DEADLINE)

    kc.kubectl("patch", "scalingsweep", "pause", "-n", ns, "--type=merge", "-p", '{"spec": {"suspend": true}}')
    t_suspend = time.monotonic()
    tl.until("the sweep Suspended", lambda s: s.get("phase") == "Suspended")
    wait_for("the job suspended by Kueue, its pod gone",
             lambda: suspended(pytorchjobs(kc, ns)["pause-d1"]) and pods(kc, ns, "pause-d1") == [], DEADLINE)  # fmt: skip
    suspended_s = round(time.monotonic() - t_suspend, 2)

    # Kueue evicted the inactive workload and released its quota (it admits no inactive workload).
    def released(_: Any) -> dict[str, Any] | None:
        (w,) = workloads(kc, ns).values()
        done = condition(w, "Evicted")["status"] == "True" and condition(w, "QuotaReserved")["status"] == "False"
        return w if done else None

    w = tl.until("the workload evicted, its quota released", released)
    assert w["spec"]["active"] is False and w["metadata"]["annotations"]["miniseries.dev/deactivated-for"]
    evicted = condition(w, "Evicted")
    assert evicted["reason"] == "Deactivated", evicted
    assert suspended(pytorchjobs(kc, ns)["pause-d1"])

    kc.kubectl("patch", "scalingsweep", "pause", "-n", ns, "--type=merge", "-p", '{"spec": {"suspend": false}}')
    t_resume = time.monotonic()
    tl.until("the run running again", lambda s: run_states(s)["d1"]["state"] == "Running")
    wait_for("its pod running again", lambda: len(running_pods(kc, ns, "pause-d1")) == 1, DEADLINE)
    resumed_s = round(time.monotonic() - t_resume, 2)
    (w,) = workloads(kc, ns).values()
    assert w["spec"].get("active", True) is True and "miniseries.dev/deactivated-for" not in (
        w["metadata"].get("annotations") or {}
    )
    assert run_states(sweep_status(kc, ns, "pause"))["d1"]["attempts"] == 1
    print("KUEUE-OPERATOR " + json.dumps({
        "test": "suspend", "suspend_to_pod_gone_s": suspended_s, "unsuspend_to_running_s": resumed_s,
        "evicted_condition": {k: evicted.get(k) for k in ("status", "reason", "message")},
        "first_seen_s": tl.first,
    }))  # fmt: skip
