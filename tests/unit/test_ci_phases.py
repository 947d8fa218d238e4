"""Issue 30, know where the time goes: scripts/ci_phases.py turns a CI log's `phase` and `slowest`
lines (scripts/phase.sh, tests/harness/durations.py) into the phase table; the durations plugin
groups tests by directory; and a test waits for `make test`'s background build of what it needs
(tests/harness/builds.py), failing with the build's log when that build fails."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness import builds, cpu, durations
from tests.harness.binaries import REPO, MissingBinary
from tests.harness.processes import wait_for

SCRIPT = REPO / "scripts" / "ci_phases.py"

LOG = """\
+ make test
phase venv 212 built
run-tests: build logs and times in /tmp/miniseries-test.x
2026-12-07T10:00:01Z phase system-deps 35 done
build-binaries: building etcd v3.6.5 ...
phase go:etcd 93 built
phase go:kube-apiserver 0 cached
phase go:kueue 183 built
phase go:grammar-modules 4 fetched
phase go:all 280 done
phase image:operator 3 cached
phase image:trainer 360 built
tests/unit/test_fit.py ....                                               [ 10%]
a line that says phase without the rest: phase go:oops
phase pytest 1995.0 tests=814
phase pytest:tests/unit 81.2 tests=412
phase pytest:tests/e2e 1210.5 tests=40
phase pytest:build-wait 12.0 waited
slowest 123.4 tests/e2e/test_kueue.py::test_preempts
slowest 7.5 tests/unit/test_fit.py::test_fits
phase total 2400 wall
"""


def _table(tmp_path: Path, *inputs: tuple[str, str]) -> subprocess.CompletedProcess[str]:
    paths = []
    for name, text in inputs:
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    return subprocess.run([sys.executable, str(SCRIPT), *paths], capture_output=True, text=True, timeout=60)


def _rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in out.splitlines() if line and not line.startswith(" ")}


def test_the_table_has_every_phase_the_build_sums_and_the_slowest_tests(tmp_path: Path) -> None:
    proc = _table(tmp_path, ("ci.log", LOG))
    assert proc.returncode == 0, proc.stderr
    rows = _rows(proc.stdout)
    assert rows["venv"] == ["212.0", "built"] and rows["system-deps"] == ["35.0", "done"]  # timestamped line too
    assert rows["go:etcd"] == ["93.0", "built"] and rows["go:kube-apiserver"] == ["0.0", "cached"]
    assert rows["image:trainer"] == ["360.0", "built"]
    assert rows["pytest:tests/e2e"] == ["1210.5", "tests=40"] and rows["pytest:build-wait"] == ["12.0", "waited"]
    assert rows["total"] == ["2400.0", "wall"] and proc.stdout.rstrip().splitlines()[-1].split() == [
        "7.5",
        "tests/unit/test_fit.py::test_fits",
    ]
    assert "go:oops" not in proc.stdout  # a line without seconds and state is not a phase
    sums = [line for line in proc.stdout.splitlines() if line.startswith("(")]
    # built and fetched Go phases, not the cached one nor go:all; the one image built
    assert sums == [f"{'(go: built, sum)':<20}     280.0  3 of 4", f"{'(images: built, sum)':<20}     360.0  1 of 2"]
    order = [line.split()[0] for line in proc.stdout.splitlines()[2:] if line.strip()]
    assert order.index("venv") < order.index("go:etcd") < order.index("image:trainer") < order.index("pytest")
    assert order.index("pytest:build-wait") < order.index("total")


def test_the_json_reads_as_the_same_rows_and_a_later_input_wins(tmp_path: Path) -> None:
    data = durations.summary({"tests/unit/test_a.py::t": 1.25, "tests/unit/test_b.py::t": 2.0,
                              "tests/e2e/test_c.py::t[x]": 40.0}, wall_s=50.0, build_wait_s=3.0)  # fmt: skip
    proc = _table(tmp_path, ("ci.log", LOG), ("times.json", json.dumps(data)))
    rows = _rows(proc.stdout)
    assert rows["pytest:tests/unit"] == ["3.2", "tests=2"] and rows["pytest:tests/e2e"] == ["40.0", "tests=1"]
    assert rows["pytest"] == ["50.0", "tests=3"] and rows["pytest:build-wait"] == ["3.0", "waited"]
    # the plugin's own log lines read back as the same table
    again = _table(tmp_path, ("plugin.log", "\n".join(durations.lines(data))))
    assert _rows(again.stdout)["pytest:tests/unit"] == ["3.2", "tests=2"]


def test_cpu_seconds_read_back_as_rows_and_a_ranked_list(tmp_path: Path) -> None:
    times = {"tests/unit/test_a.py::t": 1.0, "tests/e2e/test_b.py::t": 30.0, "tests/e2e/test_c.py::t": 20.0}
    cpu_s = {"tests/unit/test_a.py::t": 0.5, "tests/e2e/test_b.py::t": 4.0, "tests/e2e/test_c.py::t": 19.0}
    data = durations.summary(times, wall_s=40.0, build_wait_s=0.0, cpu_s=cpu_s)
    merged = durations.merge(
        [data, durations.summary({"tests/unit/test_d.py::t": 2.0}, 2.0, 0.0, {"tests/unit/test_d.py::t": 1.5})]
    )
    assert merged["groups"]["tests/unit"]["cpu_s"] == 2.0 and merged["groups"]["tests/e2e"]["cpu_s"] == 23.0
    for source in (("times.json", json.dumps(merged)), ("plugin.log", "\n".join(durations.lines(merged)))):
        out = _table(tmp_path, source).stdout
        assert _rows(out)["cpu:tests/e2e"] == ["23.0", "tests=2"]
        ranked = out.split("most CPU")[1].splitlines()[1:]
        # the CPU ranking is its own: the slowest test (b, waiting) is not the costliest (c)
        assert [line.split()[1] for line in ranked[:2]] == ["tests/e2e/test_c.py::t", "tests/e2e/test_b.py::t"]


def test_a_tests_cpu_counts_its_children_and_not_other_processes(tmp_path: Path) -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
    before = cpu.tree_cpu_s()
    subprocess.run([sys.executable, "-c", burn], check=True)  # a child, reaped: its parent's cutime
    with subprocess.Popen(
        [sys.executable, "-c", burn + "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    ) as child:
        wait_for("the child's burn", lambda: cpu.tree_cpu_s(child.pid) >= 0.6, 60)  # counted while it runs
        during = cpu.tree_cpu_s()
        child.communicate(b"")
    assert during - before >= 1.2
    # a process that left the tree (started by a shell that exits at once, as containerd's shims leave
    # theirs) is not counted, however much it burns. The tree measured is a waiting shell's, not this
    # worker's: a cluster another test left running below the worker spends CPU meanwhile (0.41 s once)
    # It is measured alive, once it has burned: a dead one's CPU is its reaper's anyway
    done = tmp_path / "burned"
    orphan = f"{burn}import os\nopen({str(done)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)\n"
    leaves = shlex.quote(f"{shlex.quote(sys.executable)} -c {shlex.quote(orphan)} &")
    with subprocess.Popen(["sh", "-c", f"sh -c {leaves}; read line"], stdin=subprocess.PIPE) as shell:
        pid = int(wait_for("the orphan's burn", lambda: done.exists() and done.read_text(), 60))
        try:
            assert cpu.tree_cpu_s(pid) >= 0.6  # it burned, and lives
            assert cpu.tree_cpu_s(shell.pid) < 0.3
        finally:
            os.kill(pid, signal.SIGKILL)
            shell.communicate(b"\n")
    assert cpu.tree_cpu_s(2**22 + 7) == 0.0  # no such process: nothing


def test_a_counted_cgroup_adds_the_cpu_spent_in_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real node's containers are not the test's descendants: their cgroup's counter is added. The
    hierarchy's root holds every process, this one's burn included."""
    before = cpu.cgroup_cpu_s("")
    if before == 0.0:
        pytest.skip("no cgroup CPU counter readable here")  # not on the allow-list: fails under CI
    t = time.process_time()
    while time.process_time() - t < 0.3:
        pass
    assert cpu.cgroup_cpu_s("") - before >= 0.3
    assert cpu.cgroup_cpu_s("no-such-cgroup-here") == 0.0
    # counted from when it is registered: not what it spent before (a node of an earlier session)
    monkeypatch.setattr(cpu, "_cgroups", {})
    start = cpu.cpu_s()
    cpu.count_cgroup("")
    assert cpu.cpu_s() - start < 60.0


