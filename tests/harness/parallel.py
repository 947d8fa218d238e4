"""The suite as groups side by side (a pytest plugin, loaded by tests/conftest.py; issue 30, opt-in).

``MINISERIES_PARALLEL=N scripts/run-tests.sh`` (or ``make test MINISERIES_PARALLEL=N``) runs one
selection in two parts, which together are exactly the tests a plain run selects:

- ``--miniseries-part=shared``, over N pytest-xdist workers (``-n N --dist loadfile``): every test
  that brings its own components. Each worker is its own pytest session, so each starts its own
  cluster, S3 server, Prometheus... (the session fixtures) in its own temp directory (xdist's
  ``popen-gw<i>`` basetemp), with ports from its own slot (tests/harness/ports.py) and its own kubectl
  discovery cache (``KUBECACHEDIR``). A file is one unit of work, except that every ``tests/e2e``
  file is in one unit (:data:`HOST_NETWORK`): the node agent runs their pods as processes on this
  host's network, where every operator-made trainer binds the same metrics port (9400), so two of
  them side by side would collide;
- ``--miniseries-part=alone``, in one process after: what the host has only one of, the real
  kubelet + containerd node (marker ``container``, fixture ``node``; it takes the kubelet's fixed
  ports, iptables rules and ~12 GB of disk).

Without ``--miniseries-part`` (a plain ``pytest``, ``make test``), nothing changes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

import pytest

#: the paths whose files form one unit of work (one worker, one after the other): see above
HOST_NETWORK = ("tests/e2e/",)
_kube_cache: list[str] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--miniseries-part",
        choices=("shared", "alone"),
        default=None,
        help="only the tests that may run beside other test processes (shared) or only those that need "
        "the host alone (alone); scripts/run-tests.sh with MINISERIES_PARALLEL=N runs both",
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


def unit_of(nodeid: str) -> str:
    """The unit of work of a test: its file, or one unit for all of :data:`HOST_NETWORK`."""
    path = nodeid.split("::", 1)[0]
    return next((prefix for prefix in HOST_NETWORK if path.startswith(prefix)), path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("miniseries_part") != "shared" or config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling  # only where xdist runs this hook

    class FileOrHostNetwork(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return FileOrHostNetwork(config, log)
