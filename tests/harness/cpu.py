"""CPU seconds a test costs: its pytest process and every process below it (issue 30).

The suite is CPU-bound on CI's 2 cores (a warm run used ~3,500 CPU s in 40 minutes), so wall time
alone misleads: under contention a cheap test that waits looks as slow as one that computes. A
test's CPU is read from /proc before and after it: the utime + stime of the pytest process and of
every living descendant (the cluster, the operator, trainers), plus cutime + cstime (the CPU of the
children they have reaped). A process that leaves the tree (a daemon that double-forks, such as
containerd's shims and the containers below them) is not in it: the real node registers the cgroup
its containers run in (:func:`count_cgroup`), whose CPU counter is added, so a container's training
is its test's too."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: str) -> tuple[int, int] | None:
    """(parent pid, CPU ticks of the process and its reaped children); None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # fields[0] is stat's 3rd field (state): ppid is the 4th, utime..cstime the 14th..17th
    return int(fields[1]), sum(int(x) for x in fields[11:15])


#: cgroups whose CPU is counted beside the process tree (:func:`count_cgroup`), with their counter then
_cgroups: dict[str, float] = {}


def count_cgroup(name: str) -> None:
    """Count the CPU of cgroup ``name`` (below the hierarchy's root: ``k8s.io``, where containerd puts
    the real node's containers) in every test from now on, with the cgroups below it, those already
    removed included: what it spends from now on, not what it spent before (other sessions' nodes)."""
    if name not in _cgroups:
        _cgroups[name] = cgroup_cpu_s(name)


def cgroup_cpu_s(name: str) -> float:
    """CPU seconds of cgroup ``name`` so far, under cgroup v1 (cpuacct) or v2; 0 where there is none."""
    try:
        v1 = Path("/sys/fs/cgroup/cpuacct") / name / "cpuacct.usage"
        if v1.exists():  # nanoseconds
            return int(v1.read_text()) / 1e9
        for line in (Path("/sys/fs/cgroup") / name / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec "):  # v2
                return int(line.split()[1]) / 1e6
    except (OSError, ValueError):
        pass
    return 0.0


def cpu_s() -> float:
    """This process's tree (:func:`tree_cpu_s`) and the counted cgroups: what a test's delta is taken of."""
    return tree_cpu_s() + sum(cgroup_cpu_s(name) - base for name, base in _cgroups.items())


def tree_cpu_s(root: int | None = None) -> float:
    """CPU seconds used so far by `root` (this process by default) and all its living descendants."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = defaultdict(list)
    ticks: dict[int, int] = {}
    try:
        pids = [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return 0.0  # no /proc (not Linux): no figure rather than a wrong one
    for pid in pids:
        if (st := _stat(pid)) is not None:
            children[st[0]].append(int(pid))
            ticks[int(pid)] = st[1]
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo += children.get(pid, [])
    return total / _TICK
