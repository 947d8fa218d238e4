"""Where the harness finds the components it starts: Go-built binaries in the cache.

Binaries come from ``~/.cache/miniseries/bin/<name>-<version>/<name>`` (scripts/build-binaries.sh,
scripts/build-training-operator.sh; ``MINISERIES_BIN_CACHE`` moves the cache), or for the
Kubernetes ones from the directory in ``MINISERIES_K8S_BIN``. A missing binary is
:class:`MissingBinary`, which the fixtures turn into a skip naming the script to run, never a fake.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tests.harness.builds import MissingBinary, built

__all__ = ["CACHE", "REPO", "MissingBinary", "built", "find_binary", "kubectl_binary", "pinned_version"]

#: the repository root (this file is tests/harness/binaries.py)
REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("MINISERIES_BIN_CACHE", Path.home() / ".cache" / "miniseries" / "bin"))


def pinned_version(key: str) -> str:
    """A version pinned in scripts/versions.env (``KEY=value  # comment``), the file the build
    scripts source: the tests look for the binaries those scripts cached under that version."""
    for line in (REPO / "scripts" / "versions.env").read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.split("#", 1)[0].strip()
    raise KeyError(f"{key} is not pinned in scripts/versions.env")


def find_binary(name: str) -> Path:
    """The binary, waiting for it while `make test`'s background build may still make it (builds.py)."""
    return built(lambda: _find_binary(name), what=name)


def _find_binary(name: str) -> Path:
    env_dir = os.environ.get("MINISERIES_K8S_BIN")
    candidates = [Path(env_dir) / name] if env_dir else []
    candidates += sorted(CACHE.glob(f"{name}-*/{name}"), reverse=True)
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise MissingBinary(f"{name} not found in {CACHE}/{name}-*/ (run scripts/build-binaries.sh) or $MINISERIES_K8S_BIN")


def kubectl_binary() -> str:
    try:
        return str(find_binary("kubectl"))
    except MissingBinary:
        found = shutil.which("kubectl")
        if found is None:
            raise
        return found
