"""The local runner's children: one trainer or tokenizer process at a time, stoppable with Ctrl-C.

Each child runs in its own session (so Ctrl-C reaches the runner, not it) with its output in a
log file; stopping it is SIGTERM to its process group, then SIGKILL after a grace period, so
its checkpoints are kept and a rerun resumes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

#: Seconds a child gets to exit after SIGTERM before SIGKILL.
STOP_GRACE_SECONDS = 20.0


class Stopped(Exception):
    """The user pressed Ctrl-C; the child was stopped and its checkpoints kept."""


def stop_child(proc: subprocess.Popen[bytes], grace: float = STOP_GRACE_SECONDS) -> int:
    """SIGTERM the child's process group, SIGKILL it after `grace` seconds."""
    if proc.poll() is not None:
        return int(proc.returncode)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return proc.wait()


def run_child(
    cmd: list[str],
    log_path: Path,
    env: dict[str, str],
    on_tick: Callable[[], None] | None = None,
    tick_seconds: float = 1.0,
) -> int:
    """Run one child in its own session (Ctrl-C reaches us, not it), logging to a file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"\n$ {' '.join(cmd)}\n".encode())
        log.flush()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        previous = _sigterm_as_interrupt()
        try:
            while True:
                try:
                    return proc.wait(timeout=tick_seconds)
                except subprocess.TimeoutExpired:
                    if on_tick:
                        on_tick()
        except KeyboardInterrupt:
            stop_child(proc)
            raise Stopped() from None
        except BaseException:
            stop_child(proc)
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _sigterm_as_interrupt() -> signal.Handlers | Callable[..., object] | int | None:
    """SIGTERM to the runner stops its child as Ctrl-C does. The child runs in its own session, so
    a runner that died on SIGTERM (Python's default) would leave it training on, orphaned. Only the
    main thread may set handlers; elsewhere nothing changes (None)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
