"""The operator's own Prometheus metrics (the trainer exports its own from each pod)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from miniseries.contract.metric_doc import MetricDoc

REGISTRY = CollectorRegistry()
#: `sweep_namespace`, not `namespace`: Prometheus sets a target label `namespace` (the operator pod's own,
#: from the ServiceMonitor/PodMonitor) and, honor_labels being false as it should be for a target that
#: serves other tenants' data, renames a scraped `namespace` to `exported_namespace`. A label of its own
#: name survives every scrape configuration unchanged; the trainer's series carry the same one.
NAMESPACE_LABEL = "sweep_namespace"
LABELS = ("sweep", NAMESPACE_LABEL)

RECONCILES = Counter("miniseries_operator_reconciles_total", "Sweep reconciles carried out.", LABELS, registry=REGISTRY)
ERRORS = Counter("miniseries_operator_errors_total", "Reconciles that ended in an error.", LABELS, registry=REGISTRY)
DURATION = Histogram(
    "miniseries_operator_reconcile_duration_seconds",
    "Wall time of one sweep reconcile (API and store I/O included).",
    LABELS,
    registry=REGISTRY,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
JOBS_CREATED = Counter(
    "miniseries_operator_jobs_created_total",
    "Run jobs (PyTorchJobs or TrainJobs) and tokenizer Jobs created.",
    LABELS,
    registry=REGISTRY,
)
STATUS_PATCHES = Counter(
    "miniseries_operator_status_patches_total",
    "Status writes: only when a reconcile changed the status or fenced a launch.",
    LABELS,
    registry=REGISTRY,
)
SWEEP_RUNS = Gauge("miniseries_sweep_runs", "Runs of a sweep by state.", (*LABELS, "state"), registry=REGISTRY)
SWEEP_COST = Gauge("miniseries_sweep_cost_usd", "GPU cost of a sweep so far, USD.", LABELS, registry=REGISTRY)
RUN_FORECAST_LABELS = (NAMESPACE_LABEL, "sweep", "run", "bound")
FORECAST_BOUNDS = ("estimate", "low", "high")
RUN_FORECAST_VAL_BPB = Gauge(
    "miniseries_run_forecast_val_bpb",
    "Forecast final validation bits per byte of a run (status.runs[].forecast); bound: estimate, low, high (95%).",
    RUN_FORECAST_LABELS,
    registry=REGISTRY,
)


def _doc(collector: Counter | Gauge | Histogram, kind: str) -> MetricDoc:
    family = next(iter(collector.describe()))
    name = family.name + ("_total" if kind == "counter" else "")
    labels = tuple(getattr(collector, "_labelnames", ()))
    return MetricDoc(name, kind, family.documentation, labels)


#: Every metric the operator exports, read off the collectors so it cannot drift.
METRICS: list[MetricDoc] = [
    _doc(RECONCILES, "counter"),
    _doc(ERRORS, "counter"),
    _doc(DURATION, "histogram"),
    _doc(JOBS_CREATED, "counter"),
    _doc(STATUS_PATCHES, "counter"),
    _doc(SWEEP_RUNS, "gauge"),
    _doc(SWEEP_COST, "gauge"),
    _doc(RUN_FORECAST_VAL_BPB, "gauge"),
]


def serve(port: int) -> None:
    """Expose /metrics on `port` (0: do not serve)."""
    if port:
        start_http_server(port, registry=REGISTRY)
