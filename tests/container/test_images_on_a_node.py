"""The two built images, run as pods on the real node (tests/harness/node.py): what only a container
shows. Each pod runs the image's own user (trainer 1000, operator 65532) with a read-only root
filesystem, no capabilities and no privilege escalation, and what it prints is read back through
the API server (`kubectl logs`, `kubectl exec`), as a person would."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.harness.cluster import Cluster
from tests.harness.node import BuiltImage, Node, archive_image, one_file_archive
from tests.harness.pods import locked_down_pod, probe, run_to_completion
from tests.harness.processes import wait_for

pytestmark = [pytest.mark.container, pytest.mark.cluster]

# What the pod reports about itself: who it runs as, its capabilities, whether / is writable,
# and which of the project's packages (and how many torch installations) the image holds.
PROBE = textwrap.dedent(
    """
    import importlib.metadata as md, json, os, sys
    caps = [ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("CapEff")][0]
    try:
        open("/probe", "w")
        root_writable = True
    except OSError:
        root_writable = False
    dists = sorted(d.metadata["Name"].lower().replace("_", "-") for d in md.distributions())
    out = {"uid": os.getuid(), "gid": os.getgid(), "caps": caps, "root_writable": root_writable,
           "home": os.environ.get("HOME"), "python": sys.version.split()[0], "prefix": sys.prefix,
           "torch_installs": dists.count("torch"), "dists": dists}
    if "{module}":
        import importlib
        importlib.import_module("{module}")
        out["imported"] = "{module}"
    if out["torch_installs"]:
        import torch
        x = torch.randn(32, 32, requires_grad=True)
        (x @ x).sum().backward()
        out["torch"] = torch.__version__
        out["grad_ok"] = bool(x.grad is not None and x.grad.shape == (32, 32))
    print("PROBE " + json.dumps(out), flush=True)
    """
)


def probe_pod(name: str, image: str, module: str, command: list[str] | None = None) -> dict[str, Any]:
    return locked_down_pod(name, image, command or ["python", "-c", PROBE.replace("{module}", module)])


def test_trainer_image_runs_as_1000_locked_down(
    cluster: Cluster, node: Node, namespace: str, images: dict[str, BuiltImage]
) -> None:
    logs = run_to_completion(
        cluster, namespace, probe_pod("trainer-probe", images["trainer"].ref, "miniseries_trainer.train")
    )
    got = probe(logs)
    assert (got["uid"], got["gid"]) == (1000, 1000)
    assert got["caps"] == "0000000000000000"
    assert got["root_writable"] is False
    assert got["home"] == "/home/trainer"
    assert got["imported"] == "miniseries_trainer.train"
    # torch exactly once, the trainer's; it trains on this CPU
    assert got["torch_installs"] == 1 and got["grad_ok"] is True
    assert {"miniseries", "miniseries-trainer", "pyarrow", "tiktoken", "tokenizers"} <= set(got["dists"])
    assert "kopf" not in got["dists"] and "kubernetes" not in got["dists"]
    # the node reports where it ran
    pod = json.loads(cluster.kubectl("get", "pod", "trainer-probe", "-n", namespace, "-o=json").stdout)
    assert pod["spec"]["nodeName"] == node.name
    assert pod["status"]["podIP"].startswith(node.pod_cidr.rsplit(".", 1)[0] + ".")


def test_operator_image_runs_as_65532_locked_down_without_torch(
    cluster: Cluster, node: Node, namespace: str, images: dict[str, BuiltImage]
) -> None:
    logs = run_to_completion(
        cluster, namespace, probe_pod("operator-probe", images["operator"].ref, "miniseries.control.io.handlers")
    )
    got = probe(logs)
    # the image's user, group and home, with no securityContext saying them (the chart does)
    assert (got["uid"], got["gid"], got["home"]) == (65532, 65532, "/tmp")
    assert got["caps"] == "0000000000000000"
    assert got["root_writable"] is False
    assert got["imported"] == "miniseries.control.io.handlers"
    assert got["torch_installs"] == 0
    assert {"miniseries", "kopf", "kubernetes", "prometheus-client", "numpy", "scipy", "matplotlib"} <= set(
        got["dists"]
    )
    # the image's entrypoint is the CLI the chart runs
    cli = probe_pod("operator-cli", images["operator"].ref, "", command=["miniseries", "operator", "--help"])
    assert "--all-namespaces" in run_to_completion(cluster, namespace, cli)


def test_exec_into_a_running_trainer_pod(
    cluster: Cluster, node: Node, namespace: str, images: dict[str, BuiltImage]
) -> None:
    pod = probe_pod("trainer-exec", images["trainer"].ref, "", command=["python", "-c", "import time; time.sleep(600)"])
    pod["spec"]["terminationGracePeriodSeconds"] = 1
    cluster.apply(pod, "-n", namespace)
    phase = "-o=jsonpath={.status.phase}"
    wait_for("pod trainer-exec Running",
             lambda: cluster.kubectl("get", "pod", "trainer-exec", "-n", namespace, phase).stdout == "Running", 120)  # fmt: skip
    out = cluster.kubectl("exec", "trainer-exec", "-n", namespace, "--", "python", "-c",
                          "import os; print(os.getuid(), os.getcwd())").stdout  # fmt: skip
    assert out.split() == ["1000", "/home/trainer"]
    cluster.kubectl("delete", "pod", "trainer-exec", "-n", namespace, "--wait=true", timeout=120)


def test_an_image_already_in_the_nodes_store_is_not_imported_again(
    node: Node, images: dict[str, BuiltImage], tmp_path: Path
) -> None:
    """containerd's root is kept from node to node (tests/harness/node.py NODE_STORE): each image is
    imported once per build, not once per node, and a new build under the same name replaces the
    old one, whose content and snapshots go."""
    for image in images.values():
        refs, config = archive_image(image.archive)
        assert refs == [image.ref]
        assert node.stored_config(image.ref) == config, node.ctr("images", "check").stdout
        assert node.import_image(image.archive) == 0.0, node.phases
    ref = "miniseries.test/rebuilt:1"
    old, new = (one_file_archive(tmp_path / f"{v}.tar", ref, "probe", v.encode()) for v in ("old", "new"))
    (_, old_config), (_, new_config) = archive_image(old), archive_image(new)
    node.remove_image(ref)  # left by a run that ended inside this test (the store is kept)
    try:
        assert node.import_image(old) > 0.0
        assert node.stored_config(ref) == old_config
        assert node.import_image(new) > 0.0
        assert node.stored_config(ref) == new_config
        # no name (the CRI adds sha256:<config>) and no content of the old build is left
        assert old_config not in node.images()
        assert old_config not in node.ctr("content", "ls", "-q").stdout.split()
    finally:
        node.remove_image(ref)
    assert new_config not in node.ctr("content", "ls", "-q").stdout.split()
