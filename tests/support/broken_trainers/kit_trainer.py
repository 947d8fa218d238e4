"""A tiny trainer that follows the contract through the kit (miniseries.contract.trainer_kit), torch-free.

Its "model" is one number and its loss a power law of the tokens seen, so that a run takes seconds;
it checkpoints, reports, stops and resumes exactly as the contract says. The other scripts here each
break one clause by calling `main` with one knob turned (tests/unit/test_trainer_check.py).

    KIT_TRAINER_STEP_SECONDS   sleep per step (default 0.02)
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from miniseries.contract.store import open_store
from miniseries.contract.trainer_kit import EXIT_PREEMPTED, TrainerRun, open_run


def law(tokens: int) -> float:
    return 2.0 + 20.0 / max(tokens, 1) ** 0.2


def weights(step: int) -> dict[str, bytes]:
    return {"model.json": json.dumps({"w": 1.0 / (1 + step)}).encode()}


def main(
    *,
    resume: bool = True,
    honour_stop: bool = True,
    stop_exit: int = EXIT_PREEMPTED,
    results: bool = True,
    results_bytes: bytes | None = None,
    stray_key: str | None = None,
) -> int:
    run = open_run()
    if not honour_stop:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sleep = float(os.environ.get("KIT_TRAINER_STEP_SECONDS", "0.02"))
    ckpt = run.latest_checkpoint() if resume else None
    start = ckpt.step if ckpt else 0
    if stray_key:  # a careless trainer: straight to the store, past the kit's prefix check
        open_store(run.args.store).write_bytes(stray_key, b"not mine to write")
    for step in range(start + 1, run.steps + 1):
        time.sleep(sleep)
        run.log(step, law(run.tokens_at(step)), lr=1.0)
        if run.stop_requested:
            code = run.preempted(step, weights(step))
            return code if stop_exit == EXIT_PREEMPTED else stop_exit
        if run.checkpoint_due(step):
            run.save_checkpoint(step, weights(step))
    final = run.save_checkpoint(run.steps, weights(run.steps))
    if not results:
        return 0
    if results_bytes is not None:
        run.write_loss_curve()
        run.write("results.json", results_bytes)
        return 0
    return run.finish(checkpoint_uri=final)


def exit_with(code: int) -> None:
    sys.stdout.flush()
    sys.exit(code)


if __name__ == "__main__":
    exit_with(main())


__all__ = ["TrainerRun", "exit_with", "main"]
