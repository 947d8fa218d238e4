"""Tests that wait for `make test`'s background builds (issue 30: build while testing).

scripts/run-tests.sh starts the Go builds (job ``binaries``) and the image builds (job ``images``)
in the background and runs the tests meanwhile. It names a directory in ``MINISERIES_BUILDS``
where each job has ``<job>.log`` (its output), ``<job>.pid`` and, once it ended, ``<job>.rc``.

:func:`built` wraps a harness lookup (``find_binary``, ``kueue_binary``...): while the lookup says
:class:`MissingBinary` and the job that makes it still runs, it waits, so a test waits only for what
it needs. A job that failed is :class:`BuildFailed` (the test fails, with the end of the build's own
log), never a skip; one that ended well leaves the lookup's own answer. Without ``MINISERIES_BUILDS``
(a plain ``pytest``) nothing waits. The build scripts put a component's other files in place before
its binary, so the lookup passing means the component is whole.

While jobs run, the tests that need nothing built (:data:`NEED_NOTHING_BUILT`) run first
(tests/harness/durations.py, the plugin); the order of the rest is unchanged."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
#: how long a test waits for a background build before failing (a cold Go build on 2 busy cores)
WAIT_S = float(os.environ.get("MINISERIES_BUILD_WAIT_S", "3600"))
POLL_S = 2.0
#: the groups that need nothing built, run first while the builds run
NEED_NOTHING_BUILT = ("tests/unit/", "tests/trainer/")
_waited: list[float] = []


class MissingBinary(Exception):
    """A component is not built yet; the message names the script that builds it."""


class BuildFailed(Exception):
    """A background build failed or did not finish in time; the message holds its log's end."""


def waited_s() -> float:
    """Seconds this session's tests spent waiting for background builds."""
    return sum(_waited)


def _state() -> Path | None:
    d = os.environ.get("MINISERIES_BUILDS")
    return Path(d) if d else None


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
    except (OSError, ValueError):
        return False
    return True


def job_status(job: str, state: Path | None = None) -> str:
    """``none`` (no such background job), ``running``, ``ok`` or ``failed (<why>)``."""
    state = state or _state()
    if state is None or not (state / f"{job}.pid").is_file():
        return "none"
    rc_file = state / f"{job}.rc"
    if rc_file.is_file():
        rc = rc_file.read_text().strip()
        return "ok" if rc == "0" else f"failed (exit {rc})"
    if not _alive(state / f"{job}.pid"):
        return "failed (it ended without an exit status)"
    return "running"


def log_tail(job: str, state: Path | None = None, lines: int = 60) -> str:
    state = state or _state()
    log = state / f"{job}.log" if state else None
    if log is None or not log.is_file():
        return "(no log)"
    return f"{log}, last {lines} lines:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def built(lookup: Callable[[], T], job: str = "binaries", what: str = "", wait_s: float | None = None) -> T:
    """``lookup()``, waiting while background job ``job`` may still produce what it looks up."""
    deadline = time.monotonic() + (WAIT_S if wait_s is None else wait_s)
    t0 = time.monotonic()
    try:
        while True:
            try:
                return lookup()
            except MissingBinary:
                status = job_status(job)
                if status in ("none", "ok"):
                    raise  # nothing is building it: the lookup's own answer (a skip naming the script)
                if status != "running":
                    raise BuildFailed(f"the background build '{job}' {status} before {what or 'it'} was built: "
                                      f"{log_tail(job)}") from None  # fmt: skip
                if time.monotonic() > deadline:
                    raise BuildFailed(f"{what or 'a component'} still not built after {time.monotonic() - t0:.0f} s "
                                      f"of the background build '{job}' (MINISERIES_BUILD_WAIT_S): "
                                      f"{log_tail(job)}") from None  # fmt: skip
                time.sleep(POLL_S)  # a build, not a state of the system under test: nothing to watch but files
    finally:
        _waited.append(time.monotonic() - t0 if time.monotonic() - t0 > POLL_S / 2 else 0.0)
