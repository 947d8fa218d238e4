"""Generate the Grafana dashboards from code: `python dashboards/generate.py`.

Two dashboards, written as JSON next to this file and into the Helm chart (which
ships them as ConfigMaps for the Grafana sidecar):

    miniseries-sweep.json   one sweep: runs done/total, loss vs tokens per depth,
                            tokens/s and MFU per run, GPU memory, cost so far, ETA,
                            and the operator's own health
    miniseries-run.json     one run: loss, learning rate, throughput, MFU, memory
                            per rank, progress and the evaluation scores

The dashboards are built with Grafana's own dashboards-as-code library, the Grafana
Foundation SDK (`grafana-foundation-sdk` on PyPI, generated from Grafana's schemas; pinned
in requirements-dev.txt: it is a development tool, not a dependency of the operator).
Panels are a few plain functions over PromQL strings, so changing a dashboard is
changing a line here and re-running this file (`make dashboards`); tests/unit/test_dashboards.py fails
when the committed JSON is not this file's output, and the Prometheus integration
test runs every expression below against a real scrape of the trainer and the
operator. Metric names are the contract of DESIGN.md: `miniseries_*`, labelled
sweep_namespace, sweep, depth, run (and rank where per-rank).

Per namespace: two teams may run sweeps of one name (the shipped example's `miniseries`), so
every dashboard selects a namespace first and a sweep within it, and every query filters by
both. The label is `sweep_namespace`, on the trainer's series and the operator's alike: the
`namespace` Prometheus attaches to a target is the scraped pod's (the operator's own namespace
for the operator's series), and a scraped `namespace` label would be renamed `exported_namespace`.

    python dashboards/generate.py            write the JSON files
    python dashboards/generate.py --check    exit 1 when a committed file is stale
    python dashboards/generate.py --docs     the metrics table of docs/using.md from the code's metrics
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import bargauge, prometheus, stat, table, timeseries, xychart
from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as prometheus_models
from grafana_foundation_sdk.models import xychart as xm

from miniseries.api.spec import MAX_DEPTH, MIN_DEPTH, RunState
from miniseries.contract.metric_doc import MetricDoc

HERE = Path(__file__).resolve().parent
CHART_DASHBOARDS = HERE.parent / "charts" / "miniseries-operator" / "dashboards"

# Grafana substitutes these; the tests do the same with values from a real scrape.
SWEEP = 'sweep_namespace=~"$namespace", sweep=~"$sweep"'
SWEEP_DEPTH = f'{SWEEP}, depth=~"$depth"'
SWEEP_RUN = f'{SWEEP}, run=~"$run"'
RATE = "$__rate_interval"

#: Every query goes to the Prometheus the dashboard's `datasource` variable picks.
PROMETHEUS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
#: The Grafana release whose schemas the installed SDK was generated from (its version is
#: `<build>!<grafana version>`): the panels' pluginVersion.
GRAFANA_VERSION = metadata.version("grafana-foundation-sdk").rpartition("!")[2]
#: Grafana's grid is 24 columns wide.
GRID_COLUMNS = 24

Panel = cogbuilder.Builder[dm.Panel] | cogbuilder.Builder[dm.RowPanel]


def query(expr: str, legend: str = "", ref: str = "A") -> prometheus.Dataquery:
    return prometheus.Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref).datasource(PROMETHEUS)


def last_value() -> cb.ReduceDataOptions:
    return cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def stat_panel(title: str, expr: str, unit: str = "none", description: str = "", decimals: int | None = None) -> Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .with_target(query(expr))
        .unit(unit)
        .reduce_options(last_value())
        .color_mode(common.BigValueColorMode.VALUE)
        .span(4)
        .height(4)
    )
    return panel if decimals is None else panel.decimals(decimals)


def timeseries_panel(
    title: str, expr: str, legend: str, unit: str = "none", description: str = "", w: int = 12
) -> Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .with_target(query(expr, legend))
        .unit(unit)
        .legend(
            cb.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.RIGHT)
            .calcs(["lastNotNull"])
            .show_legend(True)  # the SDK's model defaults to a hidden legend
        )
        .line_width(1)
        .show_points(common.VisibilityMode.NEVER)
        .span(w)
        .height(8)
    )


def forecast_vs_actual(title: str) -> Panel:
    """Each run's forecast final val bpb (the operator's, with its 95% bounds) against the val bpb it
    actually reached (the trainer's, at the end of training): forecast lines converge on the marker."""
    return (
        timeseries_panel(
            title,
            f'max by (run) (miniseries_run_forecast_val_bpb{{{SWEEP}, bound="estimate"}})',
            "{{run}} forecast",
            description="The operator's forecast of each run's final validation bits per byte while it trains "
            "(status.runs[].forecast, every 5% of its steps; the interval ignores model error and is too narrow), "
            "and the value the run reached at the end of training.",
        )
        .with_target(
            query(
                f'min by (run) (miniseries_run_forecast_val_bpb{{{SWEEP}, bound="low"}})', "{{run}} forecast low", "B"
            )
        )
        .with_target(
            query(
                f'max by (run) (miniseries_run_forecast_val_bpb{{{SWEEP}, bound="high"}})', "{{run}} forecast high", "C"
            )
        )
        .with_target(query(f"max by (run) (miniseries_val_bpb{{{SWEEP_DEPTH}}})", "{{run}} actual", "D"))
        .span(24)
    )


def bargauge_panel(title: str, expr: str, legend: str, unit: str, description: str = "") -> Panel:
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .with_target(query(expr, legend))
        .unit(unit)
        .reduce_options(last_value())
        .orientation(common.VizOrientation.HORIZONTAL)
        .display_mode(common.BarGaugeDisplayMode.GRADIENT)
        .span(12)
        .height(8)
    )
    return panel.min(0).max(1) if unit == "percentunit" else panel


