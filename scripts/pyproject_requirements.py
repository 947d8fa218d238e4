"""Print the requirements of one or more pyproject.toml files, one a line, for `pip install -r`.

The images install their dependencies from this list in a layer of their own, before the sources
are copied in, so that layer is rebuilt only when a pyproject changes (and torch is downloaded
once, at the version the trainer's pyproject asks for). The projects named by the given files are
left out (the trainer depends on `miniseries`, which is installed from its source next), and the
build backend's own requirements are included so the final install needs no network.

    python3 pyproject_requirements.py operator/pyproject.toml[operator,science]
    python3 pyproject_requirements.py operator/pyproject.toml trainer_image/pyproject.toml
"""

from __future__ import annotations

import re
import sys
import tomllib


def requirements(args: list[str]) -> list[str]:
    projects: list[tuple[dict, list[str]]] = []
    for arg in args:
        m = re.fullmatch(r"(.+?)(?:\[([\w,-]+)\])?", arg)
        assert m is not None
        with open(m.group(1), "rb") as f:
            doc = tomllib.load(f)
        projects.append((doc, m.group(2).split(",") if m.group(2) else []))
    own = {re.sub(r"[-_.]+", "-", doc["project"]["name"]).lower() for doc, _ in projects}
    out: list[str] = []
    for doc, extras in projects:
        reqs = list(doc.get("build-system", {}).get("requires", []))
        reqs += doc["project"].get("dependencies", [])
        optional = doc["project"].get("optional-dependencies", {})
        for extra in extras:
            if extra not in optional:
                raise SystemExit(f"{doc['project']['name']}: no extra {extra!r} (has: {', '.join(optional)})")
            reqs += optional[extra]
        for req in reqs:
            name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9._-]+", req).group(0)).lower()
            if name not in own and req not in out:
                out.append(req)
    return out


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print("\n".join(requirements(sys.argv[1:])))
