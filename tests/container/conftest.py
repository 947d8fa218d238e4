"""Fixtures for tests that run real containers: the two images of this checkout (built by
scripts/build-images.sh, or found in its cache) and a real node (tests/harness/node.py) registered to the
session's test cluster, tainted so that only the pods of these tests land on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.binaries import MissingBinary
from tests.harness.cluster import Cluster
from tests.harness.node import BuiltImage, Node, real_node, say


@pytest.fixture(scope="module")
def node(
    cluster: Cluster,
    images: dict[str, BuiltImage],
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Node]:
    """The real node, with both images in its containerd: imported into the kept store
    (tests/harness/node.py NODE_STORE, ~14 GB) only when not there already. One module at a time,
    so tests/e2e/test_containers.py's node never runs beside it."""
    try:
        with real_node(cluster, Path(tmp_path_factory.mktemp("node"))) as n:
            for image in images.values():
                n.import_image(image.archive)
            say(request.config, n.phase_line())
            yield n
    except MissingBinary as e:
        pytest.skip(str(e))
