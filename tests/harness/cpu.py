"""CPU seconds a test costs: its pytest process and every process below it (issue 30).

The suite is CPU-bound on CI's 2 cores (a warm run used ~3,500 CPU s in 40 minutes), so wall time
alone misleads: under contention a cheap test that waits looks as slow as one that computes. A
test's CPU is read from /proc before and after it: the utime + stime of the pytest process and of
every living descendant (the cluster, the operator, trainers), plus cutime + cstime (the CPU of the
children they have reaped). A process that leaves the tree (a daemon that double-forks, such as
containerd's shims and the containers below them) is not counted: the real node's numbers are low
bounds."""

from __future__ import annotations

import os
from collections import defaultdict

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
