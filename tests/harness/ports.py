"""Loopback ports for test processes that run side by side (issue 30, ``MINISERIES_PARALLEL``).

A plain run asks the kernel for a free port (:func:`tests.harness.processes.free_port`): it binds
port 0, reads the number and closes the socket, and the server binds it a moment later. Two pytest
workers doing that at once can be handed the same number in that moment, and so can any outgoing
connection (the kernel's ephemeral range is the same range). In parallel mode each test process
therefore takes its ports from a *slot* of its own: a block of :data:`SLOT_SIZE` ports below the
ephemeral range, claimed by an exclusive ``flock`` on ``<MINISERIES_PORT_LOCKS>/<k>.lock`` that it
holds until it exits (the kernel drops it even when the process is killed). No other test process on
this host, of this run or another checkout's, holds the same slot, so no two of them can pick the
same port; a port something else on the host already uses fails the bind check and is passed over.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import threading
from pathlib import Path
from typing import IO

#: below the kernel's ephemeral range (net.ipv4.ip_local_port_range: 32768-60999 by default), so an
#: outgoing connection never takes a port a slot hands out
FIRST, END = 20000, 32768
SLOT_SIZE = 400
SLOTS = (END - FIRST) // SLOT_SIZE
LOCK_DIR = Path(os.environ.get("MINISERIES_PORT_LOCKS", "/tmp/miniseries-port-slots"))


class NoSlot(RuntimeError):
    """Every slot is held by another test process on this host."""


class PortSlot:
    """The ports of one slot, handed out in turn (from a random start, so that consecutive runs do
    not reuse the same numbers), each checked free by binding it first."""

    def __init__(self, index: int, lock: IO[str]) -> None:
        self.index, self._lock = index, lock
        self.first = FIRST + index * SLOT_SIZE
        self._next = random.randrange(SLOT_SIZE)
        self._mutex = threading.Lock()

    def take(self) -> int:
        with self._mutex:
            for _ in range(SLOT_SIZE):
                port = self.first + self._next
                self._next = (self._next + 1) % SLOT_SIZE
                if bindable(port):
                    return port
        raise NoSlot(f"no free port left in slot {self.index} ({self.first}-{self.first + SLOT_SIZE - 1})")


def bindable(port: int) -> bool:
    with socket.socket() as s:  # no SO_REUSEADDR: a port in TIME_WAIT counts as taken too
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def claim(lock_dir: Path = LOCK_DIR) -> PortSlot:
    """The first slot no other process holds, held by this process from now on."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    for k in range(SLOTS):
        f = (lock_dir / f"{k}.lock").open("a")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            continue
        return PortSlot(k, f)
    raise NoSlot(f"all {SLOTS} port slots under {lock_dir} are held by other test processes")


_slot: list[PortSlot] = []
_claiming = threading.Lock()


def enabled() -> bool:
    """Parallel mode: an xdist worker, or a run of scripts/run-tests.sh with MINISERIES_PARALLEL."""
    return bool(os.environ.get("PYTEST_XDIST_WORKER") or os.environ.get("MINISERIES_PARALLEL", "") not in ("", "0"))


def slot_port() -> int:
    """A port of this process's slot (claimed on first use)."""
    with _claiming:
        if not _slot:
            _slot.append(claim())
    return _slot[0].take()
