"""The tree's shape holds: no import cycle between files, folders or rooms; the plan room and the
operator's pure decisions import nothing above them; no function is too long to read at a glance.

Read from the source (tests/support/code_shape.py), so a lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support import code_shape
from tests.unit.test_import_purity import loaded_after

#: Longer than this, a function stops reading at a glance (the house rule: one idea per function).
MAX_FUNCTION_LINES = 80

#: Functions allowed over the limit because they are tables, not logic: each says why.
TABLES: dict[str, str] = {}


def test_no_import_cycle_between_files() -> None:
    assert code_shape.cycles(code_shape.import_graph()) == []


def test_no_import_cycle_between_folders() -> None:
    assert code_shape.cycles(code_shape.folder_graph()) == []


def test_no_import_cycle_between_rooms() -> None:
    assert code_shape.cycles(code_shape.room_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert code_shape.cycles(graph) == [["a", "b", "c"]]


def _reaches(start_prefix: str) -> set[str]:
    """Every project module reachable by imports from the modules under `start_prefix`."""
    graph = code_shape.import_graph()
    seen = {m for m in graph if m == start_prefix or m.startswith(start_prefix + ".")}
    todo = list(seen)
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize(
    ("room", "allowed"),
    [
        ("miniseries.plan", ("miniseries.plan", "miniseries.api", "miniseries.contract")),
        (
            "miniseries.control.decide",
            (
                "miniseries.control.decide",
                "miniseries.control.backends",
                "miniseries.plan",
                "miniseries.api",
                "miniseries.contract",
            ),
        ),
    ],
)
def test_pure_rooms_import_only_below_them(room: str, allowed: tuple[str, ...]) -> None:
    outside = sorted(m for m in _reaches(room) if not m.startswith(allowed))
    assert outside == [], f"{room} reaches {outside}"


def test_the_decisions_read_no_store_and_call_no_cluster() -> None:
    """No module of the pure part imports the store's backends or a cluster client, even indirectly."""
    graph = code_shape.import_graph()
    pure = [m for m in graph if m.startswith(("miniseries.control.decide", "miniseries.control.backends"))]
    # Constants of the store (an env variable's name) are shared words; a store object or reader is I/O.
    readers = {
        f"{m}: {name}"
        for m in pure
        for source, name in code_shape.imported_from(m)
        if source.startswith("miniseries.contract.store") and not name.isupper()
    }
    assert readers == set(), "the store is read in control/io/, not in the decisions"
    assert loaded_after(pure, ["kopf", "kubernetes", "miniseries.control.io"]) == []


def test_no_function_is_too_long() -> None:
    long = {
        f"{f.module}.{f.name}": f.lines
        for f in code_shape.functions()
        if f.lines > MAX_FUNCTION_LINES and f"{f.module}.{f.name}" not in TABLES
    }
    assert long == {}, f"split these into named steps (over {MAX_FUNCTION_LINES} lines): {long}"


def _first_line(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def _ways_to_name(module: str) -> tuple[str, ...]:
    """`miniseries.contract.preemption` is named as itself or as `contract/preemption.py`;
    `miniseries_trainer.preemption` as itself or `miniseries_trainer/preemption.py`."""
    path = module.replace(".", "/") + ".py"
    return (module, path.removeprefix("miniseries/"))


def test_no_two_modules_share_a_name_unless_they_say_why() -> None:
    """A file's name says which room it is in: two modules of one name (in different rooms) must be
    the same idea on both sides of the contract, and each one's first docstring line names the other."""
    by_name: dict[str, list[tuple[str, Path]]] = {}
    for module, path in code_shape.modules().items():
        if path.name != "__init__.py" and module.rpartition(".")[2] != "__main__":
            by_name.setdefault(path.name, []).append((module, path))
    unexplained = []
    for name, found in sorted(by_name.items()):
        for module, path in found if len(found) > 1 else []:
            others = [m for m, _ in found if m != module]
            line = _first_line(path)
            if not all(any(way in line for way in _ways_to_name(o)) for o in others):
                unexplained.append(f"{module} ({name}): first line does not name {others}")
    assert unexplained == []
