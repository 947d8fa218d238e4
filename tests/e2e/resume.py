"""The kill-and-resume scenario of the real path, written once: tests/e2e/test_e2e.py runs it
through PyTorchJobs, tests/e2e/test_trainjob.py through TrainJobs.

After the run's first checkpoint its trainer is frozen (SIGSTOP: no checkpoint completes between
the look and the kill), the newest complete checkpoint is noted, and the container's processes
are SIGKILLed (a crash, an OOM kill). The trainer is found by its pod's uid (the node agent
records each container's pid), never by a command line another run of the suite could share.
Then: the run succeeds on attempt 2, which resumed from exactly that checkpoint, and its final
loss is the uninterrupted run's within 1e-4 (same data order and seeds, optimizer and data state
restored: the resume is exact, so the tolerance is tight).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from miniseries.contract.layout import SweepLayout
from miniseries.contract.results import RunResults, checkpoint_steps, read_results
from miniseries.contract.store import Store
from miniseries.control.backends.manifests import LABEL_ATTEMPT, LABEL_RUN, LABEL_SWEEP
from tests.harness.cluster import Cluster
from tests.harness.operator_process import sweep_url
from tests.harness.processes import NotYet, Unreachable, wait_for
from tests.harness.training_operator import RealPathCluster

#: |final loss after the resume - the uninterrupted run's| at most this
LOSS_TOLERANCE = 1e-4


def wait_sweep(kc: Cluster, name: str, timeout: float, namespace: str = "default") -> dict[str, Any]:
    """The sweep's status once its phase is Succeeded or Failed."""

    def finished() -> dict[str, Any] | None:
        sweep = kc.get_json(sweep_url(namespace, name))
        status: dict[str, Any] = sweep.get("status") or {}
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    return wait_for(f"sweep {name} finished", finished, timeout)  # type: ignore[no-any-return]


@dataclass
class Resumed:
    killed_after: int  # the newest complete checkpoint when the trainer was killed
    resumed_at: int  # the step attempt 2 says it resumed from
    final_loss: float
    straight_loss: float


def run_pod(kc: RealPathCluster, namespace: str, sweep: str, run: str, attempt: int,
            phases: tuple[str, ...] = ("Running",)) -> dict[str, Any]:  # fmt: skip
    """The run's trainer pod of that attempt, once it is in one of ``phases``."""
    selector = f"{LABEL_SWEEP}={sweep},{LABEL_RUN}={run},{LABEL_ATTEMPT}={attempt}"

    def running() -> dict[str, Any]:
        pods = kc.get_json(f"/api/v1/namespaces/{namespace}/pods?labelSelector={quote(selector)}")["items"]
        live = [p for p in pods if p["status"].get("phase") in phases]
        if len(live) != 1:
            raise NotYet(f"pods {[(p['metadata']['name'], p['status'].get('phase')) for p in pods]}")
        return live[0]  # type: ignore[no-any-return]

    return wait_for(f"{sweep}/{run} attempt {attempt}'s pod {'/'.join(phases)}", running, 600)  # type: ignore[no-any-return]


def sigterm_pending(pid: int) -> bool:
    """Whether a SIGTERM waits for process ``pid`` (sent to it or its group while it is stopped)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        raise Unreachable(f"process {pid} is gone before its SIGTERM arrived") from None
    pending = 0
    for line in status.splitlines():
        if line.startswith(("SigPnd:", "ShdPnd:")):
            pending |= int(line.split()[1], 16)
    return bool(pending & (1 << (signal.SIGTERM - 1)))


@contextmanager
def frozen_until_sigterm(pid: int, timeout: float) -> Iterator[None]:
    """The trainer's process group stopped (SIGSTOP) while the block runs and afterwards until a
    SIGTERM is pending for it, then continued: the SIGTERM lands on the step the trainer was frozen
    at, however slow the machine, so a short run cannot finish before its preemption arrives. The
    grace period between the SIGTERM and a SIGKILL starts when the SIGTERM is sent: the trainer
    continues within a poll of it."""
    os.killpg(pid, signal.SIGSTOP)
    try:
        yield
        wait_for(f"a SIGTERM pending for the frozen trainer {pid}", lambda: sigterm_pending(pid), timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGCONT)


def kill_after_a_checkpoint(kc: RealPathCluster, store: Store, namespace: str, sweep: str, run: str) -> int:
    """SIGKILL the run's trainer (attempt 1) after its first checkpoint; the newest complete one then."""
    layout = SweepLayout(namespace, sweep).run(run)
    pod = run_pod(kc, namespace, sweep, run, 1)
    wait_for(f"a checkpoint of {sweep}/{run}", lambda: checkpoint_steps(store, layout), 600)
    pid = wait_for(f"{pod['metadata']['name']}'s process",
                   lambda: kc.container_pid(namespace, pod["metadata"]["name"]), 60)  # fmt: skip
    os.killpg(pid, signal.SIGSTOP)  # frozen: what the store holds now is what attempt 2 finds
    try:
        last = checkpoint_steps(store, layout)[-1]
    finally:
        os.killpg(pid, signal.SIGKILL)
    return last


def kill_and_resume(
    kc: RealPathCluster,
    store: Store,
    namespace: str,
    sweep: str,
    run: str,
    straight: RunResults,
    wait_sweep: Callable[[Any, str, float], dict[str, Any]],
) -> Resumed:
    """The scenario, with its three assertions: attempt 2; resumed from the checkpoint written
    before the kill; the uninterrupted run's final loss within LOSS_TOLERANCE."""
    killed_after = kill_after_a_checkpoint(kc, store, namespace, sweep, run)
    # attempt 2's pod, whatever its phase: a short run may have finished before a poll sees it Running
    second = run_pod(kc, namespace, sweep, run, 2, ("Pending", "Running", "Succeeded", "Failed"))
    container = second["spec"]["containers"][0]["name"]
    log_path = kc.node_logs / f"{namespace}_{second['metadata']['name']}_{container}.log"
    status = wait_sweep(kc, sweep, 1200)
    assert status["phase"] == "Succeeded", status
    (state,) = [r for r in status["runs"] if r["name"] == run]
    assert state["attempts"] == 2, state
    log = log_path.read_text()
    found = re.findall(r"resumed from \S+ at step (\d+)", log)
    assert found, f"attempt 2 did not resume: {log[-2000:]}"
    resumed_at = int(found[0])
    assert resumed_at == killed_after, (resumed_at, killed_after)
    results = read_results(store, SweepLayout(namespace, sweep).run(run))
    assert results is not None and results.loss.final is not None and straight.loss.final is not None
    assert results.steps == straight.steps, (results.steps, straight.steps)
    assert abs(results.loss.final - straight.loss.final) <= LOSS_TOLERANCE, (results.loss, straight.loss)
    return Resumed(killed_after, resumed_at, results.loss.final, straight.loss.final)
