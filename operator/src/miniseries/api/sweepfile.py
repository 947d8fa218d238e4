"""Reading a ScalingSweep from YAML or from the API server, with errors that name fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from miniseries.api.errors import SpecError, from_validation_error
from miniseries.api.spec import ScalingSweep


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
