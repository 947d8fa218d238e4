"""Processes the harness starts, and how tests wait for them: :class:`Stack` starts processes in
order and stops them in reverse (each one's output in ``<workdir>/<name>.log``), :func:`wait_for`
polls for a state, :func:`free_port` picks a loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Unreachable(AssertionError):
    """Raised by a ``wait_for`` check when what it waits for can no longer happen (the state was
    passed, the object reached another end): the wait fails at once, not at its deadline."""


def wait_for(what: str, check: Callable[[], Any], timeout: float, proc: subprocess.Popen[bytes] | None = None) -> Any:
    """Poll ``check`` until it returns something truthy, and return that; fail early if ``proc``
    dies or ``check`` raises :class:`Unreachable`, and at the deadline with the last value (or
    error) seen. The condition is what a test waits for; the deadline is only a safety net, so
    give a generous one rather than a guess at how long the machine takes."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    value: Any = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {proc.returncode}{_log_tail(proc)}")
        try:
            value = check()
            if value:
                return value
        except Unreachable as e:
            raise Unreachable(f"{what}: {e}") from None
        except Exception as e:  # retried until the deadline
            last = e
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout}s (last value: {value!r}, last error: {last})")


def _log_tail(proc: subprocess.Popen[bytes], chars: int = 2000) -> str:
    log = getattr(proc, "log_path", None)
    if log is None or not Path(log).exists():
        return ""
    return f"; end of {log}:\n{Path(log).read_text(errors='replace')[-chars:]}"


class Stack:
    """Starts processes in order and stops them in reverse; their output goes to workdir/<name>.log."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        proc.log_path = log  # type: ignore[attr-defined]  # for the error when it dies early
        self.procs.append((name, proc))
        return proc

    def pids(self) -> list[int]:
        return [p.pid for _, p in self.procs]

    def stop(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
