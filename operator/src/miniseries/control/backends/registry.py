"""The job backends, by the name a sweep gives (spec.resources.backend) and by the kind of a job
read back: the one place a backend is registered. Adding one is a module beside pytorchjob.py and
trainjob.py, a value of api.spec.Backend, and its line in BACKENDS (and its rules in the chart's
_helpers.tpl: tests/integration/test_chart.py checks the chart grants what `rbac_rules` says).
"""

from __future__ import annotations

from typing import Any

from miniseries.api.spec import Backend, PlannedRun, ScalingSweepSpec
from miniseries.control.backends.job_backend import JobBackend
from miniseries.control.backends.pytorchjob import PYTORCHJOB
from miniseries.control.backends.trainjob import TRAINJOB
from miniseries.plan.trainer_argv import DEFAULT_METRICS_PORT

BACKENDS: dict[Backend, JobBackend] = {b.backend: b for b in (PYTORCHJOB, TRAINJOB)}
#: By `kind`: what an object read back (or a Workload's owner) is.
BY_KIND: dict[str, JobBackend] = {b.kind: b for b in BACKENDS.values()}
#: What a job object without a kind is (a list's items carry none; the operator's first backend).
DEFAULT_KIND = PYTORCHJOB.kind


def backend_for(backend: Backend) -> JobBackend:
    return BACKENDS[backend]


def by_kind(kind: str) -> JobBackend:
    """The backend whose jobs are of this kind (KeyError: no backend makes them)."""
    return BY_KIND[kind]


def run_job(
    spec: ScalingSweepSpec,
    sweep: str,
    uid: str,
    namespace: str,
    run: PlannedRun,
    *,
    attempt: int = 1,
    metrics_port: int = DEFAULT_METRICS_PORT,
) -> dict[str, Any]:
    """The job that trains one planned run, of the kind spec.resources.backend names."""
    return backend_for(spec.resources.backend).manifest(
        spec, sweep, uid, namespace, run, attempt=attempt, metrics_port=metrics_port
    )
