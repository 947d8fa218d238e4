"""Render the CustomResourceDefinition from the pydantic models in `api`.

Kubernetes wants a *structural* OpenAPI v3 schema: every node typed, no $ref, no
anyOf at the type level, `nullable` instead of a null type. pydantic's JSON
Schema is close; this module inlines the definitions and rewrites the few
constructs the API server rejects. What the API server can judge from the sweep
alone it refuses at `kubectl apply`, naming the field: bounds, enums, the store URIs'
pattern, length and dot-segment rule, the name's pattern, object names and quantities
(each taken from the definition the operator checks with: contract/store/uri.py,
api/grammar.py), and the spec's checks across its own fields as CEL rules written next
to their pydantic validators (wire.cel_rules). The operator keeps every check (a CRD
installed before these, another client) and reports it as an Event and a condition;
what needs another object (a Secret, the store, the GPU-hour ceiling) only it can check.
"""

from __future__ import annotations

from typing import Any

import yaml

from miniseries.api import spec as api

_DROP = {"title", "discriminator"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    out: dict[str, Any] = {}
    # anyOf (a nullable field's type) first, so that what the field itself states (json_schema_extra's
    # additionalProperties on a nullable map) overrides the type's generic shape
    for key, value in sorted(node.items(), key=lambda kv: kv[0] != "anyOf"):
        if key in _DROP:
            continue
        if key == "anyOf":
            options = [o for o in value if o.get("type") != "null"]
            nullable = len(options) != len(value)
            if len(options) == 1:
                inner = _structural(options[0], defs)
                out.update(inner)
            else:  # a union of non-null types: keep the first type's shape (unused in our API)
                out.update(_structural(options[0], defs))
            if nullable:
                out["nullable"] = True
            continue
        if key == "properties":
            out[key] = {k: _structural(v, defs) for k, v in value.items()}
        elif key == "additionalProperties" and isinstance(value, bool):
            if value:
                out["x-kubernetes-preserve-unknown-fields"] = True
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema 2020 number form -> OpenAPI v3 boolean form
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "const":
            out["enum"] = [value]
        else:
            out[key] = _structural(value, defs)
    if out.get("default") is None and "default" in out:
        del out["default"]
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def openapi_schema(model: type[Any], mode: str = "validation") -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode=mode)
    defs = raw.pop("$defs", {})
    return _structural(raw, defs)  # type: ignore[no-any-return]


def _strip_status_defaults(node: Any) -> Any:
    # Status is written by the operator; defaults there would make the API server
    # invent values the operator never reported.
    if isinstance(node, dict):
        return {k: _strip_status_defaults(v) for k, v in node.items() if k != "default"}
    if isinstance(node, list):
        return [_strip_status_defaults(v) for v in node]
    return node


#: `kubectl get scalingsweeps`' columns.
PRINTER_COLUMNS: list[dict[str, str]] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Runs", "type": "string", "jsonPath": ".status.progress", "description": "Runs done / total"},
    {"name": "Cost", "type": "string", "jsonPath": ".status.cost", "description": "USD so far"},
    {
        "name": "Plan",
        "type": "string",
        "jsonPath": ".status.planSummary",
        "description": "Planned cost and wall time of the whole sweep",
    },
    {"name": "Best-CORE", "type": "number", "jsonPath": ".status.bestCore"},
    {
        "name": "Forecast",
        "type": "string",
        "jsonPath": ".status.forecastSummary",
        "description": "Forecast final val bpb of the largest run in flight; runs off trend",
    },
    {
        "name": "Fit-N~C^a",
        "type": "number",
        "jsonPath": ".status.fit.paramsExponent",
        "description": "a in N_opt ~ C^a once the family is fitted (about 0.5 expected)",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _spec_schema() -> dict[str, Any]:
    """The spec's schema, described by the model's docstring."""
    spec_schema = openapi_schema(api.ScalingSweepSpec)
    spec_schema["description"] = api.ScalingSweepSpec.__doc__
    return spec_schema


def _status_schema() -> dict[str, Any]:
    """The status's schema: nothing required, no defaults, conditions a map keyed by type."""
    status_schema = _strip_status_defaults(openapi_schema(api.ScalingSweepStatus, mode="serialization"))
    status_schema.pop("required", None)
    conditions = status_schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return status_schema  # type: ignore[no-any-return]


def _object_schema() -> dict[str, Any]:
    """The whole object's schema: the name's rule, the spec and the status."""
    return {
        "type": "object",
        "description": "A compute-optimal family of GPT models and the scaling laws they reveal.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            # the one part of metadata a CRD may constrain: the name, which the job names
            # the operator derives (<sweep>-<run>) must leave room for
            "metadata": {
                "type": "object",
                "properties": {
                    "name": {
                        "type": "string",
                        "maxLength": api.MAX_SWEEP_NAME,
                        "pattern": api.SWEEP_NAME_RE.pattern,
                    }
                },
            },
            "spec": _spec_schema(),
            "status": _status_schema(),
        },
    }


def crd() -> dict[str, Any]:
    """The CustomResourceDefinition of ScalingSweep: one served and stored version with a status subresource."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{api.PLURAL}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": api.SHORT_NAMES,
                "categories": ["miniseries"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [dict(c) for c in PRINTER_COLUMNS],
                    "schema": {"openAPIV3Schema": _object_schema()},
                }
            ],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `miniseries crd` from operator/src/miniseries/api/spec.py. Do not edit.\n"
    return header + yaml.safe_dump(crd(), sort_keys=False, width=120)
