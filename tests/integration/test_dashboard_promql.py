"""Every dashboard expression is valid PromQL, checked by Prometheus's own promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.harness.promql import substitute
from tests.support.dashboards import gen

pytestmark = pytest.mark.prometheus


def test_promtool_parses_every_panel_expression(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("no promtool: `make deps` installs the prometheus package")
    rules = [
        {
            "record": f"dashboard:{stem.replace('-', '_')}:{i}",
            "expr": substitute(expr, namespace="ns", sweep="tiny", run="d2"),
        }
        for name, build in gen.DASHBOARDS.items()
        for stem in [name.removesuffix(".json")]
        for i, (_, expr) in enumerate(gen.targets_of(build()))
    ]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout
    # A broken expression is caught: the check can fail.
    path.write_text(yaml.safe_dump({"groups": [{"name": "x", "rules": [{"record": "x:y", "expr": "sum by (("}]}]}))
    bad = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
