"""Preemption end to end with the real trainer under the real Kueue (issue 26 item 8): every piece
was tested alone (Kueue's eviction on kwok with the fake trainer, test_kueue_operator.py; the
trainer's SIGTERM checkpoint, test_preemption.py), here they run together once.

`miniseries operator` queues two sweeps of the same tiny spec (depth 2, one GPU a run) in a
LocalQueue whose ClusterQueue holds one GPU, on the node agent's node (tests/harness/node_agent.py:
pods run as local processes, the real trainer on CPU). The low-priority sweep's run trains; the
high-priority sweep arrives; Kueue evicts the low run's workload, the training-operator deletes its
pod, the node agent SIGTERMs the trainer, which checkpoints the step it finished and exits 75
(EXIT_PREEMPTED). The trainer is frozen (SIGSTOP) from its first steps until that SIGTERM is pending
(tests/e2e/resume.py), so the preemption lands mid-run however slow the machine, and the runs train
the e2e sweeps' quarter-size steps (tests/e2e/shapes.py). The run shows Preempted (no retry spent: attempt 1, nothing failed); the
high-priority run trains to the end uninterrupted; the low run is readmitted, resumes from the
SIGTERM step and ends with the high run's final loss within 1e-4 (same spec, same seed: the
uninterrupted reference costs no extra run).
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from miniseries.contract.layout import SweepLayout, join_uri
from miniseries.contract.preemption import EXIT_PREEMPTED, PROGRESS_PREEMPTED
from miniseries.contract.results import checkpoint_steps, read_progress, read_results
from miniseries.contract.store import open_store
from miniseries.local.runner import DATA_KEY, LocalSweep
from tests.e2e.resume import LOSS_TOLERANCE, frozen_until_sigterm, run_pod
from tests.e2e.shapes import e2e_training
from tests.harness.binaries import REPO
from tests.harness.kueue import KUEUE_API, KueueCluster, fresh_namespace
from tests.harness.node_agent import NODE_LABEL, PID_DIR
from tests.harness.operator_process import Operator, SweepHistory, sweep_url
from tests.harness.processes import NotYet, Unreachable, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.kueue, pytest.mark.slow, pytest.mark.torch,
              pytest.mark.preemption]  # fmt: skip

DEADLINE = 900  # a safety net: every wait below ends on a state (the trainer runs on a shared CPU)
GPU = "nvidia.com/gpu"


@pytest.fixture(scope="module")
def kq(kueue_shared: KueueCluster) -> KueueCluster:
    """The session's Kueue cluster (tests/e2e/conftest.py): its node agent's node advertises one GPU;
    the kwok nodes beside it are outside this test's ResourceFlavor (it selects the agent's label)."""
    return kueue_shared


def one_gpu_queue(kc: KueueCluster, ns: str) -> str:
    """A ClusterQueue of one GPU on the node agent's node (its flavor selects that node's label),
    preempting lower priorities, and its LocalQueue in ``ns``, Active."""
    flavor, cq, lq = f"agent-{uuid.uuid4().hex[:5]}", f"one-gpu-{uuid.uuid4().hex[:5]}", "team"
    kc.apply([
        {"apiVersion": KUEUE_API, "kind": "ResourceFlavor", "metadata": {"name": flavor},
         "spec": {"nodeLabels": {NODE_LABEL: "true"}}},
        {"apiVersion": KUEUE_API, "kind": "ClusterQueue", "metadata": {"name": cq}, "spec": {
            "namespaceSelector": {}, "preemption": {"withinClusterQueue": "LowerPriority"},
            "resourceGroups": [{"coveredResources": ["cpu", "memory", GPU], "flavors": [{"name": flavor, "resources": [
                {"name": "cpu", "nominalQuota": "8"}, {"name": "memory", "nominalQuota": "16Gi"},
                {"name": GPU, "nominalQuota": "1"}]}]}]}},
        {"apiVersion": KUEUE_API, "kind": "LocalQueue", "metadata": {"name": lq, "namespace": ns},
         "spec": {"clusterQueue": cq}},
    ])  # fmt: skip
    active = "-o=jsonpath={.status.conditions[?(@.type=='Active')].status}"
    for kind, name, where in (("clusterqueue", cq, []), ("localqueue", lq, ["-n", ns])):
        wait_for(f"{kind} {name} Active", lambda k=kind, n=name, w=where: kc.kubectl("get", k, n, *w, active).stdout
                 == "True", 120)  # fmt: skip
    return lq


def sweep_doc(tiny: LocalSweep, store: Path, ns: str, name: str, queue: str, priority: str) -> dict[str, Any]:
    """examples/tiny.yaml's model at depth 2 in the e2e steps, on the node agent, its data and tokenizer
    from the e2e `tiny` fixture's store, queued in ``queue`` with ``priority``."""
    doc = e2e_training(yaml.safe_load((REPO / "examples" / "tiny.yaml").read_text()))
    doc["metadata"] = {"name": name, "namespace": ns}
    spec = doc["spec"]
    spec["depths"] = [2]
    spec["store"] = {"uri": store.as_uri()}
    spec["data"]["shardsUri"] = join_uri(tiny.spec.store.uri, DATA_KEY)
    spec["data"]["tokenizerUri"] = join_uri(tiny.spec.store.uri, tiny.layout.tokenizer)
    spec["resources"].update(nodeSelector={NODE_LABEL: "true"}, parallelism=1, cpu="1", memory="2Gi",
                             queueName=queue, priorityClassName=priority)  # fmt: skip
    return doc


