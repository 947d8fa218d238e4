"""Issue 29: two differently configured operators' reconciles in one process, against the real API server.

Each operator is built as `miniseries operator` builds it (control/settings.OperatorSettings, then
handlers.register into its own kopf registry); the handlers are called as kopf calls them, from the
registries. The sweep is one the first operator's store roots refuse and the second's allow: the
first writes StoreNotAllowed, the second claims the store and reconciles it, in the same process,
one after the other, and the first still refuses it afterwards. (The pure checks of the same
settings: tests/unit/test_settings.py.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kopf

from miniseries.api.policy import Policy
from miniseries.control.io import handlers
from miniseries.control.settings import OperatorSettings
from tests.harness.cluster import Cluster
from tests.harness.operator_process import SWEEPS, condition, custom, get_sweep, install_crds, sweep_doc


def registered(settings: OperatorSettings) -> dict[str, Any]:
    """The handlers `miniseries operator` would run with these settings, by id."""
    registry = kopf.OperatorRegistry()
    handlers.register(settings, registry)
    subs = (registry._activities, registry._changing, registry._watching, registry._spawning)
    return {h.id: h.fn for sub in subs for h in sub.get_all_handlers()}


def test_two_operators_in_one_process_reconcile_by_their_own_settings(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    install_crds(cluster)
    kubeconfig = str(cluster.kubeconfig)
    a = registered(OperatorSettings(policy=Policy(store_roots=(f"file://{tmp_path}/a/{{namespace}}",)),
                                    kubeconfig=kubeconfig, namespaces=(namespace,)))  # fmt: skip
    b = registered(OperatorSettings(policy=Policy(store_roots=(f"file://{tmp_path}/b/{{namespace}}",)),
                                    kubeconfig=kubeconfig, namespaces=(namespace,)))  # fmt: skip
    a["configure"](settings=kopf.OperatorSettings())  # logs in with its settings' kubeconfig, as at startup
    api = custom(cluster)
    uri = f"file://{tmp_path}/b/{namespace}/s"
    api.create_namespaced_custom_object(*SWEEPS[:2], namespace, SWEEPS[2], sweep_doc("s", uri))

    a["on_resume"](body=get_sweep(api, namespace, "s"))
    ready = condition(get_sweep(api, namespace, "s"), "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "StoreNotAllowed"), ready
    assert "spec.store.uri" in ready["message"] and f"file://{tmp_path}/a/{namespace}" in ready["message"]
    assert not (tmp_path / "b").exists()

    b["on_resume"](body=get_sweep(api, namespace, "s"))
    sweep = get_sweep(api, namespace, "s")
    assert condition(sweep, "Ready").get("reason") != "StoreNotAllowed", condition(sweep, "Ready")
    assert (tmp_path / "b" / namespace / "s").is_dir(), "B claimed the sweep's store key under its root"
    assert sorted(r["name"] for r in sweep["status"]["runs"]) == ["d1", "d2", "d3"]

    a["on_resume"](body=sweep)  # A's settings are untouched by B's reconcile
    assert condition(get_sweep(api, namespace, "s"), "Ready")["reason"] == "StoreNotAllowed"
