"""Processes the harness starts, and how tests wait for them: :class:`Stack` starts processes in
order and stops them in reverse (each one's output in ``<workdir>/<name>.log``), :func:`wait_for`
polls for a state, :func:`free_port` picks a loopback port.

The rule every wait follows (tests/unit/test_wait_for.py proves each part):

- *not yet*: the check returns something falsy, raises :class:`NotYet`, or raises any error that
  is not an ``AssertionError`` (the object not created yet: ``KeyError``, ``ApiException``, a
  failed ``kubectl``, a refused connection). The wait keeps polling; at its deadline it fails
  naming the last value and the last error.
- *wrong*: the check raises ``AssertionError`` (a plain ``assert``, :class:`Violation`, or
  :class:`Unreachable`). An invariant was seen broken, and a later poll that happens to look
  fine does not undo that: the wait fails at once with the check's message (the observed state).
- *gone*: a process the test depends on has exited (the one passed as ``proc``, or any that
  :func:`watch` registered: every process a :class:`Stack` starts, the operator). The wait fails
  at once with the end of that process's log, not at its deadline.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.harness import ports


def free_port() -> int:
    """A loopback port nothing listens on: the kernel's pick, or in parallel mode one of this
    process's own slot (tests/harness/ports.py), which no other test process can be handed."""
    if ports.enabled():
        return ports.slot_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_run(count: int) -> int:
    """A free port (:func:`free_port`) whose next ``count - 1`` ports are free too: a pod's local rank k
    serves its metrics on port + k."""
    for _ in range(100):
        port = free_port()
        if all(ports.bindable(port + k) for k in range(1, count)):
            return port
    raise RuntimeError(f"no {count} consecutive free ports")


class Violation(AssertionError):
    """Raised by a ``wait_for`` check that saw a state the test forbids (more runs admitted than the
    quota allows, two runs preempted where one may be): the wait fails at once with that state."""


class Unreachable(Violation):
    """Raised by a ``wait_for`` check when what it waits for can no longer happen (the state was
    passed, the object reached another end): the wait fails at once, not at its deadline."""


class NotYet(Exception):
    """Raised by a ``wait_for`` check to say why the state is not reached yet; the wait goes on
    and names the last such reason if it reaches its deadline."""


class ProcessExited(RuntimeError):
    """A process a wait depends on exited while the test waited: the message ends with its log."""


# Processes whose exit fails every wait at once (a crashed operator or controller), by pid.
_watched: dict[int, tuple[str, subprocess.Popen[bytes], Path | None]] = {}
_watched_lock = threading.Lock()


def watch(name: str, proc: subprocess.Popen[bytes], log: Path | None = None) -> None:
    """From now on, every :func:`wait_for` fails at once if ``proc`` exits (until :func:`unwatch`)."""
    if log is not None:
        proc.log_path = log  # type: ignore[attr-defined]
    with _watched_lock:
        _watched[proc.pid] = (name, proc, log)


def unwatch(proc: subprocess.Popen[bytes]) -> None:
    """``proc`` is about to be stopped on purpose: its exit no longer fails waits."""
    with _watched_lock:
        _watched.pop(proc.pid, None)


def _exited(proc: subprocess.Popen[bytes] | None) -> str | None:
    """Why the wait must stop: the first watched (or given) process that has exited, with its log."""
    with _watched_lock:
        procs = [(name, p) for name, p, _ in _watched.values()]
    if proc is not None:
        procs.insert(0, (str(proc.args[0] if isinstance(proc.args, list) else proc.args), proc))
    for name, p in procs:
        if p.poll() is not None:
            return f"{name} (pid {p.pid}) exited with {p.returncode}{_log_tail(p)}"
    return None


def wait_for(what: str, check: Callable[[], Any], timeout: float, proc: subprocess.Popen[bytes] | None = None) -> Any:
    """Poll ``check`` until it returns something truthy, and return that. Fails at once when the
    check raises ``AssertionError`` (:class:`Violation`, :class:`Unreachable`) or when ``proc`` or
    a watched process exits; at the deadline with the last value and error seen. The condition is
    what a test waits for; the deadline is only a safety net, so give a generous one rather than
    a guess at how long the machine takes."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    value: Any = None
    while True:
        if gone := _exited(proc):
            raise ProcessExited(f"{what}: {gone}")
        try:
            value = check()
            if value:
                return value
        except AssertionError as e:  # seen wrong: a later poll must not hide it
            kind = type(e) if type(e) in (AssertionError, Violation, Unreachable) else Violation
            raise kind(f"{what}: {e}") from e
        except Exception as e:  # not yet: retried until the deadline, named if it is reached
            last = e
        if time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    error = f"{type(last).__name__}: {last}" if last is not None else None
    raise TimeoutError(f"{what} not ready after {timeout}s (last value: {value!r}, last error: {error})")


def _log_tail(proc: subprocess.Popen[bytes], chars: int = 3000) -> str:
    log = getattr(proc, "log_path", None)
    if log is None or not Path(log).exists():
        return ""
    return f"; end of {log}:\n{Path(log).read_text(errors='replace')[-chars:]}"


class Stack:
    """Starts processes in order and stops them in reverse; their output goes to workdir/<name>.log.
    Each is watched (:func:`watch`) while it runs: its exit fails any wait at once."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        watch(name, proc, log)
        self.procs.append((name, proc))
        return proc

    def pids(self) -> list[int]:
        return [p.pid for _, p in self.procs]

    def stop(self) -> None:
        for _, proc in self.procs:  # none of them may fail a wait from here on
            unwatch(proc)
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
