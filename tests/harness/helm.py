"""Run the real helm binary against the chart (built from its Go module by the test harness)."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "miniseries-operator"
KUBE_VERSION = "1.31.0"  # helm's offline default (1.20) is older than the chart's kubeVersion


def helm_binary() -> str:
    """$MINISERIES_HELM, else the harness's cache (~/.cache/miniseries/bin/helm-*/helm), else PATH."""
    candidates = [os.environ.get("MINISERIES_HELM", "")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.cache/miniseries/bin/helm-*/helm")), reverse=True)
    candidates.append(shutil.which("helm") or "")
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    pytest.skip("no helm binary: run `make deps` (builds it into ~/.cache/miniseries/bin) or set MINISERIES_HELM")


def helm(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def set_flags(values: dict[str, str]) -> list[str]:
    return [f for k, v in values.items() for f in ("--set", f"{k}={v}")]


def render(values: dict[str, str] | None = None, namespace: str = "miniseries", *extra: str) -> list[dict[str, Any]]:
    """`helm template` parsed into objects (CRDs included)."""
    out = helm(
        "template",
        "ms",
        str(CHART),
        "--namespace",
        namespace,
        "--kube-version",
        KUBE_VERSION,
        "--include-crds",
        *set_flags(values or {}),
        *extra,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]