def _by_name(name: str) -> xychart.MatcherConfig:
    return xychart.MatcherConfig().id("byName").options(name)


def loss_vs_tokens(title: str, selector: str) -> Panel:
    """Loss against tokens seen, one series per depth: Grafana's XY chart over two queries.

    Prometheus keeps series against time; the two queries are joined on time into one frame
    (index 0) and the chart pairs each depth's tokens (x) with its loss (y). The pairs are
    generated for every depth the API allows, so any sweep's depths find theirs.
    """
    series = [
        xychart.XYSeriesConfig()
        .name(xychart.XychartXYSeriesConfigName().fixed(f"d{d}"))
        .frame(xychart.XychartXYSeriesConfigFrame().matcher(xychart.MatcherConfig().id("byIndex").options(0)))
        .x(xychart.XychartXYSeriesConfigX().matcher(_by_name(f"tokens d{d}")))
        .y(xychart.XychartXYSeriesConfigY().matcher(_by_name(f"loss d{d}")))
        for d in range(MIN_DEPTH, MAX_DEPTH + 1)
    ]
    return (
        xychart.Panel()
        .title(title)
        .description("Training loss against tokens seen, per depth.")
        .datasource(PROMETHEUS)
        .with_target(query(f"max by (depth) (miniseries_train_tokens_total{{{selector}}})", "tokens d{{depth}}", "A"))
        .with_target(query(f"max by (depth) (miniseries_train_loss{{{selector}}})", "loss d{{depth}}", "B"))
        .with_transformation(
            dm.DataTransformerConfig(id_val="joinByField", options={"byField": "Time", "mode": "outer"})
        )
        .mapping(xm.SeriesMapping.MANUAL)
        .series(series)
        .legend(
            cb.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .show(xm.XYShowMode.LINES)
        .line_width(1)
        .unit("none")
        .span(12)
        .height(10)
    )


def info_table(title: str, expr: str) -> Panel:
    """The labels of an info metric, one column each (its value, time and name hidden)."""
    hidden = {"Time": True, "Value": True, "__name__": True}
    return (
        table.Panel()
        .title(title)
        .description("Labels of the run's info metric.")
        .datasource(PROMETHEUS)
        .with_target(query(expr).instant().format(prometheus_models.PromQueryFormat.TABLE))
        .with_transformation(dm.DataTransformerConfig(id_val="organize", options={"excludeByName": hidden}))
        .unit("none")
        .span(24)
        .height(4)
    )


def row(title: str) -> Panel:
    return db.Row(title).collapsed(False).grid_pos(dm.GridPos(h=1, w=GRID_COLUMNS))


def _variable(name: str, label: str, expr: str, *, multi: bool) -> db.QueryVariable:
    variable = (
        db.QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query({"query": expr, "refId": f"{name}-values"})
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)  # new runs appear without a reload
        .sort(dm.VariableSort.NUMERICAL_ASC)  # d2 < d10
        .multi(multi)
        .include_all(multi)
    )
    return variable.all_value(".*") if multi else variable


