"""operator/Dockerfile builds the image the chart runs: same command, user, ports and version,
and what it installs (miniseries[operator,science], no torch) is all the operator process loads.

No image is built here (tests/container builds and runs it); the Dockerfile is checked
against the chart as rendered by the real helm, and the install set by importing, in a clean
interpreter, every module the operator process uses."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from tests.harness.helm import CHART, by_kind, render

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "operator" / "Dockerfile"


def instruction(name: str) -> str:
    lines = [ln for ln in DOCKERFILE.read_text().splitlines() if ln.startswith(f"{name} ")]
    assert len(lines) == 1, f"{name} in {DOCKERFILE}: {lines}"
    return lines[0][len(name) + 1 :].strip()


def test_dockerfile_runs_what_the_chart_deployment_expects() -> None:
    deployment = by_kind(render(), "Deployment")[0]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # ENTRYPOINT is the chart's command (the chart passes its own args, replacing CMD)
    assert yaml.safe_load(instruction("ENTRYPOINT")) == container["command"]
    user, group = instruction("USER").split(":")
    assert (int(user), int(group)) == (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"])
    exposed = {int(p) for p in instruction("EXPOSE").split()}
    assert exposed == {p["containerPort"] for p in container["ports"]}
    # the image tag defaults to the chart's appVersion: the package version the Dockerfile installs
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    version = tomllib.loads((ROOT / "operator" / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == version
    assert container["image"] == f"miniseries/operator:{version}"
    assert f"-t miniseries/operator:{version} ." in DOCKERFILE.read_text()
    # a read-only root filesystem: everything that writes is pointed at /tmp
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert "MPLCONFIGDIR=/tmp/" in DOCKERFILE.read_text()


def test_the_image_install_set_is_what_the_operator_loads_and_has_no_torch() -> None:
    extras = re.search(r'pyproject_requirements.py "/src/operator/pyproject.toml\[([a-z,]+)\]"', DOCKERFILE.read_text())
    assert extras is not None and set(extras.group(1).split(",")) == {"operator", "science"}
    code = (
        "import sys, importlib.metadata as md\n"
        "import miniseries.cli, miniseries.cli.serve, miniseries.control.io.handlers, miniseries.science.report, miniseries.science.fit\n"
        "assert 'torch' not in sys.modules, 'the operator imported torch'\n"
        "dists = md.packages_distributions()\n"
        "print('\\n'.join(sorted({d for m in list(sys.modules) for d in dists.get(m.split('.')[0], [])})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    loaded = {d.replace("-", "_").lower() for d in out.stdout.split()}
    trainer_side = loaded & {"torch", "tiktoken", "tokenizers", "miniseries_trainer"}
    assert trainer_side == set(), f"the operator loads trainer-side packages: {trainer_side}"
    # and what it does load is what the two extras bring
    assert {"kopf", "kubernetes", "prometheus_client", "numpy", "scipy"} <= loaded  # matplotlib: lazily, for plots