def run_state(kc: KueueCluster, ns: str, sweep: str, run: str = "d2") -> dict[str, Any]:
    st = kc.get_json(sweep_url(ns, sweep)).get("status") or {}
    for r in st.get("runs", []):
        if r["name"] == run:
            return {**r, "phase": st.get("phase")}
    raise NotYet(f"{sweep} has no run {run} in status yet: {st.get('phase')}")


def test_kueue_preempts_the_real_trainer_which_checkpoints_and_resumes_exactly(
    kq: KueueCluster, tiny: LocalSweep, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    kc = kq
    low_pc, high_pc = f"low-{uuid.uuid4().hex[:5]}", f"high-{uuid.uuid4().hex[:5]}"
    kc.apply([{"apiVersion": KUEUE_API, "kind": "WorkloadPriorityClass", "metadata": {"name": low_pc}, "value": 100},
              {"apiVersion": KUEUE_API, "kind": "WorkloadPriorityClass", "metadata": {"name": high_pc},
               "value": 1000}])  # fmt: skip
    with fresh_namespace(kc, request.node.name) as ns:
        lq = one_gpu_queue(kc, ns)
        store_dir = tmp_path / "store"
        store = open_store(store_dir.as_uri())
        low = SweepLayout(ns, "low").run("d2")
        # the admin lists the priority classes sweeps may set (none by default, issue 28)
        allowed = [f"--allowed-priority-class={pc}" for pc in (low_pc, high_pc)]
        op = Operator(kc, ns, tmp_path / "operator.log", args=allowed).start()
        try:
            with SweepHistory(kc, ns, "low") as history:
                # --- the low-priority run trains
                kc.apply(sweep_doc(tiny, store_dir, ns, "low", lq, low_pc))
                first_pod = run_pod(kc, ns, "low", "d2", 1)
                training = wait_for("low/d2 training", lambda: (p := read_progress(store, low)) is not None
                                    and p.state == "training" and p.step >= 1 and p, DEADLINE)  # fmt: skip

                # --- the high-priority sweep arrives: Kueue evicts low/d2, whose trainer checkpoints on SIGTERM
                pid = wait_for("low/d2's process", lambda: kc.container_pid(ns, first_pod["metadata"]["name"]), 60)
                with frozen_until_sigterm(pid, DEADLINE):
                    kc.apply(sweep_doc(tiny, store_dir, ns, "high", lq, high_pc))
                exit_file = kc.node_logs / PID_DIR / f"{first_pod['metadata']['uid']}_pytorch.exit"
                code = int(wait_for("the low trainer's exit", exit_file.read_text, DEADLINE))
                assert code == EXIT_PREEMPTED, (code, (kc.node_logs / f"{ns}_{first_pod['metadata']['name']}"
                                                       "_pytorch.log").read_text()[-2000:])  # fmt: skip
                progress = read_progress(store, low)
                assert progress is not None and progress.state == PROGRESS_PREEMPTED, progress
                sigterm_step = progress.step
                assert (
                    checkpoint_steps(store, low)[-1] == sigterm_step and training.step <= sigterm_step < progress.steps
                )

                def preempted(st: dict[str, Any]) -> dict[str, Any] | None:
                    return next(
                        (r for r in st.get("runs", []) if r["name"] == "d2" and r["state"] == "Preempted"), None
                    )

                shown = wait_for("low/d2 Preempted in status",
                                 lambda: history.first(preempted, lambda st: st.get("phase") in ("Succeeded", "Failed")),
                                 DEADLINE)  # fmt: skip
                assert shown["attempts"] == 1 and shown["reason"] == "Preempted", shown  # no retry spent

                # --- the high-priority run trains to its end, uninterrupted
                def finished(sweep: str) -> dict[str, Any]:
                    r = run_state(kc, ns, sweep)
                    if r["phase"] in ("Failed", "Degraded"):
                        raise Unreachable(f"{sweep}: {r}")
                    if r["phase"] != "Succeeded":
                        raise NotYet(f"{sweep}: {r['phase']}, d2 {r['state']}")
                    return r

                high_d2 = wait_for("high Succeeded", lambda: finished("high"), DEADLINE)
                assert high_d2["attempts"] == 1, high_d2
                # --- low/d2 readmitted, the same attempt, resumes from the SIGTERM step, ends
                low_d2 = wait_for("low Succeeded", lambda: finished("low"), DEADLINE)
                assert low_d2["attempts"] == 1, low_d2
                seen = {r["state"] for st in history.statuses() for r in st.get("runs", [])}
                assert "Preempted" in seen and not seen & {"Failed", "Retrying"}, history.summary()
        finally:
            op.stop()
        log = (kc.node_logs / f"{ns}_{first_pod['metadata']['name']}_pytorch.log").read_text()
        resumes = [int(s) for s in re.findall(r"resumed from \S+ at step (\d+)", log)]
        assert resumes == [sigterm_step], (resumes, sigterm_step, log[-3000:])
        straight = read_results(store, SweepLayout(ns, "high").run("d2"))
        resumed = read_results(store, low)
        assert straight is not None and resumed is not None and resumed.steps == straight.steps
        assert straight.loss.final is not None and resumed.loss.final is not None
        assert abs(resumed.loss.final - straight.loss.final) <= LOSS_TOLERANCE, (resumed.loss, straight.loss)
        print("KUEUE-REAL-TRAINER " + json.dumps({
            "sigterm_step": sigterm_step, "steps": straight.steps, "high_final_loss": straight.loss.final,
            "low_final_loss": resumed.loss.final, "trained_before_high": training.step,
        }))  # fmt: skip
