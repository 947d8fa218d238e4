"""How an exported Prometheus metric is documented (the trainer's and the operator's alike).

Each exporting module keeps a `METRICS` list of these; docs/using.md's metrics table and the
dashboard checks are generated from those lists (dashboards/generate.py). Plain data: no
prometheus_client here, so the contract stays light.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricDoc:
    """One exported metric as Prometheus sees it (counters end in _total, histograms are the family)."""

    name: str
    type: str
    help: str
    labels: tuple[str, ...] = ()

    @property
    def per_rank(self) -> bool:
        """One series per rank (the trainer's per-rank gauges)."""
        return "rank" in self.labels
