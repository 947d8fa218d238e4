#!/usr/bin/env python3
"""The phase table of a `make test` / `.ci/run` (issue 30: know where the time goes).

    scripts/ci_phases.py LOG [LOG|JSON ...]

reads the ``phase NAME SECONDS STATE`` lines the build scripts (scripts/phase.sh) and the test
session (tests/harness/durations.py) print, and its ``slowest SECONDS TEST`` lines, from CI logs
(any prefix on a line, such as a timestamp, is ignored), or the JSON that $MINISERIES_TEST_TIMES
named, and prints one table: each phase, the sums of the Go builds and of the images, then the
slowest tests. A phase named twice keeps its last value. Standard library only: it runs before the
virtualenv exists."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PHASE = re.compile(r"(?:^|\s)phase (\S+) (\d+(?:\.\d+)?) (\S+)\s*$")
SLOWEST = re.compile(r"(?:^|\s)slowest (\d+(?:\.\d+)?) (\S+)\s*$")
MOST_CPU = re.compile(r"(?:^|\s)cpu (\d+(?:\.\d+)?) (\S+)\s*$")
#: the table's sections, in order, by the phase name's prefix
SECTIONS = (
    ("setup", ("venv", "system-deps")),
    ("go", ("go:",)),
    ("images", ("image:",)),
    ("pytest", ("pytest",)),
    ("cpu", ("cpu:",)),
)


@dataclass
class Phases:
    phases: dict[str, tuple[float, str]] = field(default_factory=dict)
    slowest: dict[str, float] = field(default_factory=dict)
    most_cpu: dict[str, float] = field(default_factory=dict)

    def read_log(self, text: str) -> None:
        for line in text.splitlines():
            if m := PHASE.search(line):
                self.phases[m[1]] = (float(m[2]), m[3])
            elif m := SLOWEST.search(line):
                self.slowest[m[2]] = float(m[1])
            elif m := MOST_CPU.search(line):
                self.most_cpu[m[2]] = float(m[1])

    def read_json(self, data: dict[str, Any]) -> None:
        """The JSON tests/harness/durations.py writes."""
        tests = sum(g["tests"] for g in data.get("groups", {}).values())
        self.phases["pytest"] = (float(data.get("wall_s", 0.0)), f"tests={tests}")
        for name, g in data.get("groups", {}).items():
            self.phases[f"pytest:{name}"] = (float(g["seconds"]), f"tests={g['tests']}")
        self.phases["pytest:build-wait"] = (float(data.get("build_wait_s", 0.0)), "waited")
        for nodeid, seconds in data.get("slowest", []):
            self.slowest[nodeid] = float(seconds)
        for name, g in data.get("groups", {}).items():
            if "cpu_s" in g and data.get("most_cpu"):
                self.phases[f"cpu:{name}"] = (float(g["cpu_s"]), f"tests={g['tests']}")
        for nodeid, seconds in data.get("most_cpu", []):
            self.most_cpu[nodeid] = float(seconds)


def _section(name: str) -> str:
    for section, prefixes in SECTIONS:
        if name.startswith(prefixes):
            return section
    return "other"


def table(p: Phases, top: int = 15) -> str:
    rows: list[tuple[str, float, str]] = []
    order = [s for s, _ in SECTIONS] + ["other"]
    for section in order:
        names = [n for n in p.phases if _section(n) == section and n != "total"]
        rows += [(n, *p.phases[n]) for n in names]
        parts = [n for n in names if n != "go:all"]  # go:all is the whole script's wall time
        built = [p.phases[n][0] for n in parts if p.phases[n][1] in ("built", "fetched")]
        if section in ("go", "images") and parts:
            rows.append((f"({section}: built, sum)", sum(built), f"{len(built)} of {len(parts)}"))
    if "total" in p.phases:
        rows.append(("total", *p.phases["total"]))
    width = max([len(r[0]) for r in rows] + [5])
    out = [f"{'phase':<{width}}  {'seconds':>8}  state", "-" * (width + 24)]
    out += [f"{n:<{width}}  {s:>8.1f}  {state}" for n, s, state in rows]
    if p.slowest:
        out += ["", f"slowest {min(top, len(p.slowest))} tests (setup + call + teardown):"]
        ranked = sorted(p.slowest.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        out += [f"{s:>8.1f}  {nodeid}" for nodeid, s in ranked]
    if p.most_cpu:
        out += ["", f"most CPU, {min(top, len(p.most_cpu))} tests (CPU seconds of the test's process tree):"]
        ranked = sorted(p.most_cpu.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        out += [f"{s:>8.1f}  {nodeid}" for nodeid, s in ranked]
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    p = Phases()
    for arg in argv:
        path = Path(arg)
        if not path.is_file():
            continue  # a log a run did not write (a job that never started): nothing to add
        if path.suffix == ".json":
            p.read_json(json.loads(path.read_text()))
        else:
            p.read_log(path.read_text(errors="replace"))
    if not p.phases and not p.slowest and not p.most_cpu:
        print(f"ci_phases: no phase lines in {' '.join(argv)}", file=sys.stderr)
        return 1
    print(table(p))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
