"""The Grafana dashboards are generated from dashboards/generate.py and read only
metrics the code exports and docs/using.md documents (what the Grafana Foundation SDK adds:
tests/unit/test_dashboard_sdk.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.support.dashboards import ROOT, gen


@pytest.mark.parametrize("name", sorted(gen.DASHBOARDS))
def test_committed_json_is_the_generators_output(name: str) -> None:
    text = gen.render(gen.DASHBOARDS[name])
    for path in (ROOT / "dashboards" / name, ROOT / "charts" / "miniseries-operator" / "dashboards" / name):
        assert path.read_text() == text, f"{path} is stale: run `python dashboards/generate.py`"


def test_check_mode_reports_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in gen.DASHBOARDS:
        (tmp_path / name).write_text("{}\n")
    monkeypatch.setattr(gen, "HERE", tmp_path)
    monkeypatch.setattr(gen, "CHART_DASHBOARDS", tmp_path / "chart")
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0
    assert gen.main(["--check"]) == 0


@pytest.mark.parametrize("name", sorted(gen.DASHBOARDS))
def test_every_panel_queries_and_every_variable_is_defined(name: str) -> None:
    board = gen.DASHBOARDS[name]()
    defined = {v["name"] for v in board["templating"]["list"]} | {"__rate_interval"}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            used = set(re.findall(r"\$\{?(\w+)", target["expr"]))
            assert used <= defined, f"{panel['title']}: undefined variables {used - defined}"
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24


def test_sweep_overview_has_what_the_issue_asks_for() -> None:
    board = gen.sweep_overview()
    variables = {v["name"] for v in board["templating"]["list"]}
    assert {"sweep", "depth"} <= variables
    exprs = " ".join(expr for _, expr in gen.targets_of(board))
    for metric in (
        "miniseries_sweep_runs",
        "miniseries_train_loss",
        "miniseries_train_tokens_total",
        "miniseries_train_tokens_per_second",
        "miniseries_train_mfu",
        "miniseries_peak_memory_bytes",
        "miniseries_sweep_cost_usd",
        "miniseries_train_eta_seconds",
    ):
        assert metric in exprs
    xy = next(p for p in board["panels"] if p["type"] == "xychart")
    assert {s["x"]["matcher"]["options"] for s in xy["options"]["series"]} >= {f"tokens d{d}" for d in range(10, 21)}


def test_metrics_used_reads_families() -> None:
    expr = "histogram_quantile(0.9, sum by (le) (rate(miniseries_x_seconds_bucket[5m]))) / miniseries_y_total"
    assert gen.metrics_used(expr) == {"miniseries_x_seconds", "miniseries_y_total"}


def _dashboard_metrics() -> set[str]:
    return {
        m for build in gen.DASHBOARDS.values() for _, expr in gen.targets_of(build()) for m in gen.metrics_used(expr)
    }


def test_every_dashboard_metric_is_documented_in_the_readme() -> None:
    documented = set(gen.readme_metric_names(gen.METRICS_PAGE.read_text()))
    assert _dashboard_metrics() - documented == set()


def test_dashboards_read_only_exported_metrics() -> None:
    exported = {m.name for m in gen.exported_metrics()}
    assert _dashboard_metrics() - exported == set()


def test_readme_table_is_generated_from_the_code() -> None:
    exported = gen.exported_metrics()
    text = gen.METRICS_PAGE.read_text()
    assert gen.readme_table(exported) in text, (
        "docs/using.md's metrics table is stale: run `python dashboards/generate.py --docs`"
    )


def test_dashboard_json_is_valid_for_the_chart_configmap() -> None:
    # A ConfigMap holds at most 1 MiB; the sidecar needs a uid and title.
    for name in gen.DASHBOARDS:
        text = (ROOT / "dashboards" / name).read_text()
        board = json.loads(text)
        assert board["uid"] and board["title"] and len(text.encode()) < 1 << 20


_SELECTION = re.compile(r"\b(miniseries_[a-z0-9_]+)(\{[^}]*\})?")


@pytest.mark.parametrize("name", sorted(gen.DASHBOARDS))
def test_every_query_and_variable_is_filtered_by_namespace_and_sweep(name: str) -> None:
    """Two teams' sweeps of one name never mix (issue 28 item 9): every metric every panel reads is
    selected by the sweep's namespace and its name, and the sweep variable lists the namespace's."""
    board = gen.DASHBOARDS[name]()
    unfiltered = [
        f"{title}: {metric}{selector or ''}"
        for title, expr in gen.targets_of(board)
        for metric, selector in _SELECTION.findall(expr)
        if 'sweep_namespace=~"$namespace"' not in selector or 'sweep=~"$sweep"' not in selector
    ]
    assert unfiltered == []
    variables = board["templating"]["list"]
    names = [v["name"] for v in variables]
    assert names[:3] == ["datasource", "namespace", "sweep"]
    assert variables[1]["query"]["query"] == "label_values(miniseries_train_step, sweep_namespace)"
    for v in variables[2:]:
        assert 'sweep_namespace=~"$namespace"' in v["query"]["query"], v["query"]


def test_no_metric_has_a_label_prometheus_renames_on_scrape() -> None:
    """`namespace` (and job, instance, pod, container) are the target's labels: a scraped one of the same
    name becomes exported_<name> without honor_labels, so no metric of ours may carry one."""
    target_labels = {"namespace", "job", "instance", "pod", "container", "service", "endpoint"}
    for doc in gen.exported_metrics():
        assert not target_labels & set(doc.labels), doc
        assert "sweep_namespace" in doc.labels or not {"sweep"} & set(doc.labels), doc
