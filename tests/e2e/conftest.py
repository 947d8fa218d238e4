"""One real-path cluster per test session (tests/e2e/control_plane.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.control_plane import Cluster, MissingBinary, real_path_cluster


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = Path(tmp_path_factory.mktemp("real-path"))
    try:
        with real_path_cluster(workdir) as cluster:
            yield cluster
    except MissingBinary as e:
        pytest.skip(str(e))
