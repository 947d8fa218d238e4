"""The parallel run's pure parts (issue 30): port slots no two processes share, the units of work and
the order xdist hands them out in, the split into the parts beside each other and alone, the
tests' time history, and the merged phase table."""

from __future__ import annotations

import ast
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.harness import durations, parallel, ports
from tests.harness.binaries import REPO

HOLD_A_SLOT = """
import sys, time
from pathlib import Path
from tests.harness import ports
slot = ports.claim(Path(sys.argv[1]))
print(slot.index, flush=True)
time.sleep(60)
"""


def test_two_processes_never_hold_the_same_port_slot(tmp_path: Path) -> None:
    other = subprocess.Popen(
        [sys.executable, "-c", HOLD_A_SLOT, str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert other.stdout is not None
        theirs = int(other.stdout.readline())
        mine = ports.claim(tmp_path)
        assert (theirs, mine.index) == (0, 1)
        taken = {mine.take() for _ in range(50)}
        their_ports = range(ports.FIRST + theirs * ports.SLOT_SIZE, ports.FIRST + (theirs + 1) * ports.SLOT_SIZE)
        assert len(taken) == 50 and not taken & set(their_ports)
        assert all(mine.first <= p < mine.first + ports.SLOT_SIZE < ports.END <= 32768 for p in taken)
    finally:
        other.kill()
        other.wait()
    again = ports.claim(tmp_path)  # the other process is gone: its slot is free again
    assert again.index == 0


def test_a_slot_passes_over_a_port_in_use(tmp_path: Path) -> None:
    slot = ports.claim(tmp_path)
    with socket.socket() as busy:
        port = slot.take()
        busy.bind(("127.0.0.1", port))
        busy.listen()
        slot._next = port - slot.first  # the next one handed out would be the busy one
        after = port + 1 if port + 1 < slot.first + ports.SLOT_SIZE else slot.first
        assert slot.take() == after


def test_e2e_files_sharing_a_session_cluster_are_one_unit_and_the_rest_one_unit_per_file() -> None:
    def unit(nodeid: str) -> str:
        return parallel.unit_of(nodeid, cores=8)

    assert unit("tests/e2e/test_e2e.py::test_x") == unit("tests/e2e/test_real_trainer.py::t")
    assert unit("tests/e2e/test_kueue.py::test_y") == unit("tests/e2e/test_kueue_operator.py::t")
    assert unit("tests/e2e/test_e2e.py::test_x") != unit("tests/e2e/test_kueue.py::test_y")
    assert unit("tests/e2e/test_trainjob.py::t") == "tests/e2e/test_trainjob.py"
    assert unit("tests/integration/test_a.py::test_x") == "tests/integration/test_a.py"
    assert unit("tests/integration/test_a.py::T::test_x") == "tests/integration/test_a.py"
    # on CI's 2 cores all of tests/e2e is one unit; the rest as anywhere
    two = {parallel.unit_of(f"tests/e2e/{f}::t", cores=2) for f in ("test_e2e.py", "test_kueue.py", "test_trainjob.py")}
    assert two == {"tests/e2e/"}
    assert parallel.unit_of("tests/integration/test_a.py::test_x", cores=2) == "tests/integration/test_a.py"


@pytest.fixture
def split_e2e(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduling tests below as on a machine that splits tests/e2e (whatever this one's cores)."""
    monkeypatch.setattr(parallel, "SPLIT_E2E_FROM_CORES", 1)


def test_the_shared_cluster_table_is_what_the_e2e_files_use() -> None:
    """SHARED_CLUSTER against the files themselves: a file that takes a session cluster fixture (in a
    test's or a fixture's parameters) is listed with it, and no other file is listed; an e2e file that
    starts using the Kueue cluster without being listed would start a second one on another worker."""
    sessions = {"real_cluster", "kueue_shared"}
    used: dict[str, str] = {}
    for path in sorted((REPO / "tests" / "e2e").glob("test_*.py")):
        tree = ast.parse(path.read_text())
        params = {a.arg for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) for a in f.args.args}
        found = params & sessions
        assert len(found) <= 1, (path.name, found)
        if found:
            used[f"tests/e2e/{path.name}"] = found.pop()
    assert used == parallel.SHARED_CLUSTER


class _Item:
    def __init__(self, markers: tuple[str, ...], fixtures: tuple[str, ...]) -> None:
        self.markers, self.fixturenames = markers, fixtures

    def get_closest_marker(self, name: str) -> object | None:
        return name if name in self.markers else None


def test_the_real_node_tests_are_the_part_that_runs_alone() -> None:
    assert parallel.needs_the_host(_Item(("container", "cluster"), ("cluster",)))  # type: ignore[arg-type]
    assert parallel.needs_the_host(_Item((), ("node", "images")))  # type: ignore[arg-type]
    assert not parallel.needs_the_host(_Item(("cluster", "e2e"), ("real_cluster", "tiny")))  # type: ignore[arg-type]


def test_the_parts_merge_into_one_table() -> None:
    shared = {"wall_s": 100.0, "build_wait_s": 3.0, "groups": {"tests/e2e": {"seconds": 150.0, "tests": 10},
              "tests/unit": {"seconds": 40.0, "tests": 500}}, "slowest": [["tests/e2e/a.py::t", 60.0]]}  # fmt: skip
    alone = {"wall_s": 50.0, "build_wait_s": 0.0, "groups": {"tests/e2e": {"seconds": 45.0, "tests": 5}},
             "slowest": [["tests/e2e/test_containers.py::t", 45.0]]}  # fmt: skip
    merged = durations.merge([shared, alone])
    assert merged["wall_s"] == 100.0 and merged["build_wait_s"] == 3.0  # side by side: the longer part
    assert merged["groups"] == {
        "tests/e2e": {"seconds": 195.0, "tests": 15, "cpu_s": 0.0},  # parts from before CPU was kept
        "tests/unit": {"seconds": 40.0, "tests": 500, "cpu_s": 0.0},
    }
    assert merged["slowest"] == [["tests/e2e/a.py::t", 60.0], ["tests/e2e/test_containers.py::t", 45.0]]
    assert durations.lines(merged)[0] == "phase pytest 100.0 tests=515"


# ---------------------------------------------------------------- the order of the units

HISTORY = {
    "tests/e2e/test_e2e.py::test_tiny": 300.0,
    "tests/e2e/test_real_trainer.py::test_kill": 100.0,
    "tests/e2e/test_kueue.py::test_queue": 200.0,
    "tests/integration/test_first_command.py::test_make_local": 73.0,
    "tests/integration/test_small.py::test_a": 2.0,
    "tests/trainer/test_gpu_check.py::test_smoke": 90.0,
}
COLLECTION = [
    "tests/e2e/test_e2e.py::test_tiny",
    "tests/e2e/test_real_trainer.py::test_kill",
    "tests/e2e/test_kueue.py::test_queue",
    "tests/integration/test_first_command.py::test_make_local",
    "tests/integration/test_never_timed.py::test_a",
    "tests/integration/test_small.py::test_a",
    "tests/integration/test_small.py::test_b",
    "tests/trainer/test_gpu_check.py::test_smoke",
    *[f"tests/unit/test_many.py::test_{i}" for i in range(30)],
]


def _units(nodeids: list[str]) -> dict[str, list[str]]:
    units: dict[str, list[str]] = {}
    for n in nodeids:
        units.setdefault(parallel.unit_of(n), []).append(n)
    return units


def test_the_longest_unit_goes_first_by_the_history_else_by_its_groups_typical_time(split_e2e: None) -> None:
    units = _units(COLLECTION)
    order = []
    while units:
        order.append(parallel.next_unit(units, HISTORY, building=False))
        del units[order[-1]]
    assert order == [
        "tests/e2e[real_cluster]",  # 400 s in the history: two files, one unit
        "tests/e2e[kueue_shared]",  # 200 s
        "tests/trainer/test_gpu_check.py",  # 90 s
        "tests/integration/test_first_command.py",  # 73 s
        "tests/unit/test_many.py",  # 30 tests never timed here, 0.2 s each
        "tests/integration/test_small.py",  # 2 s timed + one never timed, 3.8 s
        "tests/integration/test_never_timed.py",  # 3.8 s
    ]


def test_while_the_go_builds_run_the_units_that_need_nothing_built_go_first(split_e2e: None) -> None:
    units = _units(COLLECTION)
    assert parallel.next_unit(units, HISTORY, building=True) == "tests/trainer/test_gpu_check.py"
    del units["tests/trainer/test_gpu_check.py"], units["tests/unit/test_many.py"]
    assert parallel.next_unit(units, HISTORY, building=True) == "tests/e2e[real_cluster]"  # none left: the longest


class _Node:
    """What xdist's scheduler calls on a worker."""

    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.shutting_down = False
        self.sent: list[int] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent += indices

    def shutdown(self) -> None:
        self.shutting_down = True


def _scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    history = tmp_path / "history.json"
    history.write_text(json.dumps(HISTORY))
    monkeypatch.setattr(durations, "HISTORY", history)
    opts = {"miniseries_part": "shared", "dist": "loadfile", "tx": ["2*popen"]}
    config = SimpleNamespace(getoption=opts.__getitem__, getvalue=opts.__getitem__,
                             option=SimpleNamespace(loadscopereorder=True))  # fmt: skip
    return parallel.pytest_xdist_make_scheduler(config, None)  # type: ignore[arg-type]


def _scheduled_over_two_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, _Node, _Node]:
    """The hook's scheduler with two workers that collected COLLECTION, after its first hand-out."""
    sched = _scheduler(tmp_path, monkeypatch)
    a, b = _Node("gw0"), _Node("gw1")
    for node in (a, b):
        sched.add_node(node)
        sched.add_node_collection(node, COLLECTION)
    sched.schedule()
    return sched, a, b


def test_xdist_hands_the_workers_the_longest_units_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, split_e2e: None
) -> None:
    """The real xdist scheduler, with the hook's order: not xdist's own (the most tests first)."""
    monkeypatch.delenv("MINISERIES_BUILDS", raising=False)
    sched, a, b = _scheduled_over_two_workers(tmp_path, monkeypatch)
    assert [COLLECTION[i] for i in a.sent] == COLLECTION[:2]  # the real-path cluster's unit, nothing more yet
    # gw1's unit is one test: it starts that once it knows its next one, the next longest
    assert [COLLECTION[i] for i in b.sent] == [
        "tests/e2e/test_kueue.py::test_queue",
        "tests/trainer/test_gpu_check.py::test_smoke",
    ]
    sched.mark_test_complete(a, a.sent[0])  # gw0 on its last test: now it gets the longest left
    assert [COLLECTION[i] for i in a.sent[2:]] == ["tests/integration/test_first_command.py::test_make_local"]


def test_xdist_hands_out_what_needs_nothing_built_while_the_go_builds_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "builds"
    state.mkdir()
    (state / "binaries.pid").write_text(str(os.getpid()))  # alive, no exit status yet: running
    monkeypatch.setenv("MINISERIES_BUILDS", str(state))
    _, a, b = _scheduled_over_two_workers(tmp_path, monkeypatch)
    assert {COLLECTION[a.sent[0]], COLLECTION[b.sent[0]]} == {
        "tests/trainer/test_gpu_check.py::test_smoke",
        "tests/unit/test_many.py::test_0",
    }


def test_the_history_keeps_each_tests_newest_time(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "test-times.json"
    assert durations.load_history(path) == {}
    durations.record_history({"a::t": 1.234, "b::t": 5.0}, path)
    durations.record_history({"a::t": 2.0, "c::t": 0.5}, path)  # a later run of part of the suite
    assert durations.load_history(path) == {"a::t": 2.0, "b::t": 5.0, "c::t": 0.5}
    path.write_text("{not json")
    assert durations.load_history(path) == {}  # an unreadable history orders by the typical times
