"""Versioned JSON documents of the shared contract, as plain dataclasses (no pydantic).

The trainer writes these documents and the operator, the local runner and the report read
them, so they live in the torch-free, pydantic-free contract. `Doc.from_dict` is an
explicit, strict parse: a missing or mistyped field is a `DocError` naming the field (its
dotted path), what was found and what is allowed. Keys a reader does not know are kept in
`extra` and written back, so an older reader passes a newer document through unharmed.

`to_json` writes the layout the pydantic models wrote before: fields in declaration order,
then the unknown keys, `null` for None, NaN and infinities written as `null`, two-space indent.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
from typing import Any, ClassVar, Self, Union, get_args, get_origin, get_type_hints


class DocError(ValueError):
    """A document does not match its schema; the message names the field."""


@dataclasses.dataclass(kw_only=True)
class Doc:
    """Base of the contract's documents: subclasses are `@dataclass(kw_only=True)`."""

    extra: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    _hints: ClassVar[dict[type, dict[str, Any]]] = {}

    @classmethod
    def _fields(cls) -> list[tuple[dataclasses.Field[Any], Any]]:
        hints = Doc._hints.get(cls)
        if hints is None:
            hints = Doc._hints[cls] = get_type_hints(cls)
        return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.name != "extra"]

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Self:
        if not isinstance(data, dict):
            raise DocError(f"{where or cls.__name__}: expected an object, got {_kind(data)}")
        values: dict[str, Any] = {}
        for f, tp in cls._fields():
            path = f"{where}.{f.name}" if where else f.name
            if f.name in data:
                values[f.name] = _parse(tp, data[f.name], path)
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise DocError(f"{path}: missing; it is required ({_name(tp)})")
        known = {f.name for f, _ in cls._fields()}
        return cls(**values, extra={k: v for k, v in data.items() if k not in known})

    @classmethod
    def from_json(cls, raw: str | bytes) -> Self:
        return cls.from_dict(json.loads(raw))

    def to_dict(self) -> dict[str, Any]:
        """Plain Python values (NaN stays NaN; `to_json` writes it as null)."""
        out = {f.name: _dump(tp, getattr(self, f.name)) for f, tp in self._fields()}
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    def to_json(self) -> bytes:
        return json.dumps(json_ready(self.to_dict()), indent=2, ensure_ascii=False).encode()


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r:.60}" if value is not None else "null"


def _name(tp: Any) -> str:
    if get_origin(tp) in (Union, types.UnionType):
        return " or ".join(_name(a) for a in get_args(tp))
    if tp is type(None):
        return "null"
    if get_origin(tp) is list:
        return f"a list of {_name(get_args(tp)[0])}"
    if get_origin(tp) is dict:
        return f"an object of {_name(get_args(tp)[1])}"
    if isinstance(tp, type) and issubclass(tp, Doc):
        return f"a {tp.__name__} object"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(tp, str(tp))


def _parse(tp: Any, value: Any, path: str) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:  # Optional[X]: the error inside X names the field that is wrong
            return _parse(options[0], value, path)
        for arg in options:
            try:
                return _parse(arg, value, path)
            except DocError:
                pass
        raise DocError(f"{path}: expected {_name(tp)}, got {_kind(value)}")
    if origin is list:
        if not isinstance(value, list):
            raise DocError(f"{path}: expected {_name(tp)}, got {_kind(value)}")
        (item,) = get_args(tp)
        return [_parse(item, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise DocError(f"{path}: expected {_name(tp)}, got {_kind(value)}")
        _, item = get_args(tp)
        return {str(k): _parse(item, v, f"{path}.{k}") for k, v in value.items()}
    if isinstance(tp, type) and issubclass(tp, Doc):
        return tp.from_dict(value, path)
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
        bool: isinstance(value, bool),
    }.get(tp)
    if ok is None:
        return value  # Any
    if not ok:
        raise DocError(f"{path}: expected {_name(tp)}, got {_kind(value)}")
    return float(value) if tp is float else value


def _dump(tp: Any, value: Any) -> Any:
    """Plain JSON-able values, coerced to the declared type (float(), int()) as the writer meant."""
    if value is None:
        return None
    if isinstance(value, Doc):
        return value.to_dict()
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        tp = next(a for a in get_args(tp) if a is not type(None))
        origin = get_origin(tp)
    if origin is list:
        return [_dump(get_args(tp)[0], v) for v in value]
    if origin is dict:
        return {str(k): _dump(get_args(tp)[1], v) for k, v in value.items()}
    if tp is float:
        return float(value)
    if tp is int:
        return int(value)
    return value


def json_ready(value: Any) -> Any:
    """`value` as valid JSON: objects through their `to_dict()`, NaN/inf as None, tuples as lists."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value
