"""The CRD in crds/ is generated from api/spec.py and structural, as the API server demands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from miniseries.api.crd import crd, crd_yaml

CRD_FILE = Path(__file__).resolve().parents[2] / "crds" / "scalingsweeps.miniseries.dev.yaml"


def test_crd_file_is_not_stale() -> None:
    assert CRD_FILE.read_text() == crd_yaml(), (
        "crds/ is stale: run `miniseries crd > crds/scalingsweeps.miniseries.dev.yaml`"
    )


def _walk(node: Any, path: str = "") -> list[str]:
    """Paths that break the structural-schema rules (no $ref/anyOf/oneOf, every node typed)."""
    bad = []
    if isinstance(node, dict):
        for key in ("$ref", "anyOf", "oneOf", "allOf", "$defs"):
            if key in node:
                bad.append(f"{path}: {key}")
        is_schema = any(k in node for k in ("properties", "items", "description", "enum", "minimum"))
        if is_schema and "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            bad.append(f"{path}: no type")
        for k, v in node.get("properties", {}).items():
            bad += _walk(v, f"{path}.{k}")
        if isinstance(node.get("items"), dict):
            bad += _walk(node["items"], f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            bad += _walk(node["additionalProperties"], f"{path}{{}}")
    return bad


def test_schema_is_structural() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _walk(schema) == []


def test_descriptions_and_defaults_reach_kubectl_explain() -> None:
    spec = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    ratio = spec["properties"]["training"]["properties"]["tokensPerParam"]
    assert ratio["default"] == 8.0 and "Chinchilla" in ratio["description"]
    assert ratio["minimum"] == 0 and ratio["exclusiveMinimum"] is True
    assert spec["properties"]["training"]["properties"]["mode"]["enum"] == ["ratio", "isoflop", "wsd"]
    assert spec["required"] == ["store", "data"]


def test_printer_columns_and_status_subresource() -> None:
    version = crd()["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    names = [c["name"] for c in version["additionalPrinterColumns"]]
    assert names == ["Phase", "Runs", "Cost", "Plan", "Best-CORE", "Forecast", "Fit-N~C^a", "Age"]
    forecast = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["training"]["properties"]
    assert forecast["forecast"]["properties"]["policy"] == {
        "default": "flag", "enum": ["none", "flag", "stop"], "type": "string",
        "description": forecast["forecast"]["properties"]["policy"]["description"],
    }  # fmt: skip


def test_yaml_round_trips() -> None:
    assert yaml.safe_load(crd_yaml()) == crd()
