"""Generate the Grafana dashboards from code: `python dashboards/generate.py`.

Two dashboards, written as JSON next to this file and into the Helm chart (which
ships them as ConfigMaps for the Grafana sidecar):

    miniseries-sweep.json   one sweep: runs done/total, loss vs tokens per depth,
                            tokens/s and MFU per run, GPU memory, cost so far, ETA,
                            and the operator's own health
    miniseries-run.json     one run: loss, learning rate, throughput, MFU, memory
                            per rank, progress and the evaluation scores

Panels are a few plain functions over PromQL strings, so changing a dashboard is
changing a line here and re-running this file; tests/unit/test_dashboards.py fails
when the committed JSON is not this file's output, and the Prometheus integration
test runs every expression below against a real scrape of the trainer and the
operator. Metric names are the contract of DESIGN.md: `miniseries_*`, labelled
sweep, depth, run (and rank where per-rank).

    python dashboards/generate.py            write the JSON files
    python dashboards/generate.py --check    exit 1 when a committed file is stale
    python dashboards/generate.py --readme   README's metrics table from the code's metrics
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from miniseries.api.spec import MAX_DEPTH, MIN_DEPTH, RunState
from miniseries.contract.metric_doc import MetricDoc

HERE = Path(__file__).resolve().parent
CHART_DASHBOARDS = HERE.parent / "charts" / "miniseries-operator" / "dashboards"

# Grafana substitutes these; the tests do the same with values from a real scrape.
SWEEP = 'sweep=~"$sweep"'
SWEEP_DEPTH = 'sweep=~"$sweep", depth=~"$depth"'
SWEEP_RUN = 'sweep=~"$sweep", run=~"$run"'
RATE = "$__rate_interval"

Panel = dict[str, Any]


def _target(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False) -> dict[str, Any]:
    target: dict[str, Any] = {
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "expr": expr,
        "legendFormat": legend or "__auto",
        "refId": ref,
    }
    if instant:
        target.update({"instant": True, "range": False, "format": "table"})
    return target


def _panel(kind: str, title: str, targets: list[dict[str, Any]], unit: str, description: str) -> Panel:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }


def stat(title: str, expr: str, unit: str = "none", description: str = "", decimals: int | None = None) -> Panel:
    panel = _panel("stat", title, [_target(expr)], unit, description)
    panel["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "value",
    }
    if decimals is not None:
        panel["fieldConfig"]["defaults"]["decimals"] = decimals
    panel["gridPos"] = {"w": 4, "h": 4}
    return panel


def timeseries(title: str, expr: str, legend: str, unit: str = "none", description: str = "", w: int = 12) -> Panel:
    panel = _panel("timeseries", title, [_target(expr, legend)], unit, description)
    panel["options"] = {"legend": {"displayMode": "table", "placement": "right", "calcs": ["lastNotNull"]}}
    panel["fieldConfig"]["defaults"]["custom"] = {"lineWidth": 1, "showPoints": "never"}
    panel["gridPos"] = {"w": w, "h": 8}
    return panel


def bargauge(title: str, expr: str, legend: str, unit: str, description: str = "") -> Panel:
    panel = _panel("bargauge", title, [_target(expr, legend)], unit, description)
    panel["options"] = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "horizontal",
        "displayMode": "gradient",
    }
    panel["fieldConfig"]["defaults"].update({"min": 0, "max": 1} if unit == "percentunit" else {})
    panel["gridPos"] = {"w": 12, "h": 8}
    return panel


def loss_vs_tokens(title: str, selector: str) -> Panel:
    """Loss against tokens seen, one series per depth: Grafana's XY chart over two queries.

    Prometheus keeps series against time; the two queries are joined on time and the
    chart pairs each depth's tokens (x) with its loss (y). The pairs are generated for
    every depth the API allows, so any sweep's depths find theirs.
    """
    targets = [
        _target(f"max by (depth) (miniseries_train_tokens_total{{{selector}}})", "tokens d{{depth}}", "A"),
        _target(f"max by (depth) (miniseries_train_loss{{{selector}}})", "loss d{{depth}}", "B"),
    ]
    panel = _panel("xychart", title, targets, "none", "Training loss against tokens seen, per depth.")
    panel["transformations"] = [{"id": "joinByField", "options": {"byField": "Time", "mode": "outer"}}]
    panel["options"] = {
        "seriesMapping": "manual",
        "series": [{"name": f"d{d}", "x": f"tokens d{d}", "y": f"loss d{d}"} for d in range(MIN_DEPTH, MAX_DEPTH + 1)],
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
    }
    panel["fieldConfig"]["defaults"]["custom"] = {"show": "lines", "lineWidth": 1}
    panel["gridPos"] = {"w": 12, "h": 10}
    return panel


def info_table(title: str, expr: str) -> Panel:
    panel = _panel("table", title, [_target(expr, instant=True)], "none", "Labels of the run's info metric.")
    panel["transformations"] = [
        {"id": "organize", "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}}}
    ]
    panel["gridPos"] = {"w": 24, "h": 4}
    return panel


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "gridPos": {"w": 24, "h": 1}}


def _variable(name: str, label: str, query: str, *, multi: bool) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,  # on time-range change: new runs appear without a reload
        "sort": 3,  # numerical ascending: d2 < d10
        "multi": multi,
        "includeAll": multi,
        "allValue": ".*" if multi else None,
        "current": {},
        "options": [],
    }


def _layout(panels: list[Panel]) -> list[Panel]:
    """Flow panels left to right, wrapping at Grafana's 24 columns."""
    x = y = row_height = 0
    for i, panel in enumerate(panels):
        pos = panel["gridPos"]
        if x + pos["w"] > 24:
            x, y, row_height = 0, y + row_height, 0
        pos.update({"x": x, "y": y})
        panel["id"] = i + 1
        x += pos["w"]
        row_height = max(row_height, pos["h"])
    return panels


