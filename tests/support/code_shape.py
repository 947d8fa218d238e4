"""The code's shape, read from its source: the import graph between files and rooms, and function lengths.

Used by the layout tests (no import cycles, no long functions) and runnable on its own to print
the figures a closing note reports: `python -m tests.support.code_shape`.
"""

from __future__ import annotations

import ast
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: The packages whose shape is held to the rules, by their import name and source root.
PACKAGES = {
    "miniseries": REPO / "operator" / "src" / "miniseries",
    "miniseries_trainer": REPO / "trainer_image" / "src" / "miniseries_trainer",
}


def modules() -> dict[str, Path]:
    """Every module of the packages, by dotted name (a package is its `__init__`)."""
    found: dict[str, Path] = {}
    for root in PACKAGES.values():
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root.parent).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _imported_names(path: Path, module: str, is_package: bool) -> Iterator[str]:
    """The dotted names a module imports, at any depth (lazy imports in functions count too)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def imported_from(module: str) -> list[tuple[str, str]]:
    """(source module, name) of each `from X import name` in a module, at any depth."""
    path = modules()[module]
    return [
        (node.module or "", alias.name)
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]


def import_graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports (resolved to existing modules, never itself)."""
    known = modules()
    graph: dict[str, set[str]] = {}
    for module, path in known.items():
        targets: set[str] = set()
        for name in _imported_names(path, module, path.name == "__init__.py"):
            while name and name not in known:
                name = name.rpartition(".")[0]
            # A package's __init__ is what `from pkg import x` runs; a child importing its own
            # package's __init__ is Python's ordinary loading, not a cycle of design.
            if name and name != module and not module.startswith(name + "."):
                targets.add(name)
        graph[module] = targets
    return graph


def room_of(module: str) -> str:
    """The room a module lives in: `miniseries.<room>` or the trainer package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "miniseries" and len(parts) > 1 else parts[0]


def room_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        mine = room_of(module)
        graph.setdefault(mine, set()).update(room_of(t) for t in targets if room_of(t) != mine)
    return graph


def folder_graph() -> dict[str, set[str]]:
    """Between folders (a module's package), e.g. `miniseries.control.decide` -> `miniseries.plan`."""
    known = modules()

    def folder(module: str) -> str:
        return module if known[module].name == "__init__.py" else module.rpartition(".")[0]

    graph: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        mine = folder(module)
        graph.setdefault(mine, set()).update(
            folder(t) for t in targets if folder(t) != mine and not mine.startswith(folder(t) + ".")
        )
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one member (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


@dataclass(frozen=True)
class Function:
    module: str
    name: str
    line: int
    lines: int


def functions() -> list[Function]:
    """Every function and method, with its length in source lines (decorators and docstring included)."""
    found: list[Function] = []
    for module, path in modules().items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                found.append(Function(module, node.name, node.lineno, (node.end_lineno or node.lineno) - start + 1))
    return sorted(found, key=lambda f: -f.lines)


def main() -> None:
    longest = [f"{f.lines:4d}  {f.module}.{f.name} (line {f.line})" for f in functions()[:15]]
    print(
        json.dumps(
            {
                "file_cycles": cycles(import_graph()),
                "folder_cycles": cycles(folder_graph()),
                "room_cycles": cycles(room_graph()),
                "longest_functions": longest,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
