"""User-facing errors: every one names the field, the value it got and what is allowed.

The same messages reach a user through `miniseries plan` on the terminal, an
Event and a `Ready=False` condition on the ScalingSweep, and the local runner.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError


@dataclass(frozen=True)
class FieldProblem:
    field: str  # dotted camelCase path, e.g. "spec.training.tokensPerParam"
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class SpecError(ValueError):
    """A spec a user must fix; carries one or more field problems."""

    def __init__(self, problems: list[FieldProblem]):
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))

    @classmethod
    def one(cls, field: str, message: str) -> SpecError:
        return cls([FieldProblem(field, message)])

    @property
    def fields(self) -> list[str]:
        return [p.field for p in self.problems]


def _path(loc: tuple[Any, ...], prefix: str) -> str:
    parts: list[str] = [prefix] if prefix else []
    for item in loc:
        if isinstance(item, int):
            parts[-1 if parts else 0 :] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif item in ("function-after", "function-before") or str(item).startswith(("function-", "list[", "nullable[")):
            continue  # pydantic's internal validator names, meaningless to a user
        else:
            parts.append(str(item))
    return ".".join(parts)


def _describe(err: dict[str, Any]) -> str:
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        return "unknown field (check the spelling; see `kubectl explain scalingsweep.spec`)"
    if err["type"] == "missing":
        return "required field is missing"
    got = err.get("input")
    if err["type"] not in ("value_error",) and not isinstance(got, dict):
        msg = f"{msg}, got {got!r}"
    return msg


def from_validation_error(exc: ValidationError, prefix: str = "") -> SpecError:
    """Turn pydantic's error list into field problems with camelCase paths."""
    problems = [FieldProblem(_path(tuple(e["loc"]), prefix), _describe(e)) for e in exc.errors()]
    return SpecError(problems)