def dashboard(uid: str, title: str, description: str, variables: list[dict[str, Any]], panels: list[Panel]) -> dict:
    datasource = {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "options": [],
        "refresh": 1,
    }
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["miniseries"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "templating": {"list": [datasource, *variables]},
        "annotations": {"list": []},
        "links": [{"title": "miniseries dashboards", "type": "dashboards", "tags": ["miniseries"], "asDropdown": True}],
        "panels": _layout(panels),
    }


def sweep_overview() -> dict:
    done = RunState.Succeeded.value
    variables = [
        _variable("sweep", "Sweep", "label_values(miniseries_train_step, sweep)", multi=False),
        _variable("depth", "Depth", 'label_values(miniseries_train_step{sweep=~"$sweep"}, depth)', multi=True),
    ]
    panels = [
        row("Sweep"),
        stat("Runs done", f'sum(miniseries_sweep_runs{{{SWEEP}, state="{done}"}})', description="Runs Succeeded."),
        stat("Runs total", f"sum(miniseries_sweep_runs{{{SWEEP}}})", description="Runs in the plan, any state."),
        stat("Cost so far", f"sum(miniseries_sweep_cost_usd{{{SWEEP}}})", "currencyUSD", "GPU-hours x price.", 2),
        stat(
            "ETA (longest run)",
            f"max(miniseries_train_eta_seconds{{{SWEEP_DEPTH}}})",
            "s",
            "Time left for the slowest running run at its current throughput.",
        ),
        stat("Tokens trained", f"sum(miniseries_train_tokens_total{{{SWEEP_DEPTH}}})", "short"),
        stat("FLOPs spent", f"sum(miniseries_train_flops_total{{{SWEEP_DEPTH}}})", "short"),
        bargauge(
            "Runs by state",
            f"sum by (state) (miniseries_sweep_runs{{{SWEEP}}})",
            "{{state}}",
            "none",
            "What the operator reports for each run of the sweep.",
        ),
        bargauge(
            "Progress per run",
            f"max by (run) (miniseries_train_step{{{SWEEP_DEPTH}}})"
            f" / max by (run) (miniseries_train_steps_planned{{{SWEEP_DEPTH}}})",
            "{{run}}",
            "percentunit",
            "Optimizer steps done over steps planned.",
        ),
        row("Training"),
        loss_vs_tokens("Loss vs tokens per depth", SWEEP_DEPTH),
        timeseries("Loss per run", f"max by (run) (miniseries_train_loss{{{SWEEP_DEPTH}}})", "{{run}}"),
        timeseries(
            "Tokens/s per run",
            f"max by (run) (miniseries_train_tokens_per_second{{{SWEEP_DEPTH}}})",
            "{{run}}",
            "short",
            "Training throughput of the whole run (all ranks).",
        ),
        timeseries(
            "MFU per run",
            f"max by (run) (miniseries_train_mfu{{{SWEEP_DEPTH}}})",
            "{{run}}",
            "percentunit",
            "Model FLOPs utilisation: achieved / peak FLOPs.",
        ),
        timeseries(
            "GPU memory (peak) per run and rank",
            f"max by (run, rank) (miniseries_peak_memory_bytes{{{SWEEP_DEPTH}}})",
            "{{run}} rank {{rank}}",
            "bytes",
        ),
        timeseries("ETA per run", f"max by (run) (miniseries_train_eta_seconds{{{SWEEP_DEPTH}}})", "{{run}}", "s"),
        row("Evaluation"),
        timeseries("Validation bits per byte", f"max by (run) (miniseries_val_bpb{{{SWEEP_DEPTH}}})", "{{run}}"),
        timeseries("CORE score", f"max by (run) (miniseries_core_score{{{SWEEP_DEPTH}}})", "{{run}}"),
        row("Operator"),
        timeseries(
            "Reconciles/s",
            f"sum by (namespace) (rate(miniseries_operator_reconciles_total[{RATE}]))",
            "{{namespace}}",
            "ops",
            w=8,
        ),
        timeseries(
            "Reconcile p95",
            f"histogram_quantile(0.95, sum by (le) (rate(miniseries_operator_reconcile_duration_seconds_bucket[{RATE}])))",
            "p95",
            "s",
            w=8,
        ),
        timeseries(
            "Jobs created",
            "sum(miniseries_operator_jobs_created_total)",
            "jobs",
            "short",
            "PyTorchJobs and tokenizer Jobs the operator created since it started.",
            w=8,
        ),
        timeseries(
            "Operator errors/s",
            f"sum(rate(miniseries_operator_errors_total[{RATE}]))",
            "errors",
            "ops",
            "Handler errors (kopf retries them); anything above zero is worth a look at the Events.",
            w=24,
        ),
    ]
    return dashboard(
        "miniseries-sweep",
        "miniseries / sweep",
        "One ScalingSweep: progress, cost, loss against tokens per depth, throughput, memory, operator health.",
        variables,
        panels,
    )


