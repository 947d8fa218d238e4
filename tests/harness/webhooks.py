"""Admission webhook configurations as a project publishes them, served by a controller on this host.

A controller's published Mutating/ValidatingWebhookConfigurations name an in-cluster Service; the
test API server reaches the controller by URL on 127.0.0.1 instead, over TLS with the harness's CA
(certs.py). Kueue (kueue.py) and the Trainer v2 backend (trainer.py: JobSet and the trainer) point
their published configurations here the same way.
"""

from __future__ import annotations

import base64
import copy
from pathlib import Path
from typing import Any

import yaml

from tests.harness.certs import make_ca, make_serving_cert, pem_cert, pem_key


def serve_at(hook: dict[str, Any], base_url: str, ca_pem: bytes) -> None:
    """Point one webhook entry (or a CRD's conversion webhook clientConfig owner) from its Service
    to ``base_url`` + the Service's path, trusting ``ca_pem``."""
    path = (hook["clientConfig"].get("service") or {}).get("path", "")
    hook["clientConfig"] = {"url": f"{base_url}{path}", "caBundle": base64.b64encode(ca_pem).decode()}


def json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """The `replace` and `add` operations of an RFC 6902 patch (what the kustomizations these
    manifests come with use), applied to a copy of ``doc``."""
    out = copy.deepcopy(doc)
    for op in ops:
        if op["op"] not in ("replace", "add"):
            raise ValueError(f"json_patch: {op['op']} is not supported")
        *parents, last = op["path"].strip("/").split("/")
        node: Any = out
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = op["value"]
        else:
            node[last] = op["value"]
    return out


def published_configurations(
    manifests: Path,
    base_url: str,
    ca_pem: bytes,
    patches: dict[str, Path] | None = None,
) -> list[dict[str, Any]]:
    """The configurations in ``manifests`` (a multi-document YAML), each patched with the JSON patch
    file its kind maps to in ``patches`` (as the project's kustomization does), every hook served
    at ``base_url``."""
    docs = []
    for doc in yaml.safe_load_all(manifests.read_text()):
        if not doc:
            continue
        patch = (patches or {}).get(doc["kind"])
        if patch is not None:
            doc = json_patch(doc, yaml.safe_load(patch.read_text()))
        for hook in doc["webhooks"]:
            serve_at(hook, base_url, ca_pem)
        docs.append(doc)
    return docs


def serving_pki(directory: Path, ca_name: str, service_dns: str) -> bytes:
    """A CA and a serving certificate for ``service_dns`` and 127.0.0.1 (the API server calls the
    webhook by URL on this host), written as ``ca.crt``, ``tls.crt`` and ``tls.key`` into
    ``directory`` (a controller-runtime certDir). Returns the CA's PEM."""
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = make_ca(ca_name)
    cert, key = make_serving_cert(ca, ca_key, service_dns, dns=[service_dns, "localhost"], ips=["127.0.0.1"])
    (directory / "ca.crt").write_bytes(pem_cert(ca))
    (directory / "tls.crt").write_bytes(pem_cert(cert))
    (directory / "tls.key").write_bytes(pem_key(key))
    return pem_cert(ca)
