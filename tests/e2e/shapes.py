"""What the e2e sweeps of test_e2e.py, test_trainjob.py, test_containers.py (its tiny sweep) and
test_kueue_real_trainer.py, the jobs of test_real_trainer.py and test_preemption.py and the runs of
test_multinode.py train:
examples/tiny.yaml's model (width 16 x depth, a 1024-token vocabulary, 128-token context) on a quarter
of its tokens in quarter-size steps, so every run keeps its step count (d2: 112 steps, d1: 38) at about
half the CPU (a step's optimizer work does not shrink with the batch; 20 d2 steps on the loaded 2-core
machine, 2026-12-07: 28.4 -> 15.5 s of CPU).

Those tests need no real loss curve: they check the path (jobs, pods, env, store, status, fit and report
exist) and that a resumed or distributed run ends with its reference's loss within 1e-4, which holds at
any batch. Their kill freezes the trainer (SIGSTOP) once a checkpoint exists, so the first checkpoint at
step 10 leaves it 100 steps of margin; the preemption tests (test_preemption.py,
test_kueue_real_trainer.py) freeze it until the SIGTERM is pending (tests/e2e/resume.py), so no margin
in wall time is needed; test_real_trainer.py and test_preemption.py take these steps through the
`tiny_steps` fixture (tests/e2e/conftest.py). The tiny sweep's real curves are
`make tiny-traces`' (tests/support/tiny_traces.json), not these.
"""

from __future__ import annotations

from typing import Any

#: merged into a ScalingSweep's spec.training (examples/tiny.yaml: 8 tokens a parameter, 4096-token
#: steps of 32 sequences, a checkpoint every 25 steps, 65536 validation tokens)
E2E_TRAINING: dict[str, Any] = {
    "tokensPerParam": 2,
    "totalBatchTokens": 1024,
    "deviceBatchSize": 8,
    "checkpointEvery": 10,
    "evalTokens": 16384,
}


def e2e_training(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` (a ScalingSweep, as loaded from examples/tiny.yaml) with the e2e training; returned."""
    doc["spec"]["training"].update(E2E_TRAINING)
    return doc