def run_drilldown() -> dict:
    variables = [
        _variable("sweep", "Sweep", "label_values(miniseries_train_step, sweep)", multi=False),
        _variable("run", "Run", 'label_values(miniseries_train_step{sweep=~"$sweep"}, run)', multi=False),
    ]
    panels = [
        info_table("Run", f"miniseries_train_info{{{SWEEP_RUN}}}"),
        stat("Step", f"max(miniseries_train_step{{{SWEEP_RUN}}})"),
        stat("Steps planned", f"max(miniseries_train_steps_planned{{{SWEEP_RUN}}})"),
        stat("ETA", f"max(miniseries_train_eta_seconds{{{SWEEP_RUN}}})", "s"),
        stat("Tokens", f"max(miniseries_train_tokens_total{{{SWEEP_RUN}}})", "short"),
        stat("Val bpb", f"max(miniseries_val_bpb{{{SWEEP_RUN}}})", decimals=4),
        stat("CORE", f"max(miniseries_core_score{{{SWEEP_RUN}}})", decimals=4),
        timeseries("Loss", f"max(miniseries_train_loss{{{SWEEP_RUN}}})", "loss"),
        timeseries("Learning rate", f"max(miniseries_train_lr{{{SWEEP_RUN}}})", "lr"),
        timeseries("Tokens/s", f"max(miniseries_train_tokens_per_second{{{SWEEP_RUN}}})", "tokens/s", "short"),
        timeseries("MFU", f"max(miniseries_train_mfu{{{SWEEP_RUN}}})", "MFU", "percentunit"),
        timeseries(
            "Peak memory per rank",
            f"max by (rank) (miniseries_peak_memory_bytes{{{SWEEP_RUN}}})",
            "rank {{rank}}",
            "bytes",
        ),
        timeseries(
            "FLOPs/s",
            f"max(rate(miniseries_train_flops_total{{{SWEEP_RUN}}}[{RATE}]))",
            "FLOPs/s",
            "short",
            "Model FLOPs per second, from the FLOPs counter.",
        ),
    ]
    return dashboard(
        "miniseries-run",
        "miniseries / run",
        "One training run: loss, learning rate, throughput, MFU, memory per rank, evaluation.",
        variables,
        panels,
    )


