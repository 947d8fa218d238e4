"""Bare pods on the real node (tests/harness/node.py), locked down as the restricted PodSecurity
profile asks, run to completion and read back through the API server (`kubectl logs`), as a person
would: what only a container of a built image shows."""

from __future__ import annotations

import json
from typing import Any

from tests.harness.cluster import Cluster
from tests.harness.node import SELECTOR, TOLERATION
from tests.harness.processes import wait_for

LOCKED_DOWN = {
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def locked_down_pod(name: str, image: str, command: list[str]) -> dict[str, Any]:
    """A pod of `image` running `command` as the image's own user, on the real node, with a read-only root
    and one writable emptyDir at /tmp (as the operator gives its trainers)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": SELECTOR,
            "tolerations": [TOLERATION],
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "Never",  # imported into the node's containerd, never pulled
                    "command": command,
                    "securityContext": LOCKED_DOWN,
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def run_to_completion(cluster: Cluster, namespace: str, pod: dict[str, Any], timeout: float = 300) -> str:
    """Applies the pod, waits for it to end, asserts it Succeeded (its status and log in the message
    when not) and returns its log."""
    cluster.apply(pod, "-n", namespace)
    name = pod["metadata"]["name"]

    def done() -> str | None:
        phase = cluster.get_json(f"/api/v1/namespaces/{namespace}/pods/{name}")["status"].get("phase")
        return phase if phase in ("Succeeded", "Failed") else None

    phase = wait_for(f"pod {name} to finish", done, timeout)
    logs = cluster.kubectl("logs", name, "-n", namespace).stdout
    status = cluster.kubectl("get", "pod", name, "-n", namespace, "-o=jsonpath={.status}").stdout
    assert phase == "Succeeded", f"{name}: {phase}: {status}\n{logs}"
    return logs


def probe(logs: str) -> dict[str, Any]:
    """The one `PROBE {json}` line a probe pod printed, parsed (its log in the message when not one)."""
    lines = [ln for ln in logs.splitlines() if ln.startswith("PROBE ")]
    assert len(lines) == 1, logs
    return json.loads(lines[0][len("PROBE ") :])  # type: ignore[no-any-return]
