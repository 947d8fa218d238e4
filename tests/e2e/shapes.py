"""What the e2e trainers train: examples/tiny.yaml's model (width 16 x depth, a 1024-token vocabulary,
128-token context), on a quarter of its tokens in quarter-size steps, so every run keeps the step
count it had (d2: 112 steps, d1: 38) at a quarter of the compute.

No e2e test needs a real loss curve: they check the path (jobs, pods, env, store, status, fit and
report exist) and that a resumed run ends with the uninterrupted run's loss within 1e-4, which holds at
any batch. The step count is what the kill and preemption tests need (a run still training when the
signal lands), and the first checkpoint at step 10 leaves them 100 steps of it. The tiny sweep's real
curves are `make tiny-traces`' (tests/support/tiny_traces.json), not these.
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
