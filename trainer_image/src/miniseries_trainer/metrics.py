"""The trainer's Prometheus metrics: one registry, one documented list.

Rank 0 serves the run-level metrics on `--metrics-port`; every other rank serves
only its own peak memory on `--metrics-port + LOCAL_RANK` (ranks of one pod share
its network namespace, so they cannot share one port). `--metrics-port 0` disables
the exporter. Every series carries `sweep_namespace`, `sweep`, `depth`, `run`; per-rank ones add
`rank`. `sweep_namespace` (the operator's --namespace): two teams' sweeps of one name are two
series wherever the metrics are scraped from (a static scrape config has no `namespace` target
label), under the same label name the operator's own metrics use (control/io/operator_metrics.py).
`METRICS` is the documentation: docs/using.md's table is generated from it.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, start_http_server

from miniseries.contract.metric_doc import MetricDoc
from miniseries.contract.store import StoreHealth

RUN_LABELS = ("sweep_namespace", "sweep", "depth", "run")


def _doc(name: str, type: str, help: str, *, per_rank: bool = False) -> MetricDoc:
    return MetricDoc(name, type, help, (*RUN_LABELS, "rank") if per_rank else RUN_LABELS)


METRICS: list[MetricDoc] = [
    _doc("miniseries_train_loss", "gauge", "Training loss (mean cross-entropy, nats/token) of the last step"),
    _doc("miniseries_train_step", "gauge", "Optimizer steps completed"),
    _doc("miniseries_train_steps_planned", "gauge", "Optimizer steps this run will take in total"),
    _doc("miniseries_train_tokens_total", "counter", "Training tokens consumed so far (all ranks)"),
    _doc("miniseries_train_tokens_per_second", "gauge", "Training throughput over recent steps (all ranks)"),
    _doc("miniseries_train_mfu", "gauge", "Model FLOPs utilisation: achieved / (ranks x peak FLOP/s), 0..1"),
    _doc("miniseries_train_lr", "gauge", "Learning-rate multiplier of the schedule (warmup, constant, warmdown)"),
    _doc("miniseries_train_flops_total", "counter", "Training FLOPs spent so far (flops_per_token x tokens)"),
    _doc("miniseries_train_eta_seconds", "gauge", "Estimated seconds until training finishes"),
    _doc("miniseries_val_bpb", "gauge", "Validation bits per byte at the end of training"),
    _doc("miniseries_core_score", "gauge", "CORE score at the end of training (absent when not evaluated or partial)"),
    _doc("miniseries_peak_memory_bytes", "gauge", "Peak accelerator (or process) memory of one rank", per_rank=True),
    _doc("miniseries_train_info", "info", "Run description: shape, batch, device, world size"),
    _doc("miniseries_store_errors_total", "counter", "Store operations that failed (each try; retried ones too)"),
    _doc("miniseries_store_outage_seconds", "gauge", "How long the store has been failing (0 once it answers again)"),
    _doc("miniseries_store_retry_wait_seconds_total", "counter", "Seconds the run waited to retry store operations"),
]


class TrainerMetrics:
    """Gauges for one run; setters are no-ops on series a rank does not serve."""

    def __init__(
        self, *, sweep: str, depth: int, run: str, rank: int, local_rank: int, port: int, namespace: str = "default"
    ):
        self.registry = CollectorRegistry()
        self.labels = {"sweep_namespace": namespace, "sweep": sweep, "depth": str(depth), "run": run}
        self.rank = rank
        self._g: dict[str, Gauge] = {}
        self._c: dict[str, Counter] = {}
        self._totals: dict[str, float] = {}
        self.info: Info | None = None
        for m in METRICS:
            if m.per_rank:
                g = Gauge(m.name, m.help, [*RUN_LABELS, "rank"], registry=self.registry)
                self._g[m.name] = g
            elif rank == 0 and m.type == "info":
                self.info = Info(m.name.removesuffix("_info"), m.help, RUN_LABELS, registry=self.registry)
            elif rank == 0 and m.type == "counter":
                # prometheus_client appends _total itself. A resumed run starts its counter
                # at the checkpoint's total, so the series continues where it stopped.
                self._c[m.name] = Counter(m.name.removesuffix("_total"), m.help, RUN_LABELS, registry=self.registry)
                self._c[m.name].labels(**self.labels)  # exported at 0 from the start: rate() sees the first rise
            elif rank == 0:
                self._g[m.name] = Gauge(m.name, m.help, RUN_LABELS, registry=self.registry)
        self.port = 0
        if port:
            self.port = port if rank == 0 else port + local_rank
            start_http_server(self.port, registry=self.registry)

    def set(self, name: str, value: float) -> None:
        """Set a gauge, or move a counter up to the running total `value`."""
        c = self._c.get(name)
        if c is not None:
            delta = value - self._totals.get(name, 0.0)
            if delta > 0:
                c.labels(**self.labels).inc(delta)
                self._totals[name] = value
            return
        g = self._g.get(name)
        if g is None:
            return
        if name == "miniseries_peak_memory_bytes":
            g.labels(**self.labels, rank=str(self.rank)).set(value)
        else:
            g.labels(**self.labels).set(value)

    def set_info(self, info: dict[str, str]) -> None:
        if self.info is not None:
            self.info.labels(**self.labels).info(info)

    def set_store_health(self, health: StoreHealth) -> None:
        """The store's failures and waits so far (a RetryingStore calls this on every change)."""
        self.set("miniseries_store_errors_total", health.errors)
        self.set("miniseries_store_retry_wait_seconds_total", health.waited_seconds)
        self.set("miniseries_store_outage_seconds", health.outage_seconds(time.monotonic()))
