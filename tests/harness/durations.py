"""Where the suite's time goes (a pytest plugin, loaded by tests/conftest.py; issue 30).

Each test's time is its setup + call + teardown; a group is its directory under tests/
(``tests/unit``, ``tests/e2e``, ...). When ``MINISERIES_TEST_TIMES`` names a file (`make test` sets
it), the run ends with ``phase pytest:<group> <s> tests=<n>`` lines, ``slowest <s> <test id>`` lines
for the 15 slowest tests and the time spent waiting for background builds, the lines
scripts/ci_phases.py reads back from a CI log, and writes the same as JSON to that file.

And while `make test`'s background builds run (tests/harness/builds.py), the tests that need nothing
built run first, so that they overlap the builds; the order within each part is unchanged."""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from tests.harness import builds

SLOWEST = 15
_times: dict[str, float] = defaultdict(float)
_started: list[float] = []


def group_of(nodeid: str) -> str:
    """``tests/unit/test_x.py::test_y`` -> ``tests/unit``; a file directly in tests/ -> ``tests``."""
    parts = PurePosixPath(nodeid.split("::", 1)[0]).parts
    return "/".join(parts[:2]) if len(parts) > 2 else "/".join(parts[:-1]) or "."


def summary(times: dict[str, float], wall_s: float, build_wait_s: float) -> dict[str, Any]:
    """The JSON written to $MINISERIES_TEST_TIMES: per group (seconds, tests), the slowest tests."""
    groups: dict[str, dict[str, float]] = {}
    for nodeid, seconds in times.items():
        g = groups.setdefault(group_of(nodeid), {"seconds": 0.0, "tests": 0})
        g["seconds"] += seconds
        g["tests"] += 1
    slowest = sorted(times.items(), key=lambda kv: (-kv[1], kv[0]))[:SLOWEST]
    return {
        "wall_s": round(wall_s, 1),
        "build_wait_s": round(build_wait_s, 1),
        "groups": {k: {"seconds": round(v["seconds"], 1), "tests": int(v["tests"])} for k, v in sorted(groups.items())},
        "slowest": [[nodeid, round(s, 1)] for nodeid, s in slowest],
    }


def lines(data: dict[str, Any]) -> list[str]:
    """The summary as the log lines scripts/ci_phases.py parses."""
    out = [f"phase pytest {data['wall_s']:.1f} tests={sum(g['tests'] for g in data['groups'].values())}"]
    out += [f"phase pytest:{k} {g['seconds']:.1f} tests={g['tests']}" for k, g in data["groups"].items()]
    out.append(f"phase pytest:build-wait {data['build_wait_s']:.1f} waited")
    out += [f"slowest {s:.1f} {nodeid}" for nodeid, s in data["slowest"]]
    return out


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if any(builds.job_status(j) == "running" for j in ("binaries", "images")):
        items.sort(key=lambda item: 0 if item.nodeid.startswith(builds.NEED_NOTHING_BUILT) else 1)  # stable


def pytest_sessionstart(session: pytest.Session) -> None:
    _started.append(time.monotonic())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _times[report.nodeid] += report.duration


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    target = os.environ.get("MINISERIES_TEST_TIMES")
    if not target:
        return
    wall = time.monotonic() - _started[0] if _started else 0.0
    data = summary(dict(_times), wall, builds.waited_s())
    Path(target).write_text(json.dumps(data, indent=1) + "\n")
    for line in lines(data):
        terminalreporter.write_line(line)
