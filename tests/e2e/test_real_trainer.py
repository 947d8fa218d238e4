"""The real trainer on the real path, without the kopf operator in between: a PyTorchJob whose
container runs `python -m miniseries_trainer.train` with the argv contract
(`miniseries.plan.trainer_argv.trainer_flags`), validated by the training-operator's webhook, turned into
a pod by its controller, run by the node agent on CPU. Then the same run with its process killed
after a checkpoint: the pod's restartPolicy (OnFailure, the controller's default) restarts it,
`--resume=auto` picks the checkpoint up, and the final loss matches the uninterrupted run.

The store is file:// (test_e2e.py runs the trainer against an S3 store); the trainer code path is
the same.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from miniseries.contract.layout import LOCAL_NAMESPACE, SweepLayout, join_uri
from miniseries.contract.results import checkpoint_steps, read_results
from miniseries.control.backends.podsecurity import restrict
from miniseries.local.runner import LocalSweep, free_port
from miniseries.plan.trainer_argv import TRAINER_MODULE, trainer_flags
from tests.e2e.resume import LOSS_TOLERANCE
from tests.harness.cluster import Cluster
from tests.harness.processes import Unreachable, wait_for
from tests.harness.training_operator import RealPathCluster

pytestmark = [pytest.mark.cluster, pytest.mark.e2e, pytest.mark.slow, pytest.mark.torch]

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("miniseries_trainer") is None:
    pytest.skip("needs torch and miniseries_trainer installed in this venv", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]


def trainer_job(ls: LocalSweep, name: str, sweep: str) -> dict[str, Any]:
    run = ls.runs()[0]
    flags = trainer_flags(
        ls.spec,
        SweepLayout(LOCAL_NAMESPACE, sweep),
        run,
        metrics_port=free_port(),
        device="cpu",
        store_uri=ls.spec.store.uri,
    )
    # the sweep's tokenizer was trained under the sweep name e2e-tiny: point every copy at it
    flags = ["--tokenizer=" + join_uri(ls.spec.store.uri, ls.layout.tokenizer) if f.startswith("--tokenizer=")
             else f for f in flags]  # fmt: skip
    container = {"name": "pytorch", "image": "miniseries/trainer:e2e",
                 "command": ["python", "-m", TRAINER_MODULE], "args": flags}  # fmt: skip
    return {"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob", "metadata": {"name": name, "namespace": "default"},
            "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": {"spec": restrict({
                "nodeSelector": {"miniseries.dev/e2e-node": "true"}, "containers": [container]})}}}}}  # fmt: skip


def wait_succeeded(kc: Cluster, name: str, timeout: float) -> None:
    def succeeded() -> bool:
        obj = json.loads(kc.kubectl("get", "pytorchjob", name, "-o", "json").stdout)
        conds = {c["type"]: c["status"] for c in obj.get("status", {}).get("conditions", [])}
        if conds.get("Failed") == "True":
            raise Unreachable(f"job Failed: {obj['status']}")
        return conds.get("Succeeded") == "True"

    wait_for(f"PyTorchJob {name} Succeeded", succeeded, timeout)


def trainer_pid(kc: Cluster, pod: str, namespace: str = "default") -> int:
    """The trainer's process (the node agent runs it as a local process), found by its pod's uid: not
    by its command line, which another run of the suite on this host may share."""
    assert isinstance(kc, RealPathCluster)
    return wait_for(f"{pod}'s process", lambda: kc.container_pid(namespace, pod), 120)  # type: ignore[no-any-return]


def test_trainer_runs_and_resumes_after_its_process_is_killed(real_cluster: Cluster, tiny_steps: LocalSweep,
                                                               record_property: Any) -> None:  # fmt: skip
    kc, tiny = real_cluster, tiny_steps  # quarter-size steps: the kill follows the first of 11 checkpoints
    store = tiny.store
    started = time.monotonic()
    # --- uninterrupted
    kc.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(trainer_job(tiny, "e2e-straight", "e2e-straight")))
    wait_succeeded(kc, "e2e-straight", 600)
    run = tiny.runs()[0]
    straight = read_results(store, SweepLayout(LOCAL_NAMESPACE, "e2e-straight").run(run.name))
    assert straight is not None and straight.steps == run.steps and straight.loss.final is not None
    record_property("straight_seconds", round(time.monotonic() - started, 1))

    # --- killed after its first checkpoint, restarted in place by the pod's restart policy
    layout = SweepLayout(LOCAL_NAMESPACE, "e2e-kill").run(run.name)
    kc.kubectl("apply", "-f", "-", stdin=yaml.safe_dump(trainer_job(tiny, "e2e-kill", "e2e-kill")))
    first_ckpt = wait_for("a checkpoint of e2e-kill", lambda: checkpoint_steps(store, layout), 300)[0]
    os.killpg(trainer_pid(kc, "e2e-kill-master-0"), signal.SIGKILL)
    wait_succeeded(kc, "e2e-kill", 600)
    pod = json.loads(kc.kubectl("get", "pod", "e2e-kill-master-0", "-o", "json").stdout)
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 1
    log = (kc.node_logs / "default_e2e-kill-master-0_pytorch.log").read_text()
    assert "resumed from" in log, log[-2000:]
    killed = read_results(store, layout)
    assert killed is not None and killed.steps == run.steps
    assert killed.loss.final is not None
    # Same data order and seeds, resumed from saved optimizer/data state: the resume is exact.
    assert abs(killed.loss.final - straight.loss.final) <= LOSS_TOLERANCE, (killed.loss, straight.loss)
    record_property("e2e_seconds", round(time.monotonic() - started, 1))
    print(json.dumps({"straight_final_loss": straight.loss.final, "killed_final_loss": killed.loss.final,
                      "first_checkpoint": first_ckpt, "seconds": round(time.monotonic() - started, 1)}),
          file=sys.stderr)  # fmt: skip
