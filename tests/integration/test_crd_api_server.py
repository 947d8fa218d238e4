"""The real kube-apiserver refuses, with the field named, what the operator would refuse later.

The CRD as `miniseries crd` renders it, on the API server the `cluster` fixture starts, and no
operator: a sweep with `file:///a/../b` is refused at `kubectl apply`, never stored. The table of
tests/support/store_uris.py gets the API server's verdict (its RE2 for the pattern, its CEL for the
dot-segment rule, within its cost limits) and the operator's (pydantic), which must agree.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from miniseries.api import spec as api
from miniseries.contract.store.uri import MAX_URI_LENGTH
from tests.harness.binaries import REPO
from tests.harness.cluster import Cluster
from tests.harness.operator_process import SWEEPS, custom, install_crds, sweep_doc
from tests.support.store_uris import URIS

pytestmark = [pytest.mark.cluster]


@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> Cluster:
    install_crds(cluster)  # the API server accepting the CRD is its cost estimate's check of every rule
    return cluster


def dry_run_create(kc: Cluster, namespace: str, doc: dict[str, Any]) -> str | None:
    """The API server's refusal of `doc` (its message), or None if it would store it (server-side dry run)."""
    from kubernetes.client.exceptions import ApiException

    try:
        custom(kc).create_namespaced_custom_object(*SWEEPS[:2], namespace, SWEEPS[2], doc, dry_run="All")
    except ApiException as e:
        assert e.status == 422, (e.status, e.body)
        return str(json.loads(e.body)["message"])
    return None


def operator_refusal(doc: dict[str, Any]) -> str | None:
    try:
        api.ScalingSweep.model_validate(doc)
    except ValidationError as e:
        return str(e)
    return None


