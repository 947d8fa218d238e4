"""MINISERIES_PARALLEL's pure parts (issue 30): port slots no two processes share, the units of work,
the split into the parts beside each other and alone, and the merged phase table."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

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


def test_e2e_files_are_one_unit_and_the_rest_one_unit_per_file() -> None:
    assert parallel.unit_of("tests/e2e/test_e2e.py::test_x") == parallel.unit_of("tests/e2e/test_kueue.py::test_y")
    assert parallel.unit_of("tests/integration/test_a.py::test_x") == "tests/integration/test_a.py"
    assert parallel.unit_of("tests/integration/test_a.py::T::test_x") == "tests/integration/test_a.py"


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
    assert merged["wall_s"] == 150.0 and merged["build_wait_s"] == 3.0
    assert merged["groups"] == {
        "tests/e2e": {"seconds": 195.0, "tests": 15},
        "tests/unit": {"seconds": 40.0, "tests": 500},
    }
    assert merged["slowest"] == [["tests/e2e/a.py::t", 60.0], ["tests/e2e/test_containers.py::t", 45.0]]
    assert durations.lines(merged)[0] == "phase pytest 150.0 tests=515"
