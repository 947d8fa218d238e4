"""Reading and keeping a ScalingSweep: YAML from a user or the API server, and the accepted spec
in the store, with errors that name fields.

The accepted spec lives next to the runs it planned, at `<store>/<ns>/<sweep>/sweep.json`
(`SweepLayout.spec`): the operator and the local runner write it when they accept a sweep,
the report reads it back to know what was planned.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from miniseries.api.errors import SpecError, from_validation_error
from miniseries.api.spec import ScalingSweep, ScalingSweepSpec
from miniseries.contract.layout import SweepLayout
from miniseries.contract.store import Store


def parse_sweep(obj: Any) -> ScalingSweep:
    """Validate a decoded resource; raises SpecError naming every bad field."""
    if not isinstance(obj, dict):
        raise SpecError.one("", f"a ScalingSweep must be a mapping, got {type(obj).__name__}")
    try:
        return ScalingSweep.model_validate(obj)
    except ValidationError as e:
        raise from_validation_error(e) from None


def load_sweep(path: str | Path) -> ScalingSweep:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise SpecError.one("", f"sweep file {str(p)!r} does not exist") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise SpecError.one("", f"{p} is not valid YAML: {e}") from None
    if len(docs) != 1:
        raise SpecError.one("", f"{p} must hold exactly one ScalingSweep document, found {len(docs)}")
    return parse_sweep(docs[0])


def save_spec(store: Store, layout: SweepLayout, spec: ScalingSweepSpec) -> None:
    """The spec the runs were planned from, next to them (the local runner and the operator write it)."""
    store.write_bytes(layout.spec, json.dumps(spec.wire(), indent=2).encode())


def load_spec(store: Store, layout: SweepLayout, key: str | None = None) -> ScalingSweepSpec | None:
    """The accepted spec at `key` (default `layout.spec`), or None when there is none."""
    key = layout.spec if key is None else key
    if not store.exists(key):
        return None
    return ScalingSweepSpec.model_validate(json.loads(store.read_bytes(key)))
