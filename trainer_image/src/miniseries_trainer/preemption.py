"""The trainer's side of contract/preemption.py: stopping on SIGTERM (and SIGINT) with a checkpoint,
so that a preemption loses at most the optimizer step in flight.

Kubernetes stops a pod (Kueue's preemption, a node drain, a deleted or suspended job) with
SIGTERM, then SIGKILL after the pod's terminationGracePeriodSeconds (sized for this in the
operator's control/backends/manifests.py). Without a handler the trainer would lose everything since its
last periodic checkpoint; as PID 1 of its container it would even ignore SIGTERM and wait for
the SIGKILL.

The handler only records the signal (no I/O, no allocation: it may run between any two
bytecodes, in the middle of a store write). The training loop asks `stop.agreed()` once per
step, after the step: under torch.distributed every rank must stop at the same step (they
save one checkpoint together), so the flag is all-reduced (MAX) over the ranks, one int per
step. Then train.py writes a checkpoint (files first, manifest last, atomically, as the
periodic ones), progress.json with state "preempted", and exits EXIT_PREEMPTED
(miniseries.contract.preemption explains the code). Resuming is the ordinary --resume=auto.

After the last step (evaluation and results; the final checkpoint is already written) there
is nothing left to save, so `raise_on_signal` makes a signal raise `Preempted` at once and the
trainer exits EXIT_PREEMPTED; the restarted run resumes at the end and evaluates again.

A second SIGTERM while the checkpoint is written is recorded and otherwise ignored: every
store write is atomic and the manifest comes last, so even the SIGKILL that follows cannot
leave a checkpoint that a resume would take. A second SIGINT (Ctrl-C twice) raises
KeyboardInterrupt: a person at a terminal who insists gets their prompt back, and the same
atomic writes keep the store consistent.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType
from typing import Any

import torch
import torch.distributed as dist

from miniseries.contract.preemption import EXIT_PREEMPTED

__all__ = ["EXIT_PREEMPTED", "Preempted", "StopSignal"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preempted(Exception):
    """A stop signal arrived when there was nothing left to checkpoint (evaluation, results)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class StopSignal:
    """Installs the SIGTERM/SIGINT handlers for the `with` block and restores the old ones after.

    Outside the main thread (where Python cannot install handlers) it installs nothing and
    never asks to stop."""

    def __init__(self) -> None:
        self.signum: int | None = None  # the first stop signal received
        self.count = 0  # how many arrived
        self.installed = False
        self._raise = False
        self._previous: dict[int, Any] = {}

    # -- the handler: record, nothing else (see the module docstring)
    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum
        if self._raise:
            self._raise = False  # once: the exit path must not be interrupted again
            raise Preempted(signum)
        if signum == signal.SIGINT and self.count > 1:
            raise KeyboardInterrupt

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
            self.installed = True
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()
        self.installed = False

    @property
    def requested(self) -> bool:
        """This process received a stop signal."""
        return self.signum is not None

    def agreed(self, world: int, device: torch.device) -> bool:
        """Whether any rank received a stop signal: the same answer on every rank (a collective,
        so every rank must call it at the same point of the loop)."""
        flag = 1 if self.requested else 0
        if world > 1:
            t = torch.tensor([flag], dtype=torch.int32, device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            flag = int(t.item())
        return bool(flag)

    def raise_on_signal(self) -> None:
        """From now on a stop signal raises `Preempted` (and one already received does now)."""
        if self.signum is not None:
            raise Preempted(self.signum)
        self._raise = True

    def describe(self) -> str:
        name = signal.Signals(self.signum).name if self.signum is not None else "a stop signal from another rank"
        return name + (f" ({self.count} received)" if self.count > 1 else "")
