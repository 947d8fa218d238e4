"""How the API's models meet the wire: camelCase JSON, strict about unknown fields, always finite.

Every spec and status model derives from `WireModel`; `writable` is the last step before a
status document goes to the API server.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import AliasGenerator, BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class WireModel(BaseModel):
    """camelCase on the wire, strict about unknown fields (a typo is an error, not a no-op)."""

    model_config = ConfigDict(
        alias_generator=AliasGenerator(alias=to_camel),
        populate_by_name=True,
        extra="forbid",
        validate_default=True,
    )

    def wire(self) -> dict[str, Any]:
        """The camelCase dict that goes to Kubernetes or a YAML file."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def writable(doc: Any, path: str = "status") -> tuple[Any, list[str]]:
    """`doc` with every non-finite number (NaN, inf: not JSON, so the API server refuses the
    whole patch) replaced by None, which a merge patch writes as "absent"; and their paths."""
    if isinstance(doc, dict):
        out, bad = {}, []
        for k, v in doc.items():
            out[k], b = writable(v, f"{path}.{k}")
            bad += b
        return out, bad
    if isinstance(doc, list):
        items = [writable(v, f"{path}[{i}]") for i, v in enumerate(doc)]
        return [v for v, _ in items], [p for _, b in items for p in b]
    if isinstance(doc, float) and not math.isfinite(doc):
        return None, [path]
    return doc, []


def cel_rules(*rules: tuple[str, str, str]) -> dict[str, Any]:
    """A model's `json_schema_extra`: its cross-field checks as the CRD's x-kubernetes-validations, each
    (CEL rule, message, fieldPath of the field the message names). Written next to the validator that
    checks the same in Python, and held equal to it on the real API server
    (tests/integration/test_crd_api_server.py)."""
    return {
        "x-kubernetes-validations": [
            {"rule": rule, "message": message, "fieldPath": field_path} for rule, message, field_path in rules
        ]
    }