def test_kubectl_apply_refuses_a_dot_dot_store_uri_naming_the_field(crds: Cluster, namespace: str) -> None:
    doc = sweep_doc("dots", "file:///a/../b")
    doc["spec"]["data"]["shardsUri"] = "file:///data/shards"
    proc = crds.kubectl("apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(doc), check=False)
    assert proc.returncode != 0, proc.stdout
    assert "spec.store.uri" in proc.stderr and "'file:///a/../b' has a '.' or '..' path segment" in proc.stderr
    missing = crds.kubectl("get", "scalingsweep", "dots", "-n", namespace, check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr  # refused, not stored for an operator to find


@pytest.mark.parametrize("field", ["shardsUri", "tokenizerUri", "evalBundleUri"])
def test_every_data_uri_has_the_rule(crds: Cluster, namespace: str, field: str) -> None:
    doc = sweep_doc("data-dots", "file:///store")
    doc["spec"]["data"][field] = "s3://bucket/x/%2e%2E/y"
    refusal = dry_run_create(crds, namespace, doc)
    assert refusal is not None and f"spec.data.{field}" in refusal and "path segment" in refusal


def test_the_api_server_and_the_operator_agree_on_every_uri(crds: Cluster, namespace: str) -> None:
    base = sweep_doc("uris", "file:///store")
    disagree = []
    for uri, ok in URIS:
        doc = copy.deepcopy(base)
        doc["spec"]["store"]["uri"] = uri
        server, ours = dry_run_create(crds, namespace, doc), operator_refusal(doc)
        if (server is None) != ok or (ours is None) != ok:
            disagree.append((uri[:60], ok, server, ours))
        if server is not None:
            assert "spec.store.uri" in server, server
    assert disagree == [], disagree


@pytest.mark.parametrize(
    ("where", "bad", "good", "field"),
    [
        (["metadata", "name"], "a" * (api.MAX_SWEEP_NAME + 1), "a" * api.MAX_SWEEP_NAME, "metadata.name"),
        (["spec", "resources", "queueName"], "Team_A", "team-a", "spec.resources.queueName"),
        (["spec", "resources", "priorityClassName"], "p" * 64, "p" * 63, "spec.resources.priorityClassName"),
        (["spec", "store", "credentialsSecret"], "my_secret", "my-secret", "spec.store.credentialsSecret"),
        (["spec", "resources", "memory"], "1GB", "1G", "spec.resources.memory"),
        (
            ["spec", "resources", "nodeSelector"],
            {"gpu": "h100 sxm"},
            {"gpu": "h100-sxm"},
            "spec.resources.nodeSelector.gpu",
        ),
        (["spec", "resources", "image"], "x" * 1025, "ghcr.io/x/y:1", "spec.resources.image"),
    ],
    ids=["name", "queueName", "priorityClassName", "credentialsSecret", "memory", "nodeSelector", "image"],
)
def test_names_and_quantities_are_refused_at_the_api_server(
    crds: Cluster, namespace: str, where: list[str], bad: Any, good: Any, field: str
) -> None:
    doc = sweep_doc("names", "file:///store")
    doc["spec"]["resources"]["queueName"] = "team-a"  # priorityClassName needs it
    node = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = bad
    assert operator_refusal(doc) is not None  # the operator refuses it too
    refusal = dry_run_create(crds, namespace, doc)
    assert refusal is not None and field in refusal, refusal
    node[where[-1]] = good
    assert operator_refusal(doc) is None
    assert dry_run_create(crds, namespace, doc) is None  # the same sweep with a good value is taken


def _wsd(d: dict[str, Any], **wsd: Any) -> None:
    d["spec"]["training"]["mode"] = "wsd"
    d["spec"]["training"]["wsd"] = {"budgets": [1, 2], **wsd}


# Checks across fields of the spec (no other object): (id, change to sweep_doc, the field the API server names)
CROSS_FIELD: list[tuple[str, Any, str]] = [
    ("depths-and-range", lambda d: d["spec"].update(depthRange={"min": 1, "max": 2}), "spec.depths"),
    ("neither", lambda d: d["spec"].pop("depths"), "spec.depths"),
    ("empty-depths", lambda d: d["spec"].update(depths=[]), "spec.depths"),
    ("repeated-depth", lambda d: d["spec"].update(depths=[1, 2, 1]), "spec.depths"),
    ("range-backwards", lambda d: (d["spec"].pop("depths"), d["spec"].update(depthRange={"min": 3, "max": 2})), "spec.depthRange.max"),
    ("isoflop-no-budgets", lambda d: d["spec"]["training"].update(mode="isoflop"), "spec.training.isoflopBudgets"),
    ("ratio-with-budgets", lambda d: d["spec"]["training"].update(isoflopBudgets=[1e15]), "spec.training.isoflopBudgets"),
    ("wsd-without-wsd", lambda d: d["spec"]["training"].update(mode="wsd"), "spec.training.wsd"),
    ("wsd-in-ratio", lambda d: d["spec"]["training"].update(wsd={"budgets": [1, 2]}), "spec.training.wsd"),
    ("twin-not-a-depth", lambda d: _wsd(d, twinDepth=4, twinBudgets=[1]), "spec.training.wsd.twinDepth"),
    ("twin-off-the-range", lambda d: (d["spec"].pop("depths"), d["spec"].update(depthRange={"min": 1, "max": 5, "step": 2}), _wsd(d, twinDepth=2, twinBudgets=[1])), "spec.training.wsd.twinDepth"),
    ("twin-without-budgets", lambda d: _wsd(d, twinDepth=2), "spec.training.wsd.twinDepth"),
    ("gpus-not-a-multiple", lambda d: d["spec"]["resources"].update(gpusPerRun=12, nodeGpus=8, nodes=2), "spec.resources.gpusPerRun"),
    ("gpus-beyond-the-nodes", lambda d: d["spec"]["resources"].update(gpusPerRun=16, nodeGpus=8, nodes=1), "spec.resources.gpusPerRun"),
    ("priority-without-queue", lambda d: d["spec"]["resources"].update(priorityClassName="high"), "spec.resources.priorityClassName"),
    ("runtime-on-pytorchjob", lambda d: d["spec"]["resources"].update(trainingRuntime="rt"), "spec.resources.trainingRuntime"),
    # spec.trainer (issue 31): the args' pattern, the command's type, the CEL rules of TrainerSpec and the spec
    ("trainer-unknown-variable", lambda d: _trainer(d, args=["a", "b", "c", "--x=$(model.depht)"]), "spec.trainer.args[3]"),
    ("trainer-unclosed-template", lambda d: _trainer(d, args=["--x=$(run.steps"]), "spec.trainer.args[0]"),
    ("trainer-command-a-string", lambda d: _trainer(d, command="python -m my.train"), "spec.trainer.command"),
    ("trainer-no-command", lambda d: _trainer(d, command=None), "spec.trainer.command"),
    ("trainer-contract-2", lambda d: _trainer(d, contractVersion=2), "spec.trainer.contractVersion"),
    ("trainer-no-contract", lambda d: _trainer(d, contractVersion=None), "spec.trainer.contractVersion"),
    ("trainer-template-into-sh-c", lambda d: _trainer(d, command=["sh", "-c"], args=["train --d=$(model.depth)"]), "spec.trainer.args"),
    ("trainer-template-into-bash-ec", lambda d: _trainer(d, command=["/bin/bash"], args=["-ec", "t $(run.name)"]), "spec.trainer.args"),
    ("trainer-wsd-without-init-from", lambda d: (_wsd(d), _trainer(d)), "spec.trainer.supports.initFrom"),
]  # fmt: skip
# ... and their neighbours that both take (a null field is absent to both)
CROSS_FIELD_OK: list[tuple[str, Any]] = [
    ("range", lambda d: (d["spec"].pop("depths"), d["spec"].update(depthRange={"min": 1, "max": 5, "step": 2}))),
    ("null-range", lambda d: d["spec"].update(depthRange=None)),
    ("twin-on-the-range", lambda d: (d["spec"].pop("depths"), d["spec"].update(depthRange={"min": 1, "max": 5, "step": 2}), _wsd(d, twinDepth=3, twinBudgets=[1]))),
    ("twin-in-depths", lambda d: _wsd(d, twinDepth=2, twinBudgets=[2])),
    ("gpus-over-two-nodes", lambda d: d["spec"]["resources"].update(gpusPerRun=16, nodeGpus=8, nodes=2)),
    ("priority-with-queue", lambda d: d["spec"]["resources"].update(priorityClassName="high", queueName="q")),
    ("null-priority", lambda d: d["spec"]["resources"].update(priorityClassName=None)),
    ("runtime-on-trainjob", lambda d: d["spec"]["resources"].update(trainingRuntime="rt", backend="trainjob")),
    ("isoflop", lambda d: d["spec"]["training"].update(mode="isoflop", isoflopBudgets=[1e15, 2e15])),
    ("trainer", lambda d: _trainer(d, image="ghcr.io/me/t:1", args=["--d", "$(model.depth)", "$(store.uri)/$(run.name)", "$$(x)", "a$b", "$"])),
    ("trainer-defaults", lambda d: _trainer(d, args=None, supports=None, passFlags=False)),
    ("trainer-sh-c-without-templates", lambda d: _trainer(d, command=["sh", "-c", "exec t \"$@\"", "sh"], args=["--x", "$$(lit)"])),
    ("trainer-sh-script-with-templates", lambda d: _trainer(d, command=["sh", "train.sh"], args=["$(model.depth)"])),
    ("trainer-wsd-with-init-from", lambda d: (_wsd(d), _trainer(d, supports={"initFrom": True}))),
]  # fmt: skip


def _trainer(d: dict[str, Any], **fields: Any) -> None:
    """spec.trainer: a good custom trainer with `fields` changed (None: the field absent)."""
    trainer = {"command": ["python", "-m", "my.train"], "contractVersion": 1, **fields}
    d["spec"]["trainer"] = {k: v for k, v in trainer.items() if v is not None}


@pytest.mark.parametrize(("change", "field"), [c[1:] for c in CROSS_FIELD], ids=[c[0] for c in CROSS_FIELD])
def test_checks_across_fields_are_refused_at_the_api_server(
    crds: Cluster, namespace: str, change: Any, field: str
) -> None:
    doc = sweep_doc("cross", "file:///store")
    change(doc)
    assert operator_refusal(doc) is not None
    refusal = dry_run_create(crds, namespace, doc)
    assert refusal is not None and field in refusal, refusal


@pytest.mark.parametrize("change", [c[1] for c in CROSS_FIELD_OK], ids=[c[0] for c in CROSS_FIELD_OK])
def test_their_neighbours_are_taken(crds: Cluster, namespace: str, change: Any) -> None:
    doc = sweep_doc("cross", "file:///store")
    change(doc)
    assert operator_refusal(doc) is None
    assert dry_run_create(crds, namespace, doc) is None


def test_every_example_is_taken(crds: Cluster, namespace: str) -> None:
    for example in sorted(REPO.glob("examples/*.yaml")):
        doc = yaml.safe_load(example.read_text())
        assert operator_refusal(doc) is None, example.name
        assert dry_run_create(crds, namespace, doc) is None, example.name


def test_the_uri_length_keeps_the_rule_within_the_cel_cost_budget(crds: Cluster) -> None:
    """The API server estimates each rule's worst cost from the field's bounds: the dot-segment rule is
    accepted with the URI's maxLength (the `crds` fixture installed it) and over budget without one."""
    crd = yaml.safe_load(crds.kubectl("get", "crd", "scalingsweeps.miniseries.dev", "-o", "yaml").stdout)
    uri = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["store"]
    assert uri["properties"]["uri"].pop("maxLength") == MAX_URI_LENGTH
    proc = crds.kubectl("replace", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(crd), check=False)
    assert proc.returncode != 0 and "estimated rule cost exceeds budget" in proc.stderr, proc.stderr
    assert "properties[uri].x-kubernetes-validations[0].rule" in proc.stderr
