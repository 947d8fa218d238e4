"""What a preemption costs: steps lost, seconds from SIGTERM to exit, and the checkpoint write speed
that sizes the pod's termination grace period for a d20.

    python bench/preemption.py [--depth 6 --vocab-size 32768 --repeats 3 --no-s3 --no-trainer]

1. The real trainer on the tiny corpus (tests/support/tiny_training.py), CPU, --deterministic:
   SIGTERM once it printed step 10; its exit status, the last step it reported, the checkpoint
   step, the seconds from the signal to its exit; then the resumed run against an
   uninterrupted one (bitwise equal loss curves means nothing was lost or repeated).
2. Checkpoint write speed: the trainer's own save_checkpoint (torch.save, sha256, the store's
   atomic write) of a --depth model with its optimizer state, to a local directory and to S3
   (versitygw on loopback, tests/harness/s3.py), best of --repeats; bytes per second of the
   manifest's bytes.
3. d20 (the spec's default model dials, one 8-GPU node): checkpoint bytes from
   miniseries.contract.preemption.checkpoint_bytes, the step in flight from the plan's own
   wall-time arithmetic, the seconds to write it at each measured speed, and the grace period
   control/backends/manifests.py gives its pod.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the repository, for tests.harness and tests.support

from tests.support.tiny_training import make_corpus, train_argv, trainer_env  # noqa: E402

STEP_LINE = re.compile(r"^step +(\d+)/")


def trainer_preemption(work: Path, steps: int = 40, at_step: int = 10) -> dict[str, Any]:
    from miniseries.contract.layout import LOCAL_NAMESPACE, RunLayout
    from miniseries.contract.results import checkpoint_steps, read_loss_curve
    from miniseries.contract.store import open_store

    corpus = make_corpus(work / "corpus")
    run = RunLayout(LOCAL_NAMESPACE, "t", "d1")
    common = dict(target_tokens=512 * steps, deterministic=True, checkpoint_every=0)
    cmd = [sys.executable, "-m", "miniseries_trainer.train"]
    env = trainer_env() | {"PYTHONUNBUFFERED": "1"}
    straight, stopped = work / "straight", work / "stopped"
    subprocess.run([*cmd, *train_argv(corpus, straight, **common)], env=env, check=True, capture_output=True)

    proc = subprocess.Popen([*cmd, *train_argv(corpus, stopped, **common)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)  # fmt: skip
    assert proc.stdout is not None
    reported, sent, step_at_signal = [], 0.0, None
    for line in proc.stdout:
        if m := STEP_LINE.match(line):
            reported.append(int(m.group(1)))
            if step_at_signal is None and reported[-1] >= at_step:
                step_at_signal, sent = reported[-1], time.perf_counter()
                proc.send_signal(signal.SIGTERM)
    code = proc.wait()
    seconds = time.perf_counter() - sent
    ckpts = checkpoint_steps(open_store(stopped.as_uri()), run)
    subprocess.run([*cmd, *train_argv(corpus, stopped, **common)], env=env, check=True, capture_output=True)

    def curve(d: Path) -> list[tuple[int, float]]:
        return [(p["step"], p["loss"]) for p in read_loss_curve(open_store(d.as_uri()), run)]

    last = reported[-1] if reported else 0
    return {
        "exit_code": code,
        "step_printed_when_signalled": step_at_signal,
        "last_step_finished": last,
        "checkpoint_steps": ckpts,
        # finished steps the checkpoint does not hold: what a resume would train again
        "steps_lost": last - (ckpts[-1] if ckpts else 0),
        "seconds_sigterm_to_exit": round(seconds, 3),
        "resumed_equals_uninterrupted_bitwise": curve(straight) == curve(stopped),
    }


def write_speed(store_uri: str, depth: int, vocab_size: int, repeats: int) -> dict[str, Any]:
    import torch

    from miniseries.contract.layout import RunLayout
    from miniseries.contract.results import read_manifest
    from miniseries.contract.shapes import model_shape
    from miniseries.contract.store import open_store
    from miniseries_trainer.checkpoint import save_checkpoint
    from miniseries_trainer.model import build_model
    from miniseries_trainer.optim import build_optimizers

    shape = model_shape(depth, aspect_ratio=64, head_dim=64, vocab_size=vocab_size, sequence_len=64)
    model = build_model(shape, "cpu")
    opts = build_optimizers(model, total_batch_tokens=2**19)
    x = torch.randint(0, shape.vocab_size, (1, 64))
    model(x, x).backward()  # gradients, so both optimizers hold their full state
    for o in opts:
        o.step()
    store, run = open_store(store_uri), RunLayout("bench", "preempt", f"d{depth}")
    best = float("inf")
    for i in range(1, repeats + 1):
        t0 = time.perf_counter()
        save_checkpoint(store, run, i, i, model=model, optimizers=opts, state={"step": i}, keep=1)
        best = min(best, time.perf_counter() - t0)
    written = sum(f.bytes for f in read_manifest(store, run, repeats).files)
    return {"params": shape.total_params, "bytes": written, "seconds": round(best, 3),
            "bytes_per_second": round(written / best)}  # fmt: skip


def d20(local_bps: float, s3_bps: float | None) -> dict[str, Any]:
    from miniseries.api.spec import ScalingSweepSpec
    from miniseries.contract.preemption import checkpoint_bytes
    from miniseries.control.backends.pod_template import CHECKPOINT_WRITE_BYTES_PER_SECOND, termination_grace_seconds
    from miniseries.plan.planner import make_plan
    from miniseries.plan.run_shape import shape_for

    spec = ScalingSweepSpec.model_validate({"depths": [20], "resources": {"gpusPerRun": 8, "nodeGpus": 8},
                                            "store": {"uri": "s3://bench"},
                                            "data": {"shardsUri": "s3://bench/d", "tokenizerUri": "s3://bench/t"}})  # fmt: skip
    (run,) = make_plan(spec).runs
    shape = shape_for(spec, 20)
    size = checkpoint_bytes(shape)
    step_seconds = run.est_hours * 3600 / run.steps
    out: dict[str, Any] = {
        "params": shape.total_params,
        "world_size": run.gpus,
        "checkpoint_bytes": size,
        "model_bytes": 4 * shape.total_params,
        "step_seconds_est": round(step_seconds, 3),
        "write_seconds_local": round(size / local_bps, 1),
        "write_seconds_s3": round(size / s3_bps, 1) if s3_bps else None,
        "grace_assumed_bytes_per_second": CHECKPOINT_WRITE_BYTES_PER_SECOND,
        "termination_grace_period_seconds": termination_grace_seconds(spec, run),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depth", type=int, default=6, help="model whose checkpoint write is timed (width 64 x depth)")
    ap.add_argument("--vocab-size", type=int, default=32768)
    ap.add_argument("--repeats", type=int, default=3, help="writes per store; the fastest counts")
    ap.add_argument("--no-s3", action="store_true", help="skip S3 (versitygw)")
    ap.add_argument("--no-trainer", action="store_true", help="skip the SIGTERM run of the real trainer")
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-preempt-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        if not args.no_trainer:
            out["trainer"] = trainer_preemption(work / "trainer")
        out["write_local"] = write_speed((work / "store").as_uri(), args.depth, args.vocab_size, args.repeats)
        if not args.no_s3:
            from tests.harness.s3 import new_bucket, s3_server

            bucket = new_bucket(stack.enter_context(s3_server(work / "s3")), "bench")
            os.environ.update(bucket.env)
            out["write_s3"] = write_speed(bucket.uri, args.depth, args.vocab_size, args.repeats)
        s3_bps = out["write_s3"]["bytes_per_second"] if "write_s3" in out else None
        out["d20"] = d20(out["write_local"]["bytes_per_second"], s3_bps)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
