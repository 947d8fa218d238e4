"""Where the suite's time goes (a pytest plugin, loaded by tests/conftest.py; issue 30).

Each test's time is its setup + call + teardown; a group is its directory under tests/
(``tests/unit``, ``tests/e2e``, ...). When ``MINISERIES_TEST_TIMES`` names a file (`make test` sets
it), the run ends with ``phase pytest:<group> <s> tests=<n>`` lines, ``slowest <s> <test id>`` lines
for the 15 slowest tests and the time spent waiting for background builds, the lines
scripts/ci_phases.py reads back from a CI log, and writes the same as JSON to that file.

And while `make test`'s background builds run (tests/harness/builds.py), the tests that need nothing
built run first, so that they overlap the builds; the order within each part is unchanged.

Under pytest-xdist (tests/harness/parallel.py) the controller gets every worker's reports, so the
times are all of them; each worker sends its build wait back (``workeroutput``), and the controller
tells every worker the same order (``workerinput``: xdist requires identical collections).
scripts/run-tests.sh runs two parts side by side, each writing its own JSON; ``python -m
tests.harness.durations OUT PART.json...`` merges them (the longest part's wall, groups summed, the
slowest of both) and prints the merged lines last, the ones a CI log's table keeps. A group's
seconds are its tests' times added up, so in parallel they may exceed the wall time.

Each test's CPU seconds (tests/harness/cpu.py: its process tree, read on the worker that ran it and
sent along in the report's ``user_properties``) go beside its wall time: ``phase cpu:<group>`` lines
and ``cpu <s> <test id>`` lines for the 15 that cost most CPU. The suite is CPU-bound on 2 cores, so
that list, not the slowest, says where time can be won.

Each such run also keeps every test's time in :data:`HISTORY` (``~/.cache/miniseries``, a test's
newest time replacing its older one): the parallel part hands out the longest files first by it."""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from tests.harness import builds, cpu

SLOWEST = 15
#: every test's last time in seconds by node id, across runs (MINISERIES_TEST_HISTORY moves it)
HISTORY = Path(os.environ.get("MINISERIES_TEST_HISTORY", Path.home() / ".cache" / "miniseries" / "test-times.json"))
_times: dict[str, float] = defaultdict(float)
_cpu: dict[str, float] = defaultdict(float)
_cpu_started = pytest.StashKey[float]()
_cpu_read: list[float] = []  # the last reading, at the end of the test before
_started: list[float] = []
_worker_waits: list[float] = []
_reorder: list[bool] = []


def group_of(nodeid: str) -> str:
    """``tests/unit/test_x.py::test_y`` -> ``tests/unit``; a file directly in tests/ -> ``tests``."""
    parts = PurePosixPath(nodeid.split("::", 1)[0]).parts
    return "/".join(parts[:2]) if len(parts) > 2 else "/".join(parts[:-1]) or "."


def _top(times: dict[str, float]) -> list[list[Any]]:
    return [[nodeid, round(s, 1)] for nodeid, s in sorted(times.items(), key=lambda kv: (-kv[1], kv[0]))[:SLOWEST]]


def summary(
    times: dict[str, float], wall_s: float, build_wait_s: float, cpu_s: dict[str, float] | None = None
) -> dict[str, Any]:
    """The JSON written to $MINISERIES_TEST_TIMES: per group (seconds, tests, CPU seconds), the
    slowest tests and those that cost most CPU."""
    groups: dict[str, dict[str, float]] = {}
    for nodeid, seconds in times.items():
        g = groups.setdefault(group_of(nodeid), {"seconds": 0.0, "tests": 0, "cpu_s": 0.0})
        g["seconds"] += seconds
        g["tests"] += 1
        g["cpu_s"] += (cpu_s or {}).get(nodeid, 0.0)
    return {
        "wall_s": round(wall_s, 1),
        "build_wait_s": round(build_wait_s, 1),
        "groups": {
            k: {"seconds": round(v["seconds"], 1), "tests": int(v["tests"]), "cpu_s": round(v["cpu_s"], 1)}
            for k, v in sorted(groups.items())
        },
        "slowest": _top(times),
        "most_cpu": _top(cpu_s or {}),
    }


