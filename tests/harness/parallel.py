"""The suite as groups side by side (a pytest plugin, loaded by tests/conftest.py; issue 30).

``scripts/run-tests.sh`` (``make test``, ``.ci/run``) runs one selection in two parts at the same
time, which together are exactly the tests a plain run selects (``MINISERIES_PARALLEL=1``: one plain
pytest, as before):

- ``--miniseries-part=shared``, over N pytest-xdist workers (``-n N --dist loadfile``): every test
  that does not need the real node, unit and trainer tests included. Each worker is its own pytest
  session, so each starts its own cluster, S3 server, Prometheus... (the session fixtures) in its
  own temp directory (xdist's ``popen-gw<i>`` basetemp), with ports from its own slot
  (tests/harness/ports.py) and its own kubectl discovery cache (``KUBECACHEDIR``). A file is one
  unit of work, except ``tests/e2e``: on fewer than :data:`SPLIT_E2E_FROM_CORES` cores all its files
  are one unit, else those that share a session cluster (:data:`SHARED_CLUSTER`: the real-path one,
  the Kueue one) are, so that each cluster starts once. On CI's 2 cores the split ran slower (23 min
  2 s against 18 min 34 s, 2026-12-07): every e2e unit on another worker keeps its own clusters and
  trainers busy at once, and the CPU they burned together rose from 1,897 to 2,404 s. Their node
  agents run pods as processes on this host's network; a pod's declared metrics port (the operator's
  9400) is moved to a free one there (tests/harness/node_agent.py), as a pod's own network namespace
  would keep it apart on a kubelet, so units on different workers do not collide;
- ``--miniseries-part=alone``, in one more process beside them: what the host has only one of, the
  real kubelet + containerd node (marker ``container``, fixture ``node``; its iptables rules, its
  ~12 GB of disk). The node sits in a network namespace of its own (tests/harness/node.py), so it
  shares no port with the workers' clusters.

Which unit a free worker gets (:func:`next_unit`): while the Go builds still run (`make test`'s
background job, tests/harness/builds.py), one that needs nothing built; otherwise the one expected
to take longest, from each test's time in the last runs (:mod:`tests.harness.durations`' history)
or, for a test never timed here, its group's typical time, so that the run does not end waiting
for one long file that started last.

Without ``--miniseries-part`` (a plain ``pytest``), nothing changes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import pytest

from tests.harness import builds, durations

#: from this many cores on, the tests/e2e files are split into the units below (see above)
SPLIT_E2E_FROM_CORES = 4
#: the session cluster (tests/e2e/conftest.py's fixture) each tests/e2e file shares with others: one
#: unit of work per cluster, so that each starts once (tests/unit/test_parallel_parts.py checks this
#: against the files' own fixtures)
SHARED_CLUSTER = {
    "tests/e2e/test_e2e.py": "real_cluster",
    "tests/e2e/test_multinode.py": "real_cluster",
    "tests/e2e/test_preemption.py": "real_cluster",
    "tests/e2e/test_pytorchjob.py": "real_cluster",
    "tests/e2e/test_real_trainer.py": "real_cluster",
    "tests/e2e/test_kueue.py": "kueue_shared",
    "tests/e2e/test_kueue_operator.py": "kueue_shared",
    "tests/e2e/test_kueue_real_trainer.py": "kueue_shared",
}
#: seconds a test takes when the history has none for it: its group's seconds / tests in the warm CI
#: run of 2026-12-07 (bench/RESULTS.md), enough to start the long groups' units first on a cold machine
TYPICAL_S = {
    "tests/container": 58.0,
    "tests/e2e": 21.0,
    "tests/integration": 3.8,
    "tests/trainer": 3.4,
    "tests/unit": 0.2,
}
_kube_cache: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--miniseries-part",
        choices=("shared", "alone"),
        default=None,
        help="only the tests that may run beside other test processes (shared) or only those that need "
        "the host alone (alone); scripts/run-tests.sh runs both side by side",
    )


def needs_the_host(item: pytest.Item) -> bool:
    """The real node: the kubelet's fixed ports, iptables, containerd, its disk (tests/harness/node.py)."""
    return item.get_closest_marker("container") is not None or "node" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    part = config.getoption("miniseries_part")
    if part is None:
        return
    keep = [i for i in items if needs_the_host(i) == (part == "alone")]
    dropped = [i for i in items if needs_the_host(i) != (part == "alone")]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


def pytest_configure(config: pytest.Config) -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and not _kube_cache:
        # kubectl caches API discovery under ~/.kube/cache by host:port: a worker's own directory,
        # so no worker reads what a cluster of another worker (or an earlier run) on that port served
        _kube_cache.append(tempfile.mkdtemp(prefix=f"miniseries-kubecache-{worker}-"))
        os.environ["KUBECACHEDIR"] = _kube_cache[0]


def pytest_unconfigure(config: pytest.Config) -> None:
    for d in _kube_cache:
        shutil.rmtree(d, ignore_errors=True)


def unit_of(nodeid: str, cores: int | None = None) -> str:
    """The unit of work of a test: its file; for tests/e2e on a small machine (``cores``, this one's by
    default) all of it, else the session cluster its file shares (:data:`SHARED_CLUSTER`)."""
    path = nodeid.split("::", 1)[0]
    if path.startswith("tests/e2e/") and (cores or os.cpu_count() or 1) < SPLIT_E2E_FROM_CORES:
        return "tests/e2e/"
    return f"tests/e2e[{SHARED_CLUSTER[path]}]" if path in SHARED_CLUSTER else path


def expected_s(nodeid: str, history: dict[str, float]) -> float:
    """How long a test is expected to take: its time in the last runs, else its group's typical time."""
    if nodeid in history:
        return history[nodeid]
    return next((s for prefix, s in TYPICAL_S.items() if nodeid.startswith(prefix)), 1.0)


def next_unit(units: dict[str, list[str]], history: dict[str, float], building: bool) -> str:
    """The unit a free worker gets (``units``: unit -> its tests not yet handed out): while the Go
    builds run, one that needs nothing built if any is left; the longest expected first, so that the
    short ones fill the end (ties: the first listed)."""
    names = list(units)
    if building:
        names = [u for u in names if u.startswith(builds.NEED_NOTHING_BUILT)] or names
    return max(names, key=lambda u: sum(expected_s(n, history) for n in units[u]))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("miniseries_part") != "shared" or config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling  # only where xdist runs this hook

    history = durations.load_history()

    class LongestFirst(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

        def _assign_work_unit(self, node: Any) -> None:
            # xdist hands out self.workqueue's first unit: put the one chosen now there
            units = {u: [n for n, done in tests.items() if not done] for u, tests in self.workqueue.items()}
            chosen = next_unit(units, history, builds.job_status("binaries") == "running")
            self.workqueue.move_to_end(chosen, last=False)
            super()._assign_work_unit(node)

        def _reschedule(self, node: Any) -> None:
            # xdist's own, but a worker gets its next unit only when one test is left (xdist: two), the
            # least it needs to go on (it starts a test once it knows the next): a unit handed out early
            # waits behind that worker's last tests while another worker may already be idle
            if node.shutting_down:
                return
            if not self.workqueue:
                node.shutdown()
                return
            if self._pending_of(self.assigned_work[node]) <= 1:
                self._assign_work_unit(node)

    return LongestFirst(config, log)
