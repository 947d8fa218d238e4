"""The operator, run with nothing but the chart's ServiceAccount token, reconciles a sweep;
a real Prometheus scrapes it and every operator panel of the dashboards returns data."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.harness.cluster import RESTRICTED
from tests.harness.helm import CHART, helm
from tests.harness.processes import free_port, wait_for
from tests.harness.prometheus import prometheus
from tests.harness.promql import wait_for_panels, wait_for_samples
from tests.integration.test_chart_cluster import kubeconfig, kubectl, names, sa_kubeconfig  # noqa: F401 (fixture)
from tests.support.dashboards import gen

pytestmark = [pytest.mark.cluster, pytest.mark.helm, pytest.mark.prometheus]

NS = "chart-op"
RELEASE = "op"
SA_NAME = f"{RELEASE}-miniseries-operator"
OPERATOR_METRICS = ("miniseries_operator_", "miniseries_sweep_")
#: the RBAC authorizer's refusal, as the API server words it (JSON-escaped quotes in kopf's log lines)
RBAC_DENIED = re.compile(r'is forbidden: User \\*"[^"\\]+\\*" cannot ')


def operator_panels() -> list[tuple[str, str, str]]:
    return [
        (name, title, expr)
        for name, build in gen.DASHBOARDS.items()
        for title, expr in gen.targets_of(build())
        if all(m.startswith(OPERATOR_METRICS) for m in gen.metrics_used(expr))
    ]


def test_operator_with_the_chart_token_reconciles_and_fills_its_panels(kubeconfig: Path, tmp_path: Path) -> None:  # noqa: F811
    kc = kubeconfig
    release = ["--kubeconfig", str(kc), "-n", NS]
    helm("uninstall", RELEASE, *release, "--ignore-not-found", "--wait", check=False)
    # The chart's RBAC and CRDs, no in-cluster replica: the operator runs here, as that ServiceAccount.
    helm("install", RELEASE, str(CHART), *release, "--create-namespace", "--set", "replicaCount=0", "--wait")
    kubectl(kc, "create", "namespace", "chart-sweeps", check=False)
    kubectl(kc, "label", "namespace", "chart-sweeps", "--overwrite", *(f"{k}={v}" for k, v in RESTRICTED.items()))
    token_config = sa_kubeconfig(kc, tmp_path, NS, SA_NAME)
    metrics_port, liveness_port = free_port(), free_port()
    log = (tmp_path / "operator.log").open("w")
    cmd = [sys.executable, "-m", "miniseries.cli", "operator", f"--kubeconfig={token_config}", "--all-namespaces",
           f"--metrics-port={metrics_port}", f"--liveness-port={liveness_port}", "--peering=miniseries",
           f"--store-root={tmp_path.resolve().as_uri()}"]  # store roots are required (the chart's store.roots)  # fmt: skip
    operator = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    operator.log_path = tmp_path / "operator.log"  # type: ignore[attr-defined]  # its end, if a wait sees it exit
    try:
        with prometheus(tmp_path / "prometheus") as prom:
            start = time.time() - 2
            prom.scrape("operator", f"127.0.0.1:{metrics_port}")
            # The example, with a store of this test's own: its /tmp/miniseries-store may hold another
            # run's data on a shared machine, which the operator rightly refuses to adopt.
            sweep_doc = yaml.safe_load((CHART.parents[1] / "examples" / "tiny.yaml").read_text())
            store_uri = (tmp_path / "store").as_uri()
            sweep_doc["spec"]["store"]["uri"] = store_uri
            sweep_doc["spec"]["data"]["shardsUri"] = f"{store_uri}/data/shards"
            sweep_file = tmp_path / "tiny.yaml"
            sweep_file.write_text(yaml.safe_dump(sweep_doc))
            kubectl(kc, "apply", "-n", "chart-sweeps", "-f", str(sweep_file))
            sweep = wait_for(
                "the sweep planned",
                lambda: (s := json.loads(kubectl(kc, "-n", "chart-sweeps", "get", "scalingsweep", "tiny", "-o",
                                                 "json").stdout)).get("status", {}).get("plan") and s,
                90, operator,
            )  # fmt: skip
            assert sweep["status"]["plan"]["runs"], (tmp_path / "operator.log").read_text()[-3000:]
            assert requests.get(f"http://127.0.0.1:{liveness_port}/healthz", timeout=5).status_code == 200
            log_text = (tmp_path / "operator.log").read_text()
            # nothing it does is outside the chart's RBAC (another 403, such as an Event refused in a namespace
            # another test is deleting, which this all-namespaces operator also watches, is not a denial)
            denied = RBAC_DENIED.search(log_text)
            assert denied is None, log_text[max(0, denied.start() - 1500) : denied.end() + 500]
            prom.wait_up("operator")
            assert wait_for_samples(prom.url, 'miniseries_sweep_runs{sweep="tiny"}', start)
            wait_for_panels(
                prom.url, operator_panels(), start, namespace="chart-sweeps", sweep="tiny", run="d2"
            )  # rate() needs 2 scrapes
    finally:
        operator.terminate()
        operator.wait(timeout=30)
        log.close()
        kubectl(kc, "delete", "namespace", "chart-sweeps", "--ignore-not-found", "--wait=false", check=False)
        helm("uninstall", RELEASE, *release, "--ignore-not-found", "--wait", check=False)
    assert names(kc, "clusterrole", "-l", f"app.kubernetes.io/instance={RELEASE}") == ""
