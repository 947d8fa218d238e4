"""Fixtures for the real components (tests/harness/cluster.py): one test cluster and one S3 server per
session, a fresh namespace and bucket per test, a Prometheus per test. Each starts only when a
test asks for it; a component that is not built yet is a skip naming the script that builds it."""

from __future__ import annotations

import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.binaries import MissingBinary
from tests.harness.cluster import Cluster, running_cluster
from tests.harness.node import BuiltImage, built_images
from tests.harness.prometheus import Prometheus, prometheus
from tests.harness.s3 import S3Bucket, S3Server, new_bucket, s3_server

# the one-line skip summary (under CI, only allowed skips); the times per group and the slowest tests
# (issue 30), and the order while `make test`'s background builds run (need-nothing-built groups first);
# the two parts of a MINISERIES_PARALLEL run (the tests beside others over xdist workers, those that need the host alone)
pytest_plugins = ["tests.harness.skips", "tests.harness.durations", "tests.harness.parallel"]


@pytest.fixture(scope="session")
def _sigterm_stops_servers() -> Iterator[None]:
    """A SIGTERM to pytest (a CI time-out) ends the run and still runs the fixtures' teardown: no stray
    servers. pytest.exit, not sys.exit: a SystemExit raised inside a test only fails that test and the
    run goes on (tests/unit/test_sigterm_ends_the_run.py)."""
    previous = signal.signal(signal.SIGTERM, lambda *_: pytest.exit("SIGTERM: the run was stopped", returncode=143))
    yield
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory, _sigterm_stops_servers: None) -> Iterator[Cluster]:
    """kube-apiserver + etcd + controller-manager + scheduler + a kwok 8-GPU node + the PyTorchJob CRD."""
    try:
        with running_cluster(Path(tmp_path_factory.mktemp("cluster"))) as c:
            yield c
    except MissingBinary as e:
        pytest.skip(str(e))


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, enforcing the restricted Pod Security Standard, deleted afterwards
    (without waiting for its finalizers)."""
    base = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:5]}"
    cluster.create_namespace(name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def images() -> dict[str, BuiltImage]:
    """Both images of this checkout (scripts/build-images.sh: built once per content hash, cached)."""
    try:
        return built_images()
    except MissingBinary as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def s3_service(tmp_path_factory: pytest.TempPathFactory, _sigterm_stops_servers: None) -> Iterator[S3Server]:
    try:
        with s3_server(Path(tmp_path_factory.mktemp("s3"))) as server:
            yield server
    except MissingBinary as e:
        pytest.skip(str(e))


@pytest.fixture
def s3(s3_service: S3Server) -> S3Bucket:
    """A fresh bucket on the session's versitygw; `.env` holds what the store reads (AWS_*)."""
    return new_bucket(s3_service, f"t-{uuid.uuid4().hex[:12]}")


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[Prometheus]:
    """The Debian package's Prometheus, scraping every second whatever the test names."""
    with prometheus(tmp_path / "prometheus") as prom:
        yield prom