DASHBOARDS = {"miniseries-sweep.json": sweep_overview, "miniseries-run.json": run_drilldown}


def render(build: Any) -> str:
    return json.dumps(build(), indent=2) + "\n"


def targets_of(board: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel."""
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]


_METRIC = re.compile(r"\bminiseries_[a-z0-9_]+")


def metrics_used(expr: str) -> set[str]:
    """Metric names an expression reads (histogram series count as their family's)."""
    return {name.removesuffix("_bucket") for name in _METRIC.findall(expr)}


# Where the code declares its metrics: prometheus_client objects at module level.
METRIC_MODULES = ("miniseries_trainer.metrics", "miniseries.control.metrics")
README = HERE.parent / "README.md"
README_BEGIN, README_END = "<!-- metrics:begin -->", "<!-- metrics:end -->"


def exported_metrics(modules: tuple[str, ...] = METRIC_MODULES) -> list[MetricDoc]:
    """The miniseries_* metrics the code declares, from each module's `METRICS` list.

    A `METRICS` item is a `miniseries.contract.metric_doc.MetricDoc`. Raises ModuleNotFoundError
    when a module is missing, so a caller can tell "not written yet" from "written and wrong".
    """
    found: dict[str, MetricDoc] = {}
    for module_name in modules:
        module = importlib.import_module(module_name)
        for doc in module.METRICS:
            found[doc.name] = doc
    return list(found.values())  # code order: trainer, then operator


def readme_table(metrics: list[MetricDoc]) -> str:
    rows = ["| metric | type | labels | meaning |", "| --- | --- | --- | --- |"]
    rows += [f"| `{m.name}` | {m.type} | {', '.join(m.labels)} | {m.help} |" for m in metrics]
    return "\n".join(rows)


def readme_metric_names(text: str) -> list[str]:
    """Metric names listed in the README's metrics table."""
    table = text.split(README_BEGIN, 1)[1].split(README_END, 1)[0]
    return re.findall(r"^\| `(miniseries_[a-z0-9_]+)`", table, flags=re.MULTILINE)


def write_readme_table(metrics: list[MetricDoc]) -> None:
    text = README.read_text()
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    README.write_text(f"{head}{README_BEGIN}\n{readme_table(metrics)}\n{README_END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when a committed file differs from the output")
    parser.add_argument("--readme", action="store_true", help="rewrite README.md's metrics table from the code")
    args = parser.parse_args(argv)
    if args.readme:
        write_readme_table(exported_metrics())
        return 0
    stale = []
    for name, build in DASHBOARDS.items():
        text = render(build)
        for path in (HERE / name, CHART_DASHBOARDS / name):
            if args.check:
                if not path.exists() or path.read_text() != text:
                    stale.append(str(path))
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if stale:
        print("stale, run `python dashboards/generate.py`:\n  " + "\n  ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
