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
