"""Every command module the CLI lists is there: the router skips a module that is not installed
(an image may leave one out), so a misspelt or renamed one would make its command vanish silently."""

from __future__ import annotations

import importlib

import pytest

from miniseries.cli import COMMAND_MODULES, build_parser


@pytest.mark.parametrize("name", COMMAND_MODULES)
def test_every_listed_command_module_imports_and_registers(name: str) -> None:
    assert callable(importlib.import_module(name).register)


def test_the_commands_the_docs_promise_are_there() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    expected = {"plan", "run", "status", "report", "fit", "forecast", "data", "store", "operator", "crd", "trainer"}
    assert expected <= set(sub.choices)  # type: ignore[arg-type]
