"""tests.harness.processes.wait_for, the one poller every cluster test waits with: returns what it waited
for, fails at once when the condition can no longer hold, and only then at its deadline."""

from __future__ import annotations

import time

import pytest

from tests.harness.processes import Unreachable, wait_for


def test_returns_the_first_truthy_value_and_retries_errors():
    calls = []

    def check():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not yet")
        return {"phase": "Running"}

    assert wait_for("phase", check, 30) == {"phase": "Running"}
    assert len(calls) == 3


def test_unreachable_fails_at_once_not_at_the_deadline():
    def check():
        raise Unreachable("ended in phase Failed")

    started = time.monotonic()
    with pytest.raises(Unreachable, match="sweep Succeeded: ended in phase Failed"):
        wait_for("sweep Succeeded", check, 300)
    assert time.monotonic() - started < 5


def test_deadline_names_the_last_value_and_error():
    with pytest.raises(TimeoutError, match=r"never not ready after 0.5s \(last value: 0"):
        wait_for("never", lambda: 0, 0.5)
