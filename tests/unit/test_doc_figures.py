"""Every figure the README, the docs pages, bench/RESULTS.md and the examples quote from a command is what
that command prints now.

A quoted figure sits between markers naming the commands that produce it:

    Markdown:           <!-- figures: miniseries plan examples/wsd.yaml -->40.2 GPU-hours<!-- /figures -->
    examples (YAML):    # figures: miniseries plan examples/tiny.yaml
                        # ... 1.3e12 FLOPs ...
                        # /figures

Each number between the markers (outside `code spans`, which name things rather than quote
them) must be one the commands print, as printed or rounded to the digits the text gives
(`$83` for 83.41, `4.4e11` for 4.37e+11). A figure that drifts (a plan changed, an example
edited) fails here; so does a marker whose command fails.
"""

from __future__ import annotations

import math
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The Markdown a reader meets (the README, the docs pages, the measured figures), then the examples.
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "bench" / "RESULTS.md"]
DOCS = [*PAGES, *sorted((ROOT / "examples").glob("*.yaml"))]
#: Commands whose figures the docs must carry a checked quote of (taking a marker away fails too).
REQUIRED = {
    "miniseries plan examples/miniseries.yaml",
    "miniseries plan examples/wsd.yaml",
    "miniseries plan examples/tiny.yaml",
    "miniseries plan examples/tiny-wsd.yaml",
    "miniseries plan examples/tiny-isoflop.yaml",
}

_START = re.compile(r"(?:<!--|#)\s*figures:\s*(?P<cmds>[^>\n]+?)\s*(?:-->|$)", re.MULTILINE)
_END = re.compile(r"(?:<!--|#)\s*/figures\s*(?:-->)?")
# A number as prose writes it: 1,070 / 40.2 / 4.4e11 / 4.37e+11; not part of a word (d12, x86) or of a
# dotted version (v1.9.4), and never a date's pieces (dates are not quoted from commands).
NUMBER = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![\w.]*\d)")


@dataclass
class Quote:
    doc: Path
    line: int
    commands: list[str]
    text: str


def quotes(doc: Path) -> list[Quote]:
    text = doc.read_text()
    found = []
    for start in _START.finditer(text):
        end = _END.search(text, start.end())
        assert end is not None, f"{doc.name}:{text.count(chr(10), 0, start.start()) + 1}: `figures:` without `/figures`"
        commands = [c.strip() for c in start.group("cmds").split(";") if c.strip()]
        found.append(Quote(doc, text.count("\n", 0, start.start()) + 1, commands, text[start.end() : end.start()]))
    return found


@cache
def output(command: str) -> str:
    argv = shlex.split(command)
    assert argv[0] == "miniseries", f"only miniseries commands are quoted, not {command!r}"
    proc = subprocess.run([sys.executable, "-m", "miniseries.cli", *argv[1:]], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, f"{command} failed: {proc.stderr[-2000:]}"
    return proc.stdout


def numbers(text: str) -> list[str]:
    prose = re.sub(r"`[^`]*`", " ", text)  # code spans name files, fields and commands
    prose = re.sub(r"^\s*#", " ", prose, flags=re.MULTILINE)  # YAML comment markers
    return NUMBER.findall(prose)


def _decimals(figure: str) -> int:
    mantissa = re.split(r"[eE]", figure)[0]
    return len(mantissa.split(".")[1]) if "." in mantissa else 0


def matches(figure: str, printed: str) -> bool:
    """`figure` (from prose) is `printed` (from a command), as printed or rounded to fewer digits."""
    f, p = Decimal(figure.replace(",", "")), Decimal(printed.replace(",", ""))
    if f == p:
        return True
    if p == 0 or (_decimals(figure) > _decimals(printed) and "e" not in printed.lower()):
        return False  # the prose cannot be more precise than what was printed
    if "e" in figure.lower():  # scientific: the same significant digits
        digits = len(re.split(r"[eE]", figure)[0].replace(".", "").lstrip("0"))
        exp = math.floor(math.log10(abs(float(p))))
        return round(float(p), digits - 1 - exp) == float(f)
    return round(p, _decimals(figure)) == f


def test_matching_rules() -> None:
    assert matches("83", "83.41") and matches("$83".lstrip("$"), "83.41") and not matches("85", "83.41")
    assert matches("40.2", "40.2") and not matches("40.2", "35.2") and not matches("40.25", "40.2")
    assert matches("4.4e11", "4.37e+11") and not matches("4.5e11", "4.37e+11") and matches("1,070", "1070")
    assert numbers("`d12-trunk@4130` at d12: 40.2 GPU-hours, $120.55, v1.9.4, 1.3e12 FLOPs, 34%") == [
        "40.2",
        "120.55",
        "1.3e12",
        "34",
    ]


ALL = [q for doc in DOCS for q in quotes(doc)]


def test_the_required_commands_are_quoted() -> None:
    assert {c for q in ALL for c in q.commands} >= REQUIRED


@pytest.mark.parametrize("quote", ALL, ids=[f"{q.doc.name}:{q.line}" for q in ALL])
def test_quoted_figures_are_what_the_command_prints(quote: Quote) -> None:
    printed = [n for c in quote.commands for n in NUMBER.findall(output(c))]
    figures = numbers(quote.text)
    assert figures, f"{quote.doc.name}:{quote.line}: a figures marker around no figure"
    drifted = [f for f in figures if not any(matches(f, p) for p in printed)]
    assert drifted == [], (
        f"{quote.doc.name}:{quote.line}: {drifted} are not what `{'; '.join(quote.commands)}` prints now; "
        f"the quote: {quote.text.strip()!r}"
    )


# Defaults the pages state, against what the command that owns each prints: the CRD's defaults
# (`miniseries crd`, rendered from the API models) and the flags' help.
DEFAULTS = [
    # (a sentence of the pages, with the default as group 1; the command; where it prints it, as group 1)
    (r"`spec\.resources\.nodes` \(default (\d+)\)", "miniseries crd", r"\n {18}nodes:\n {20}default: (\d+)"),
    (r"`spec\.training\.forecast\.policy` \(`none`, `(\w+)` by default", "miniseries crd", r"policy: (\w+)"),
    (
        r"`spec\.resources\.image`, default `(ghcr\.io/miniseries/trainer:[\w.]+)`",
        "miniseries crd",
        r"default: (ghcr\.io/\S+)",
    ),
    (r"`admission\.maxGpuHoursWithoutBudget` GPU-hours \((\d+) by default", "miniseries plan --help", r"or (\d+),"),
]


@pytest.mark.parametrize(("said", "command", "printed"), DEFAULTS, ids=[d[0][:40] for d in DEFAULTS])
def test_stated_defaults_are_the_defaults(said: str, command: str, printed: str) -> None:
    pages = "\n".join(page.read_text() for page in PAGES)
    stated = re.search(said, pages.replace("\n", " "))
    assert stated, f"no page ({', '.join(p.name for p in PAGES)}) says {said!r} any more: update this table"
    actual = re.search(printed, output(command))
    assert actual, f"`{command}` no longer prints {printed!r}"
    assert stated.group(1) == actual.group(1), f"the docs say {stated.group(0)!r}, `{command}` says {actual.group(0)!r}"
