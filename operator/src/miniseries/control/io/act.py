"""Carrying out a decision: record status, then create, delete, suspend and post Events. Writes only.

Record first, conditionally on the version read (Conflict: decide again), then act: a crash
after the record leaves recorded launches (created next time, 409 if they exist) and recorded
Retrying runs (their failed jobs deleted next time). Status is written only when it changed
or the decision touches the cluster (the write is then the optimistic lock on the launch): a
poll that changes nothing writes nothing, since each write is a watch event for every client.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from miniseries.api.spec import (
    GROUP,
    PLURAL,
    VERSION,
    FitStatus,
    PlanStatus,
    RunForecast,
    RunState,
    ScalingSweepSpec,
    ScalingSweepStatus,
)
from miniseries.contract.layout import SweepLayout
from miniseries.contract.store import Store
from miniseries.control.backends import manifests as jobs
from miniseries.control.backends.registry import DEFAULT_KIND, backend_for, by_kind
from miniseries.control.decide.observations import SUSPENDED_BY, ObservedJob, RunObservation
from miniseries.control.decide.runs import Actions
from miniseries.control.decide.sweep_status import changed, wire_doc
from miniseries.control.io import events, kube
from miniseries.control.io import operator_metrics as opmetrics
from miniseries.control.io.observe import KUEUE_GROUP, KUEUE_VERSION, KUEUE_WORKLOADS

log = logging.getLogger("miniseries.operator")


class Conflict(Exception):
    """The sweep changed since it was read: decide again from a fresh read."""


def patch_status(namespace: str, name: str, status: ScalingSweepStatus, resource_version: str | None = None) -> None:
    """Merge-patch status; with `resource_version`, only if the sweep is still at that version."""
    doc, bad = wire_doc(status)
    if bad:  # a NaN loss or an infinite cost from the store must not make every patch fail
        log.warning("status of %s/%s: non-finite numbers left out: %s", namespace, name, ", ".join(bad[:10]))
    body: dict[str, Any] = {"status": doc}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    try:
        kube.custom().patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, body)
    except ApiException as e:
        if e.status == 409 and resource_version is not None:
            raise Conflict(f"{namespace}/{name} changed since resourceVersion {resource_version}") from None
        raise
    opmetrics.STATUS_PATCHES.labels(sweep=name, sweep_namespace=namespace).inc()


def record(
    namespace: str,
    name: str,
    new: ScalingSweepStatus,
    previous: ScalingSweepStatus,
    resource_version: str | None = None,
    *,
    fence: bool = False,
) -> bool:
    """Patch `new` if it differs from `previous`, or if `fence` (the write must succeed on the version
    read before the cluster is touched). True if patched."""
    if not fence and not changed(new, previous):
        return False
    patch_status(namespace, name, new, resource_version)
    return True


def _create(fn: Any, *args: Any) -> bool:
    """Create; an existing object of that (deterministic) name is success. True if created."""
    try:
        fn(*args)
        return True
    except ApiException as e:
        if e.status == 409:
            return False
        raise


def _create_or_report(body: dict[str, Any], what: str, fn: Any, *args: Any) -> bool:
    """_create; a refusal by the API server (400/422: something the spec checks missed; 403: a
    quota, an admission policy, missing RBAC) is said on the sweep as a Warning event naming the
    object and the server's reason, not only in this log. The launch stays recorded, so it is
    tried again at the next reconcile (and the event counted)."""
    try:
        return _create(fn, *args)
    except ApiException as e:
        if e.status not in (400, 403, 422):
            raise
        try:
            reason = json.loads(e.body or "{}").get("message") or e.reason
        except ValueError:
            reason = e.reason
        events.post(body, "Warning", "JobRejected", f"the API server refused {what}: {reason}")
        log.warning("the API server refused %s: %s", what, reason)
        return False


def delete_job(namespace: str, name: str, kind: str = DEFAULT_KIND) -> None:
    """Deleted with its backend's propagation (JobBackend.delete_propagation). Gone already is fine."""
    k = by_kind(kind)
    try:
        options = client.V1DeleteOptions(propagation_policy=k.delete_propagation)
        kube.custom().delete_namespaced_custom_object(k.group, k.version, namespace, k.plural, name, body=options)
    except ApiException as e:
        if e.status != 404:
            raise


def set_workload_active(namespace: str, workload: str, active: bool) -> None:
    """spec.suspend under Kueue: deactivate the job's Workload (Kueue evicts it and suspends the
    job), marked as the operator's doing; reactivate it (Kueue admits it again) and drop the mark.
    Gone already (the job finished or was deleted) is fine."""
    mark = None if active else "spec.suspend"
    body = {"metadata": {"annotations": {SUSPENDED_BY: mark}}, "spec": {"active": active}}
    try:
        kube.custom().patch_namespaced_custom_object(
            KUEUE_GROUP, KUEUE_VERSION, namespace, KUEUE_WORKLOADS, workload, body
        )  # fmt: skip
    except ApiException as e:
        if e.status != 404:
            raise