def _place(panels: list[Panel]) -> None:
    """Flow panels left to right, wrapping before a panel would cross the 24th column, and number them.

    (The SDK's own placement wraps only once a line is full, so a 12-wide panel after 16
    columns would stick out of the grid.)
    """
    x = y = line_height = 0
    for i, panel in enumerate(panels, start=1):
        pos = panel.build().grid_pos or dm.GridPos()
        if x + pos.w > GRID_COLUMNS:
            x, y, line_height = 0, y + line_height, 0
        panel.grid_pos(dm.GridPos(h=pos.h, w=pos.w, x=x, y=y)).id(i)
        x += pos.w
        line_height = max(line_height, pos.h)


def _mark_schema_version(panel: Panel) -> None:
    """Say which Grafana's panel schema the options follow (the SDK's builders have no setter for it).

    Without a pluginVersion Grafana treats a panel as written before any migration and migrates
    its options again: an XY chart's series (11.1+ format) would be rewritten as if they were the
    10.x format and lose their fields.
    """
    model = panel.build()  # the builder's own model object
    if isinstance(model, dm.Panel):
        model.plugin_version = GRAFANA_VERSION


def dashboard(uid: str, title: str, description: str, variables: list[db.QueryVariable], panels: list[Panel]) -> dict:
    """The dashboard as Grafana's JSON model (a plain dict: what the chart ships and the tests read)."""
    board = (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["miniseries"])
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .refresh("30s")
        .timezone("browser")
        .link(
            db.DashboardLink("miniseries dashboards")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(["miniseries"])
            .as_dropdown(True)
        )
        .with_variable(db.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
    )
    for variable in variables:
        board = board.with_variable(variable)
    _place(panels)
    for panel in panels:
        _mark_schema_version(panel)
        board = board.with_row(panel) if isinstance(panel, db.Row) else board.with_panel(panel)
    return json.loads(json.dumps(board.build(), cls=JSONEncoder))


def namespace_and_sweep() -> list[db.QueryVariable]:
    """The namespace, then a sweep of that namespace: the two always go together."""
    return [
        _variable("namespace", "Namespace", "label_values(miniseries_train_step, sweep_namespace)", multi=False),
        _variable(
            "sweep", "Sweep", 'label_values(miniseries_train_step{sweep_namespace=~"$namespace"}, sweep)', multi=False
        ),
    ]


