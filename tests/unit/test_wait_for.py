"""tests.harness.processes.wait_for, the one poller every cluster test waits with, and its rule:
"not yet" (falsy, NotYet, any other error) keeps waiting; "wrong" (an AssertionError: a plain
assert, Violation, Unreachable) fails at once with what was seen, even if a later poll would
look fine; a watched process that exits fails the wait at once with the end of its log."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.processes import (
    NotYet,
    ProcessExited,
    Stack,
    Unreachable,
    Violation,
    unwatch,
    wait_for,
    watch,
)


def test_not_yet_keeps_waiting_through_falsy_values_and_transient_errors():
    answers = iter([None, KeyError("runs"), NotYet("2 of 4 admitted"), ConnectionError("refused"), 0])
    calls = []

    def check():
        calls.append(1)
        a = next(answers, {"phase": "Running"})
        if isinstance(a, Exception):
            raise a
        return a

    assert wait_for("phase", check, 30) == {"phase": "Running"}
    assert len(calls) == 6


def test_a_violation_fails_at_once_even_if_a_later_poll_looks_fine():
    """A check that asserts once and then returns a value: the assertion is what the wait reports."""
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 2:
            raise AssertionError("3 runs admitted where the quota allows 2: ['d1', 'd2', 'd3']")
        return {"admitted": 2} if len(calls) > 2 else None

    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"two admitted: 3 runs admitted .*'d3'\]"):
        wait_for("two admitted", check, 300)
    assert len(calls) == 2 and time.monotonic() - started < 5


def test_a_plain_assert_in_a_check_fails_at_once():
    def check():
        runs = ["d1", "d2"]
        assert len(runs) < 2, f"both preempted: {runs}"

    with pytest.raises(AssertionError, match=r"one preempted: both preempted: \['d1', 'd2'\]"):
        wait_for("one preempted", check, 300)


@pytest.mark.parametrize("kind", [Violation, Unreachable])
def test_dedicated_violations_keep_their_type(kind):
    def check():
        raise kind("ended in phase Failed")

    started = time.monotonic()
    with pytest.raises(kind, match="sweep Succeeded: ended in phase Failed"):
        wait_for("sweep Succeeded", check, 300)
    assert time.monotonic() - started < 5


def test_deadline_names_the_last_value_and_error():
    with pytest.raises(TimeoutError, match=r"never not ready after 0.5s \(last value: 0"):
        wait_for("never", lambda: 0, 0.5)
    with pytest.raises(TimeoutError, match=r"last error: NotYet: 1 of 2 pods"):
        wait_for("pods", lambda: (_ for _ in ()).throw(NotYet("1 of 2 pods")), 0.5)


def _dying(tmp_path: Path, name: str) -> subprocess.Popen[bytes]:
    log = tmp_path / f"{name}.log"
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-c", "import sys; print('panic: etcd is gone'); sys.exit(3)"],
                                stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


def test_a_watched_process_that_exits_fails_the_wait_at_once_with_its_log(tmp_path):
    """What an operator or a controller dying looks like: not a timeout after the deadline."""
    proc = _dying(tmp_path, "operator")
    watch("operator (ns-1)", proc, tmp_path / "operator.log")
    try:
        proc.wait()
        started = time.monotonic()
        with pytest.raises(ProcessExited, match=r"(?s)d1 Running: operator \(ns-1\) .*exited with 3.*etcd is gone"):
            wait_for("d1 Running", lambda: None, 300)
        assert time.monotonic() - started < 5
    finally:
        unwatch(proc)
    assert wait_for("after unwatch", lambda: True, 1)  # stopped on purpose: no longer fails waits


def test_the_proc_argument_and_stack_processes_are_watched(tmp_path):
    proc = _dying(tmp_path, "trainer")
    proc.wait()
    with pytest.raises(ProcessExited, match="exited with 3"):
        wait_for("a checkpoint", lambda: None, 300, proc)
    stack = Stack(tmp_path)
    kueue = stack.start("kueue", [sys.executable, "-c", "print('kueue: bad flag'); raise SystemExit(2)"])
    try:
        kueue.wait()
        with pytest.raises(ProcessExited, match=r"(?s)kueue .*exited with 2.*kueue: bad flag"):
            wait_for("workload admitted", lambda: None, 300)
    finally:
        stack.stop()
    assert wait_for("after stop", lambda: True, 1)