def lines(data: dict[str, Any]) -> list[str]:
    """The summary as the log lines scripts/ci_phases.py parses."""
    out = [f"phase pytest {data['wall_s']:.1f} tests={sum(g['tests'] for g in data['groups'].values())}"]
    out += [f"phase pytest:{k} {g['seconds']:.1f} tests={g['tests']}" for k, g in data["groups"].items()]
    out.append(f"phase pytest:build-wait {data['build_wait_s']:.1f} waited")
    if data.get("most_cpu"):
        out += [f"phase cpu:{k} {g.get('cpu_s', 0.0):.1f} tests={g['tests']}" for k, g in data["groups"].items()]
    out += [f"slowest {s:.1f} {nodeid}" for nodeid, s in data["slowest"]]
    out += [f"cpu {s:.1f} {nodeid}" for nodeid, s in data.get("most_cpu", [])]
    return out


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Parts of one selection run side by side (scripts/run-tests.sh): one summary, whose wall time
    is the longest part's."""
    groups: dict[str, dict[str, float]] = {}
    slowest: dict[str, float] = {}
    most_cpu: dict[str, float] = {}
    every_cpu: dict[str, float] = {}
    for part in parts:
        for name, g in part.get("groups", {}).items():
            m = groups.setdefault(name, {"seconds": 0.0, "tests": 0, "cpu_s": 0.0})
            m["seconds"] += g["seconds"]
            m["tests"] += g["tests"]
            m["cpu_s"] += g.get("cpu_s", 0.0)
        slowest.update({nodeid: s for nodeid, s in part.get("slowest", [])})
        most_cpu.update({nodeid: s for nodeid, s in part.get("most_cpu", [])})
        every_cpu.update(part.get("cpu", {}))
    return {
        "wall_s": round(max([p.get("wall_s", 0.0) for p in parts], default=0.0), 1),
        "build_wait_s": round(sum(p.get("build_wait_s", 0.0) for p in parts), 1),
        "groups": {
            k: {"seconds": round(v["seconds"], 1), "tests": int(v["tests"]), "cpu_s": round(v["cpu_s"], 1)}
            for k, v in sorted(groups.items())
        },
        "slowest": _top(slowest),
        "most_cpu": _top(most_cpu),
        "cpu": dict(sorted(every_cpu.items())),
    }


def load_history(path: Path | None = None) -> dict[str, float]:
    """The tests' last times (:data:`HISTORY`); none where it is missing or unreadable."""
    try:
        data = json.loads((path or HISTORY).read_text())
        return {str(k): float(v) for k, v in data.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def record_history(times: dict[str, float], path: Path | None = None) -> None:
    """This run's times into the history, each replacing the test's older one. Under a lock and
    written whole (a rename): the two parts of a run end at about the same time."""
    path = path or HISTORY
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = load_history(path) | {k: round(v, 2) for k, v in times.items()}
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(merged, indent=0, sort_keys=True) + "\n")
        os.replace(tmp, path)


def _builds_running(config: pytest.Config) -> bool:
    """Whether the background builds still run, decided once per run: on an xdist worker, as the
    controller decided it (every worker must collect the same order)."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and "miniseries_builds_running" in workerinput:
        return bool(workerinput["miniseries_builds_running"])
    if not _reorder:
        _reorder.append(any(builds.job_status(j) == "running" for j in ("binaries", "images")))
    return _reorder[0]


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    node.workerinput["miniseries_builds_running"] = _builds_running(node.config)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if _builds_running(config):
        items.sort(key=lambda item: 0 if item.nodeid.startswith(builds.NEED_NOTHING_BUILT) else 1)  # stable


def pytest_sessionstart(session: pytest.Session) -> None:
    _started.append(time.monotonic())


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    # the previous test's end is this one's start: one /proc scan a test, not two (~10 ms each under a
    # full run's few hundred processes); nothing of this session runs between the two
    item.stash[_cpu_started] = _cpu_read[-1] if _cpu_read else cpu.cpu_s()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    if call.when == "teardown" and _cpu_started in item.stash:  # setup + call + teardown, with the fixtures'
        _cpu_read[:] = [cpu.cpu_s()]
        outcome.get_result().user_properties.append(("cpu_s", _cpu_read[0] - item.stash[_cpu_started]))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _times[report.nodeid] += report.duration
    for name, value in report.user_properties:
        if name == "cpu_s":
            _cpu[report.nodeid] += float(value)


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: its build wait, to the controller
        workeroutput["miniseries_build_wait_s"] = builds.waited_s()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    _worker_waits.append(float(getattr(node, "workeroutput", {}).get("miniseries_build_wait_s", 0.0)))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    target = os.environ.get("MINISERIES_TEST_TIMES")
    if not target or hasattr(config, "workerinput"):
        return
    wall = time.monotonic() - _started[0] if _started else 0.0
    data = summary(dict(_times), wall, builds.waited_s() + sum(_worker_waits), dict(_cpu))
    data["cpu"] = {k: round(v, 2) for k, v in sorted(_cpu.items())}  # every test's, for a closer look
    Path(target).write_text(json.dumps(data, indent=1) + "\n")
    record_history(dict(_times))
    for line in lines(data):
        terminalreporter.write_line(line)


def main(argv: list[str]) -> int:
    """``python -m tests.harness.durations OUT PART.json...``: merge, write OUT, print the lines."""
    parts = [json.loads(Path(p).read_text()) for p in argv[1:] if Path(p).is_file()]
    data = merge(parts)
    Path(argv[0]).write_text(json.dumps(data, indent=1) + "\n")
    print("\n".join(lines(data)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