def test_no_phase_lines_is_an_error_not_an_empty_table(tmp_path: Path) -> None:
    proc = _table(tmp_path, ("empty.log", "nothing here\n"))
    assert proc.returncode == 1 and "no phase lines" in proc.stderr


def test_groups_are_directories_under_tests() -> None:
    assert durations.group_of("tests/unit/test_fit.py::test_x[a/b]") == "tests/unit"
    assert durations.group_of("tests/e2e/sub/test_k.py::C::t") == "tests/e2e"
    assert durations.group_of("tests/test_top.py::t") == "tests"
    data = durations.summary({f"tests/unit/t{i}.py::t": float(i) for i in range(20)}, 1.0, 0.0)
    assert [s for _, s in data["slowest"]] == [float(i) for i in range(19, 4, -1)]


# ---------------------------------------------------------------- waiting for a background build


@pytest.fixture(autouse=True)
def _own_wait_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests' waits are not the session's time waiting for builds (the phase table's)."""
    monkeypatch.setattr(builds, "_waited", [])


def _job(state: Path, name: str, pid: int, rc: int | None = None, log: str = "") -> None:
    (state / f"{name}.pid").write_text(str(pid))
    (state / f"{name}.log").write_text(log)
    (state / f"{name}.rc").unlink(missing_ok=True)
    if rc is not None:
        (state / f"{name}.rc").write_text(f"{rc}\n")


def _lookup(path: Path):  # type: ignore[no-untyped-def]
    def lookup() -> Path:
        if not path.is_file():
            raise MissingBinary(f"{path} missing: run scripts/build-binaries.sh")
        return path

    return lookup


def test_a_lookup_waits_while_the_build_runs_and_returns_when_the_binary_lands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINISERIES_BUILDS", str(tmp_path))
    monkeypatch.setattr(builds, "POLL_S", 0.05)
    binary = tmp_path / "etcd"
    # a real background "build": a process that writes the binary a moment later
    proc = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(0.5); open({str(binary)!r}, 'w')"])
    try:
        _job(tmp_path, "binaries", proc.pid)
        assert builds.job_status("binaries") == "running"
        assert builds.built(_lookup(binary), what="etcd", wait_s=30) == binary
    finally:
        proc.wait(timeout=30)


def test_a_failed_build_fails_the_test_with_its_log_and_a_finished_one_leaves_the_skip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINISERIES_BUILDS", str(tmp_path))
    missing = tmp_path / "kueue"
    _job(tmp_path, "binaries", os.getpid(), rc=2, log="go: downloading sigs.k8s.io/kueue\nerror: disk full\n")
    with pytest.raises(builds.BuildFailed, match=r"(?s)'binaries' failed \(exit 2\).*error: disk full"):
        builds.built(_lookup(missing), what="kueue")
    _job(tmp_path, "binaries", os.getpid(), rc=0)
    with pytest.raises(MissingBinary, match=r"run scripts/build-binaries\.sh"):
        builds.built(_lookup(missing), what="kueue")
    _job(tmp_path, "binaries", 2**22 + 12345)  # no rc and its process gone: killed
    with pytest.raises(builds.BuildFailed, match="ended without an exit status"):
        builds.built(_lookup(missing), what="kueue")


def test_a_build_that_takes_too_long_fails_the_wait_naming_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MINISERIES_BUILDS", str(tmp_path))
    monkeypatch.setattr(builds, "POLL_S", 0.05)
    _job(tmp_path, "binaries", os.getpid(), log="building kube-apiserver v1.37.2 ...\n")
    with pytest.raises(
        builds.BuildFailed, match=r"(?s)kube-apiserver still not built after .*binaries.log.*building kube"
    ):
        builds.built(_lookup(tmp_path / "kube-apiserver"), what="kube-apiserver", wait_s=0.3)


def test_without_background_builds_nothing_waits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MINISERIES_BUILDS", raising=False)
    assert builds.job_status("binaries") == "none"
    with pytest.raises(MissingBinary):
        builds.built(_lookup(tmp_path / "helm"), what="helm", wait_s=1000)