def sweep_overview() -> dict:
    done = RunState.Succeeded.value
    variables = [
        *namespace_and_sweep(),
        _variable("depth", "Depth", f"label_values(miniseries_train_step{{{SWEEP}}}, depth)", multi=True),
    ]
    panels = [
        row("Sweep"),
        stat_panel(
            "Runs done", f'sum(miniseries_sweep_runs{{{SWEEP}, state="{done}"}})', description="Runs Succeeded."
        ),
        stat_panel("Runs total", f"sum(miniseries_sweep_runs{{{SWEEP}}})", description="Runs in the plan, any state."),
        stat_panel("Cost so far", f"sum(miniseries_sweep_cost_usd{{{SWEEP}}})", "currencyUSD", "GPU-hours x price.", 2),
        stat_panel(
            "ETA (longest run)",
            f"max(miniseries_train_eta_seconds{{{SWEEP_DEPTH}}})",
            "s",
            "Time left for the slowest running run at its current throughput.",
        ),
        stat_panel("Tokens trained", f"sum(miniseries_train_tokens_total{{{SWEEP_DEPTH}}})", "short"),
        stat_panel("FLOPs spent", f"sum(miniseries_train_flops_total{{{SWEEP_DEPTH}}})", "short"),
        bargauge_panel(
            "Runs by state",
            f"sum by (state) (miniseries_sweep_runs{{{SWEEP}}})",
            "{{state}}",
            "none",
            "What the operator reports for each run of the sweep.",
        ),
        bargauge_panel(
            "Progress per run",
            f"max by (run) (miniseries_train_step{{{SWEEP_DEPTH}}})"
            f" / max by (run) (miniseries_train_steps_planned{{{SWEEP_DEPTH}}})",
            "{{run}}",
            "percentunit",
            "Optimizer steps done over steps planned.",
        ),
        row("Training"),
        loss_vs_tokens("Loss vs tokens per depth", SWEEP_DEPTH),
        timeseries_panel("Loss per run", f"max by (run) (miniseries_train_loss{{{SWEEP_DEPTH}}})", "{{run}}"),
        timeseries_panel(
            "Tokens/s per run",
            f"max by (run) (miniseries_train_tokens_per_second{{{SWEEP_DEPTH}}})",
            "{{run}}",
            "short",
            "Training throughput of the whole run (all ranks).",
        ),
        timeseries_panel(
            "MFU per run",
            f"max by (run) (miniseries_train_mfu{{{SWEEP_DEPTH}}})",
            "{{run}}",
            "percentunit",
            "Model FLOPs utilisation: achieved / peak FLOPs.",
        ),
        timeseries_panel(
            "GPU memory (peak) per run and rank",
            f"max by (run, rank) (miniseries_peak_memory_bytes{{{SWEEP_DEPTH}}})",
            "{{run}} rank {{rank}}",
            "bytes",
        ),
        timeseries_panel(
            "ETA per run", f"max by (run) (miniseries_train_eta_seconds{{{SWEEP_DEPTH}}})", "{{run}}", "s"
        ),
        row("Evaluation"),
        timeseries_panel("Validation bits per byte", f"max by (run) (miniseries_val_bpb{{{SWEEP_DEPTH}}})", "{{run}}"),
        timeseries_panel("CORE score", f"max by (run) (miniseries_core_score{{{SWEEP_DEPTH}}})", "{{run}}"),
        forecast_vs_actual("Forecast vs actual val bpb"),
        row("Operator"),
        timeseries_panel(
            "Reconciles/s",
            f"sum(rate(miniseries_operator_reconciles_total{{{SWEEP}}}[{RATE}]))",
            "reconciles",
            "ops",
            w=8,
        ),
        timeseries_panel(
            "Reconcile p95",
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(miniseries_operator_reconcile_duration_seconds_bucket{{{SWEEP}}}[{RATE}])))",
            "p95",
            "s",
            w=8,
        ),
        timeseries_panel(
            "Jobs created",
            f"sum(miniseries_operator_jobs_created_total{{{SWEEP}}})",
            "jobs",
            "short",
            "Run jobs and tokenizer Jobs the operator created for this sweep since it started.",
            w=8,
        ),
        timeseries_panel(
            "Operator errors/s",
            f"sum(rate(miniseries_operator_errors_total{{{SWEEP}}}[{RATE}]))",
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
        *namespace_and_sweep(),
        _variable("run", "Run", f"label_values(miniseries_train_step{{{SWEEP}}}, run)", multi=False),
    ]
    panels = [
        info_table("Run", f"miniseries_train_info{{{SWEEP_RUN}}}"),
        stat_panel("Step", f"max(miniseries_train_step{{{SWEEP_RUN}}})"),
        stat_panel("Steps planned", f"max(miniseries_train_steps_planned{{{SWEEP_RUN}}})"),
        stat_panel("ETA", f"max(miniseries_train_eta_seconds{{{SWEEP_RUN}}})", "s"),
        stat_panel("Tokens", f"max(miniseries_train_tokens_total{{{SWEEP_RUN}}})", "short"),
        stat_panel("Val bpb", f"max(miniseries_val_bpb{{{SWEEP_RUN}}})", decimals=4),
        stat_panel("CORE", f"max(miniseries_core_score{{{SWEEP_RUN}}})", decimals=4),
        timeseries_panel("Loss", f"max(miniseries_train_loss{{{SWEEP_RUN}}})", "loss"),
        timeseries_panel("Learning rate", f"max(miniseries_train_lr{{{SWEEP_RUN}}})", "lr"),
        timeseries_panel("Tokens/s", f"max(miniseries_train_tokens_per_second{{{SWEEP_RUN}}})", "tokens/s", "short"),
        timeseries_panel("MFU", f"max(miniseries_train_mfu{{{SWEEP_RUN}}})", "MFU", "percentunit"),
        timeseries_panel(
            "Peak memory per rank",
            f"max by (rank) (miniseries_peak_memory_bytes{{{SWEEP_RUN}}})",
            "rank {{rank}}",
            "bytes",
        ),
        timeseries_panel(
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
METRIC_MODULES = ("miniseries_trainer.metrics", "miniseries.control.io.operator_metrics")
# The page whose "Metrics" section holds the table (the README's until the docs had pages).
METRICS_PAGE = HERE.parent / "docs" / "using.md"
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
    """Metric names listed in the metrics table of `text` (docs/using.md)."""
    table = text.split(README_BEGIN, 1)[1].split(README_END, 1)[0]
    return re.findall(r"^\| `(miniseries_[a-z0-9_]+)`", table, flags=re.MULTILINE)


def write_readme_table(metrics: list[MetricDoc]) -> None:
    text = METRICS_PAGE.read_text()
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    METRICS_PAGE.write_text(f"{head}{README_BEGIN}\n{readme_table(metrics)}\n{README_END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="exit 1 when a committed file differs from the output")
    parser.add_argument(
        "--docs",
        "--readme",
        dest="docs",
        action="store_true",
        help="rewrite docs/using.md's metrics table from the code",
    )
    args = parser.parse_args(argv)
    if args.docs:
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
