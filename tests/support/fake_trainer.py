"""A stand-in for `miniseries_trainer.train` that honours its contract without torch.

It parses the flags `trainer_flags` produces, "trains" by sleeping per step,
rewrites progress.json, writes checkpoints (files, then manifest) every
--checkpoint-every steps, resumes from the newest complete checkpoint, exits on
SIGTERM without losing written checkpoints, and writes results.json at the end.
It lets the local runner's orchestration (skip, resume, Ctrl-C) be tested in
seconds; the real trainer is tested end to end where it exists.

    FAKE_TRAINER_STEP_SECONDS   sleep per step (default 0.01)
    FAKE_TRAINER_FAIL_RUN       a run name that exits 3 at step FAKE_TRAINER_FAIL_STEP (default 2),
                                after that step's checkpoint if it is one
    FAKE_TRAINER_NONFINITE      report a NaN loss and an infinite elapsed time in progress.json,
                                as a diverged run or a broken clock would
    FAKE_TRAINER_STOP_SECONDS   on SIGTERM, finish the step, wait this long (a large checkpoint's write), then
                                checkpoint the step and exit EXIT_PREEMPTED; without it SIGTERM kills at once
    FAKE_TRAINER_PREEMPT_RUN    a run name that, the first time it reaches step FAKE_TRAINER_PREEMPT_STEP,
                                checkpoints it, writes progress.json `preempted` and exits EXIT_PREEMPTED,
                                as the trainer does on SIGTERM
    FAKE_TRAINER_HOLD_RUN       a run name that, at step FAKE_TRAINER_HOLD_STEP (after that step's checkpoint
                                if it is one), writes `held` ({"step", "pid"}) in its run directory and then
                                trains no further until it is stopped: a test acts on a known state, not a race
    FAKE_TRAINER_ENV_DIGESTS    comma-separated variable names: `env-digests.json` in the run directory holds
                                each one's sha256 (or null when unset), so a test can see that a Secret's
                                values reached the trainer without the values being written anywhere
    FAKE_TRAINER_LEAK_ENV       a variable name whose raw value is written to `leak.txt` in the run directory:
                                a careless trainer, for showing that the secret-leak test can fail
    FAKE_TRAINER_DENIED_WHILE   a file path: while that file exists, the trainer stops at its start as the real
                                one does when the store refuses its credentials: its last line is the
                                STORE_DENIED_MARKER naming the refused operation, and it exits EXIT_STORE_DENIED
    FAKE_TRAINER_NO_RESULTS_RUN a run name that trains to the end and exits 0 without writing results.json (an
                                image whose entrypoint breaks the contract)

A wsd run (--keep-steps, --init-from) checkpoints at its keep steps too, and without a checkpoint of its
own starts from the --init-from checkpoint (its trunk's), which must exist: exit 2 naming it otherwise,
as the trainer does. Each start is recorded under `starts/` (`-from-trunk` when from --init-from).
With --sweep-uid (the operator's runs) its checkpoints, progress and results carry the uid and it resumes
only from its own sweep's checkpoints, as the trainer does; it never checks before writing (a careless
trainer), so the readers' fences are what a test of it proves.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import signal
import sys
import time

from miniseries.contract.exits import EXIT_STORE_DENIED, STORE_DENIED_MARKER
from miniseries.contract.layout import LOCAL_NAMESPACE, RunLayout, SweepLayout, lineage
from miniseries.contract.preemption import EXIT_PREEMPTED, PROGRESS_PREEMPTED
from miniseries.contract.results import (
    START_CHECKPOINT,
    START_FRESH,
    START_TRUNK,
    CheckpointFile,
    CheckpointManifest,
    LossSummary,
    Progress,
    RunResults,
    RunStart,
    checkpoint_steps,
    foreign,
)
from miniseries.contract.shapes import model_shape
from miniseries.contract.store import open_store


def main() -> int:
    p = argparse.ArgumentParser()
    for name in ("namespace", "sweep", "run", "store", "data", "tokenizer", "device", "resume", "eval-bundle",
                 "sweep-uid"):  # fmt: skip
        p.add_argument(f"--{name}")
    for name in ("depth", "aspect-ratio", "head-dim", "vocab-size", "seq-len", "target-tokens", "steps",
                 "total-batch-tokens", "device-batch-size", "warmup-steps", "checkpoint-every",
                 "keep-checkpoints", "eval-tokens", "seed", "metrics-port", "core-max-per-task",
                 "store-outage-seconds"):  # fmt: skip
        p.add_argument(f"--{name}", type=int)
    p.add_argument("--warmdown-ratio", type=float)
    p.add_argument("--budget-flops", type=float)
    p.add_argument("--warmdown-shape")
    p.add_argument("--warmdown-steps", type=int)
    p.add_argument("--keep-steps", type=lambda v: {int(x) for x in v.split(",") if x}, default=set())
    p.add_argument("--init-from")
    a = p.parse_args()
    store = open_store(a.store)
    rl = RunLayout(a.namespace or LOCAL_NAMESPACE, a.sweep, a.run)
    shape = model_shape(
        a.depth, aspect_ratio=a.aspect_ratio, head_dim=a.head_dim, vocab_size=a.vocab_size, sequence_len=a.seq_len
    )
    if (denied := os.environ.get("FAKE_TRAINER_DENIED_WHILE")) and os.path.exists(denied):
        print(f"{STORE_DENIED_MARKER} HeadBucket {a.store}: AccessDenied (403)", file=sys.stderr, flush=True)
        return EXIT_STORE_DENIED
    owners = lineage(store, SweepLayout(rl.namespace, a.sweep), a.sweep_uid) if a.sweep_uid else None
    ckpts = checkpoint_steps(store, rl, owners)
    start = ckpts[-1] if ckpts and a.resume == "auto" else 0
    origin = ""
    began = RunStart(kind=START_CHECKPOINT, step=start, uri=rl.checkpoint(start), sweep_uid=a.sweep_uid) if start \
        else RunStart(kind=START_FRESH, sweep_uid=a.sweep_uid)  # fmt: skip
    if not start and a.init_from:  # a wsd branch's first start: its trunk's checkpoint at the branch's start step
        trunk = open_store(a.init_from)
        if not trunk.exists("manifest.json") or foreign(
            CheckpointManifest.from_json(trunk.read_bytes("manifest.json")).sweep_uid, owners
        ):
            print(f"--init-from {a.init_from}: no checkpoint of this sweep there", file=sys.stderr, flush=True)
            return 2
        start, origin = int(a.init_from.rstrip("/").rsplit("step_", 1)[1]), "-from-trunk"
        began = RunStart(kind=START_TRUNK, step=start, uri=a.init_from, sweep_uid=a.sweep_uid)
    print(f"fake trainer {a.run}: start at step {start}{origin}", flush=True)
    store.write_bytes(rl.root + f"starts/{start:08d}{origin}", b"")  # the test reads where each attempt began
    if names := [n for n in os.environ.get("FAKE_TRAINER_ENV_DIGESTS", "").split(",") if n]:
        digests = {n: hashlib.sha256(os.environ[n].encode()).hexdigest() if n in os.environ else None for n in names}
        store.write_bytes(rl.root + "env-digests.json", json.dumps(digests).encode())
    if leak := os.environ.get("FAKE_TRAINER_LEAK_ENV"):
        store.write_bytes(rl.root + "leak.txt", os.environ.get(leak, "").encode())
    preempt_step = int(os.environ.get("FAKE_TRAINER_PREEMPT_STEP", "0"))
    preempt = os.environ.get("FAKE_TRAINER_PREEMPT_RUN") == a.run and not store.exists(rl.root + "preempted-once")
    sleep = float(os.environ.get("FAKE_TRAINER_STEP_SECONDS", "0.01"))
    fail_step = int(os.environ.get("FAKE_TRAINER_FAIL_STEP", "2"))
    stop_seconds = os.environ.get("FAKE_TRAINER_STOP_SECONDS")
    stopping: list[int] = []
    if stop_seconds is not None:
        signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    t0 = time.time()
    curve = []

    def law(tokens: int) -> float:
        return 2.0 + 30.0 / shape.scaling_params**0.2 + 20.0 / tokens**0.2

    loss = law(start * a.total_batch_tokens) if start else 0.0  # resumed at the end: only "evaluates"
    for step in range(start + 1, a.steps + 1):
        time.sleep(sleep)
        tokens = step * a.total_batch_tokens
        loss = law(tokens)
        curve.append({"step": step, "tokens": tokens, "flops": tokens * shape.flops_per_token, "loss": loss})
        fail_here = os.environ.get("FAKE_TRAINER_FAIL_RUN") == a.run and step == fail_step
        if fail_here and step % a.checkpoint_every:
            print("simulated crash", file=sys.stderr, flush=True)
            return 3
        nonfinite = os.environ.get("FAKE_TRAINER_NONFINITE") == "1"
        progress = Progress(sweep=a.sweep, run=a.run, depth=a.depth, step=step, steps=a.steps, tokens=tokens,
                            loss=math.nan if nonfinite else loss,
                            elapsed_seconds=math.inf if nonfinite else time.time() - t0,
                            tokens_per_second=tokens / max(1e-9, time.time() - t0), updated_at=time.time(),
                            sweep_uid=a.sweep_uid)  # fmt: skip
        # to_json writes NaN as null; a trainer writing plain json.dumps sends the NaN and Infinity tokens
        raw = json.dumps(progress.to_dict()).encode() if nonfinite else progress.to_json()
        store.write_bytes(rl.progress, raw)
        preempt_here = (preempt and step == preempt_step) or bool(stopping)
        if stopping:  # SIGTERM: a slow checkpoint, as a large model's (the pod's grace period is long)
            print(f"SIGTERM at step {step}: checkpointing in {stop_seconds} s", flush=True)
            time.sleep(float(stop_seconds or 0))
        if step % a.checkpoint_every == 0 or step == a.steps or step in a.keep_steps or preempt_here:
            blob = json.dumps({"step": step}).encode()
            key = rl.checkpoint(step)
            store.write_bytes(key + "model.json", blob)
            files = [CheckpointFile(name="model.json", bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest())]
            store.write_bytes(
                key + "manifest.json",
                CheckpointManifest(
                    step=step, tokens=tokens, world_size=1, files=files, sweep_uid=a.sweep_uid
                ).to_json(),
            )
        if fail_here:
            print(f"simulated crash after the checkpoint of step {step}", file=sys.stderr, flush=True)
            return 3
        if os.environ.get("FAKE_TRAINER_HOLD_RUN") == a.run and step == int(os.environ["FAKE_TRAINER_HOLD_STEP"]):
            store.write_bytes(rl.root + "held", json.dumps({"step": step, "pid": os.getpid()}).encode())
            while True:  # until a signal ends this process
                time.sleep(0.05)
        if preempt_here:
            if not stopping:
                store.write_bytes(rl.root + "preempted-once", b"")
            progress.state, progress.updated_at = PROGRESS_PREEMPTED, time.time()
            store.write_bytes(rl.progress, progress.to_json())
            print(f"simulated preemption after the checkpoint of step {step}", file=sys.stderr, flush=True)
            return EXIT_PREEMPTED
    if os.environ.get("FAKE_TRAINER_NO_RESULTS_RUN") == a.run:
        print("fake trainer: exiting 0 without results.json", flush=True)
        return 0
    old = store.read_bytes(rl.loss_curve).decode() if store.exists(rl.loss_curve) else ""
    store.write_bytes(rl.loss_curve, (old + "".join(json.dumps(c) + "\n" for c in curve)).encode())
    tokens = a.steps * a.total_batch_tokens
    res = RunResults(
        sweep=a.sweep, run=a.run, depth=a.depth, budget_flops=a.budget_flops, shape=shape.to_dict(),
        params=shape.param_counts(), target_tokens=a.target_tokens, tokens=tokens, steps=a.steps,
        total_batch_tokens=a.total_batch_tokens, flops_per_token=shape.flops_per_token,
        flops=float(tokens * shape.flops_per_token), wall_seconds=time.time() - t0, gpu_seconds=time.time() - t0,
        world_size=1, device="cpu", loss=LossSummary(final=loss if math.isfinite(loss) else None, points=len(curve)),
        sweep_uid=a.sweep_uid, start=began,
    )  # fmt: skip
    store.write_bytes(rl.results, res.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
