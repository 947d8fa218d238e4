"""The suite's skips, counted and judged (a pytest plugin, loaded by tests/conftest.py).

Every run ends with one line: how many tests skipped, and why (``skips: 3 (2x shared/data/...;
1x ...)``). Under CI (``CI=true``, as `.ci/run` runs on a machine with root, ``make deps`` done
and ``../shared`` present) a skip whose reason is not in :data:`ALLOWED` fails the run: a skip
there means a component did not build, a module was not fetched, a privilege was missing, and
the tests it guards silently did not run."""

from __future__ import annotations

import os
import re
from collections import Counter
from typing import Any

import pytest

#: Skip reasons that are legitimate on the CI machine, each with why. Nothing else may skip there.
ALLOWED: dict[str, str] = {
    r"\bno (CUDA|GPU)\b|CUDA is not available|needs a GPU": "the CI machine has no GPU; GPU paths are checked on a lent GPU",
}

_reasons: list[str] = []


def _reason(report: Any) -> str:
    longrepr = report.longrepr
    text = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return re.sub(r"^Skipped: ", "", str(text)).strip()


def _record(report: Any) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _reasons.append(_reason(report))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _record(report)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _record(report)  # a module that skips as a whole (pytest.skip(allow_module_level=True))


def summary(reasons: list[str]) -> str:
    """One line: the number of skips and each distinct reason with its count, most frequent first."""
    if not reasons:
        return "skips: 0"
    counts = Counter(r[:120] for r in reasons)
    return f"skips: {len(reasons)} (" + "; ".join(f"{n}x {r}" for r, n in counts.most_common()) + ")"


def unexpected(reasons: list[str]) -> list[str]:
    return sorted({r for r in reasons if not any(re.search(p, r) for p in ALLOWED)})


def _enforced() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1", "yes")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # NO_TESTS_COLLECTED too: every module skipping at import is not the empty selection that
    # .ci/run forgives (its exit-5 rule), it is the whole suite not running.
    if _enforced() and unexpected(_reasons) and exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    terminalreporter.write_line(summary(_reasons))
    bad = unexpected(_reasons)
    if bad and _enforced():
        terminalreporter.write_line(
            f"ci: FAILED: {len(bad)} skip reason(s) not allowed on the CI machine (tests/harness/skips.py ALLOWED): "
            + " | ".join(bad),
            red=True,
        )
