"""The rooms keep their imports: checked in a clean interpreter, where sys.modules tells the truth.

The trainer imports only the shared contract (no CR schema, no pydantic, no Kubernetes), and
the control loop's reconciling machinery loads no numerical science until a fit is due.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import pkgutil
import subprocess
import sys

import pytest

#: Every module of the trainer package, so a new one is checked without being listed here.
TRAINER_MODULES = sorted(
    f"miniseries_trainer.{m.name}"
    for m in pkgutil.iter_modules(importlib.util.find_spec("miniseries_trainer").submodule_search_locations)  # type: ignore[union-attr]
)


def loaded_after(imports: list[str], watched: list[str]) -> list[str]:
    """The watched top-level names (or dotted prefixes) present in sys.modules after the imports."""
    code = (
        "import importlib, json, sys\n"
        f"for m in {imports!r}: importlib.import_module(m)\n"
        f"watched = {watched!r}\n"
        "print(json.dumps(sorted({w for w in watched for m in sys.modules if m == w or m.startswith(w + '.')})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@functools.cache
def _loaded_together(imports: tuple[str, ...], watched: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(loaded_after(list(imports), list(watched)))


def loaded_alone(module: str, siblings: list[str], watched: list[str]) -> list[str]:
    """What ``module`` loads of ``watched`` in a clean interpreter of its own, asked only when its
    ``siblings`` (``module`` among them) imported together in one clean interpreter load something
    watched. Importing only adds to sys.modules, so what they load together is at least what any one
    of them loads alone: nothing watched together is nothing watched for each, at one interpreter's
    start (a torch import) instead of one per module; otherwise each one alone names the culprit."""
    assert module in siblings
    if not _loaded_together(tuple(siblings), tuple(watched)):
        return []
    return loaded_after([module], watched)


def test_the_harness_sees_what_is_loaded() -> None:
    assert loaded_after(["miniseries.api.spec"], ["pydantic", "miniseries.api", "kopf"]) == [
        "miniseries.api",
        "pydantic",
    ]


@pytest.mark.parametrize("module", TRAINER_MODULES)
def test_the_trainer_loads_only_the_shared_contract(module: str) -> None:
    pytest.importorskip("torch")
    forbidden = ["miniseries.api", "miniseries.control", "miniseries.science", "pydantic", "kopf", "kubernetes"]
    assert loaded_alone(module, TRAINER_MODULES, forbidden) == []


def test_the_contract_loads_no_api_and_no_pydantic() -> None:
    modules = [f"miniseries.contract.{m}" for m in ("shapes", "layout", "store", "results", "core", "doc")]
    forbidden = ["miniseries.api", "miniseries.control", "miniseries.science", "pydantic", "kopf", "kubernetes"]
    assert loaded_after(modules, forbidden) == []


def test_reconciling_machinery_loads_no_numerical_science() -> None:
    pytest.importorskip("kopf")
    modules = ["miniseries.control.decide.reconcile", "miniseries.control.io.handlers"]
    assert loaded_after(modules, ["numpy", "scipy", "matplotlib", "miniseries.science"]) == []
