"""One real-path cluster per test session (tests/harness/training_operator.py), one Kueue cluster per
session for the three Kueue modules (tests/harness/kueue.py), and the tiny sweep's data."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from miniseries.api.sweepfile import load_sweep
from miniseries.local.runner import Display, LocalSweep, prepare_data, train_tokenizer
from tests.e2e.shapes import e2e_training
from tests.harness.binaries import REPO, MissingBinary
from tests.harness.cluster import Cluster
from tests.harness.kueue import KueueCluster, kueue_cluster
from tests.harness.operator_process import install_crds
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
def tiny_steps(tiny: LocalSweep) -> LocalSweep:
    """`tiny` in the e2e sweeps' quarter-size steps (tests/e2e/shapes.py: the same 112 steps at about
    half the CPU), over the same store, shards and tokenizer."""
    doc = e2e_training(yaml.safe_load((tiny.store_dir.parent / "tiny.yaml").read_text()))
    path = tiny.store_dir.parent / "tiny-steps.yaml"
    path.write_text(yaml.safe_dump(doc))
    return LocalSweep(load_sweep(path), tiny.store_dir, device="cpu")


@pytest.fixture(scope="session")
def real_cluster(tmp_path_factory: pytest.TempPathFactory, _sigterm_stops_servers: None) -> Iterator[Cluster]:
    workdir = Path(tmp_path_factory.mktemp("real-path"))
    try:
        with real_path_cluster(workdir, gpus=8) as cluster:  # the operator's pods request nvidia.com/gpu
            yield cluster
    except MissingBinary as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def kueue_shared(tmp_path_factory: pytest.TempPathFactory, _sigterm_stops_servers: None) -> Iterator[KueueCluster]:
    """The real path plus Kueue, started once for test_kueue.py, test_kueue_operator.py and
    test_kueue_real_trainer.py (each start is a control plane, the training-operator and Kueue: tens of
    seconds on 2 cores). Two kwok nodes of 8 GPUs (their flavors select the H100 labels) and the node
    agent's node with one GPU (its flavor selects the agent's label), the ScalingSweep and kopf CRDs.
    The tests share nothing else: each makes its own namespace, ResourceFlavor, ClusterQueue and
    WorkloadPriorityClasses under unique names."""
    t0 = time.monotonic()
    try:
        with kueue_cluster(Path(tmp_path_factory.mktemp("kueue")), gpu_nodes=2, agent_gpus=1) as kc:
            install_crds(kc)
            print("KUEUE " + json.dumps({"harness_start_seconds": round(time.monotonic() - t0, 1),
                                         "kueue_start_seconds": round(kc.kueue_start_seconds, 1)}))  # fmt: skip
            yield kc
    except MissingBinary as e:
        pytest.skip(str(e))
