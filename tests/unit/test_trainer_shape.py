"""The trainer reads at a glance (issue 29): `train()` is phases, not one long function with closures.

Read from the source with `ast` (no torch needed): every trainer function is short, and no nested
function reads a name its enclosing function assigns only after it (the old `preempted()` read
`loss_value` and `lrm`, which the step loop assigned later: whether they were set depended on when
it was called).
"""

from __future__ import annotations

import ast

from tests.support import code_shape
from tests.unit.test_code_shape import MAX_FUNCTION_LINES

TRAINER = "miniseries_trainer"


def test_no_trainer_function_is_too_long() -> None:
    long = {
        f"{f.module}.{f.name}": f.lines
        for f in code_shape.functions()
        if f.module.startswith(TRAINER) and f.lines > MAX_FUNCTION_LINES
    }
    assert long == {}, f"split these into named steps (over {MAX_FUNCTION_LINES} lines): {long}"


def late_reads(source: str) -> list[str]:
    """`outer.inner: name` for each nested function that reads a name its enclosing function assigns
    only after the nested function's definition."""
    found = []
    for outer in ast.walk(ast.parse(source)):
        if not isinstance(outer, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        inner_defs = [n for n in ast.walk(outer) if n is not outer and isinstance(n, ast.FunctionDef | ast.Lambda)]
        for inner in inner_defs:
            own = {a.arg for a in ast.walk(inner.args) if isinstance(a, ast.arg)} | {
                n.id for n in ast.walk(inner) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
            }
            reads = {n.id for n in ast.walk(inner) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - own
            defined_at, inside = getattr(inner, "lineno", 0), {id(n) for n in ast.walk(inner)}
            for node in ast.walk(outer):
                if id(node) in inside or not isinstance(node, ast.Name) or not isinstance(node.ctx, ast.Store):
                    continue
                if node.id in reads and node.lineno > defined_at:
                    found.append(f"{outer.name}.{getattr(inner, 'name', 'lambda')}: {node.id}")
    return sorted(set(found))


def test_no_trainer_closure_reads_a_name_assigned_after_it() -> None:
    late = {
        module: reads
        for module, path in code_shape.modules().items()
        if module.startswith(TRAINER) and (reads := late_reads(path.read_text()))
    }
    assert late == {}, f"pass these as arguments or state, not through a closure: {late}"


def test_the_late_read_finder_finds_one() -> None:
    source = (
        "def train():\n"
        "    def preempted():\n"
        "        return loss_value\n"
        "    loss_value = 1.0\n"
        "    return preempted()\n"
        "def fine(step):\n"
        "    x = 1\n"
        "    def inner(step):\n"
        "        y = step\n"
        "        return x + y\n"
        "    step, y = 2, 3\n"
        "    return inner(step)\n"
    )
    assert late_reads(source) == ["train.preempted: loss_value"]
