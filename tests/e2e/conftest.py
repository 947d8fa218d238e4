"""One real-path cluster per test session (tests/harness/training_operator.py), and the tiny sweep's data."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from miniseries.api.sweepfile import load_sweep
from miniseries.local.runner import Display, LocalSweep, prepare_data, train_tokenizer
from tests.harness.binaries import REPO, MissingBinary
from tests.harness.cluster import Cluster
from tests.harness.training_operator import real_path_cluster


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> LocalSweep:
    """examples/tiny.yaml at depth 2, its shards and tokenizer prepared in a file:// store."""
    root = Path(tmp_path_factory.mktemp("tiny"))
    doc = yaml.safe_load((REPO / "examples" / "tiny.yaml").read_text())
    doc["metadata"]["name"] = "e2e-tiny"
    doc["spec"]["depths"] = [2]
    doc["spec"]["data"]["tokenizerTrainChars"] = 2_000_000
    (root / "tiny.yaml").write_text(yaml.safe_dump(doc))
    ls = LocalSweep(load_sweep(root / "tiny.yaml"), root / "store", device="cpu")
    display = Display(total_runs=1, total_flops=1.0, out=io.StringIO())
    prepare_data(ls, display)
    train_tokenizer(ls, display)
    return ls


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory, _sigterm_stops_servers: None) -> Iterator[Cluster]:
    workdir = Path(tmp_path_factory.mktemp("real-path"))
    try:
        with real_path_cluster(workdir, gpus=8) as cluster:  # the operator's pods request nvidia.com/gpu
            yield cluster
    except MissingBinary as e:
        pytest.skip(str(e))