def carry_out(
    body: dict[str, Any], spec: ScalingSweepSpec, actions: Actions, observed: list[ObservedJob] | None = None
) -> None:
    """Create the tokenizer Job and the launched run jobs (of the sweep's backend), post the Events,
    delete failed jobs, suspend or resume jobs (each addressed as its own kind): what `decide` asked
    for, after its status is recorded."""
    meta = body["metadata"]
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    if actions.create_tokenizer:
        what = f"Job {jobs.tokenizer_job_name(name)}"
        if _create_or_report(body, what, kube.batch().create_namespaced_job, ns,
                             jobs.tokenizer_job(spec, name, uid, ns)):  # fmt: skip
            opmetrics.JOBS_CREATED.labels(sweep=name, sweep_namespace=ns).inc()
            events.post(body, "Normal", reason="TokenizerStarted", message=jobs.tokenizer_job_name(name))
    kind = backend_for(spec.resources.backend)
    # A job to delete or suspend is addressed as the kind it was observed as (a sweep whose backend
    # changed still has jobs of the old kind); one not observed is of the sweep's backend.
    kinds = {j.name: j.kind for j in observed or []}
    for run, attempt in actions.create:
        manifest = kind.manifest(spec, name, uid, ns, run, attempt=attempt)
        job = manifest["metadata"]["name"]
        if _create_or_report(body, f"{kind.kind} {job}", kube.custom().create_namespaced_custom_object,
                             kind.group, kind.version, ns, kind.plural, manifest):  # fmt: skip
            opmetrics.JOBS_CREATED.labels(sweep=name, sweep_namespace=ns).inc()
            events.post(body, "Normal", reason="RunStarted", message=f"{job} attempt {attempt}")
    for e in actions.events:
        events.post(body, e.type, reason=e.reason, message=e.message)
    for job in actions.delete:
        delete_job(ns, job, kinds.get(job, kind.kind))
    for workload, active in actions.activate.items():
        set_workload_active(ns, workload, active)
    for job, suspend in actions.suspend.items():
        k = by_kind(kinds.get(job, kind.kind))
        kube.custom().patch_namespaced_custom_object(
            k.group, k.version, ns, k.plural, job, k.suspend_patch(suspend)
        )  # fmt: skip


def fit(store: Store, layout: SweepLayout, spec: ScalingSweepSpec) -> tuple[FitStatus | None, str | None, str | None]:
    """Fit and write the report: (fit, report URI, None), or (None, None, the error), retried at the next reconcile."""
    from miniseries.science.report import build_report  # numpy, scipy and matplotlib load only when a fit is due

    try:
        uri, result = build_report(store, layout, spec)
    except Exception as e:
        log.exception("report for %s failed", layout.sweep)
        return None, None, str(e)
    return result, uri, None


def forecast(
    store: Store, layout: SweepLayout, spec: ScalingSweepSpec, plan: PlanStatus,
    observed: dict[str, RunObservation], due: dict[str, int],
) -> dict[str, RunForecast]:  # fmt: skip
    """The forecasts `forecasts.due` asked for (control/io/live_forecasts.py: the local runner makes them
    the same way, without this module's Kubernetes imports)."""
    from miniseries.control.io.live_forecasts import make_forecasts

    return make_forecasts(store, layout, spec, plan, observed, due)


def export_metrics(namespace: str, name: str, status: ScalingSweepStatus) -> None:
    for state in RunState:
        opmetrics.SWEEP_RUNS.labels(sweep=name, sweep_namespace=namespace, state=state.value).set(
            sum(r.state is state for r in status.runs)
        )
    opmetrics.SWEEP_COST.labels(sweep=name, sweep_namespace=namespace).set(status.totals.cost_usd)
    for r in status.runs:
        f = r.forecast
        bounds = {"estimate": f.val_bpb, "low": f.val_bpb_low, "high": f.val_bpb_high} if f is not None else {}
        for bound in opmetrics.FORECAST_BOUNDS:
            labels = {opmetrics.NAMESPACE_LABEL: namespace, "sweep": name, "run": r.name, "bound": bound}
            value = bounds.get(bound)
            if value is not None and r.state is not RunState.Failed:
                opmetrics.RUN_FORECAST_VAL_BPB.labels(**labels).set(value)
            else:  # a refused forecast or a stopped run: no stale number
                with contextlib.suppress(KeyError):
                    opmetrics.RUN_FORECAST_VAL_BPB.remove(*(labels[k] for k in opmetrics.RUN_FORECAST_LABELS))
