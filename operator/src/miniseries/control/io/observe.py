"""Observation: what the API server and the store hold for one sweep, read into plain data.

Reads only; every write is act.py's. What is read here is all that `decide` sees
(observed.Observations): a new observed input is read here and added there.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from kubernetes.client.rest import ApiException

from miniseries.api.errors import FieldProblem, SpecError
from miniseries.api.policy import Policy
from miniseries.api.spec import GROUP, PLURAL, VERSION, Backend, PlanStatus, ScalingSweepSpec, ScalingSweepStatus
from miniseries.api.sweepfile import load_spec
from miniseries.contract.layout import SweepLayout
from miniseries.contract.store import Store
from miniseries.control.backends import manifests as jobs
from miniseries.control.backends.job_backend import JobBackend
from miniseries.control.backends.registry import backend_for
from miniseries.control.decide.observations import (
    DEFAULT_RETRY,
    Observations,
    ObservedJob,
    ObservedWorkload,
    RetryTimings,
    TokenizerState,
    observe_job,
    observe_workload,
)
from miniseries.control.decide.pod_troubles import TOKENIZER, PodTrouble, admission_refusals, pod_keys, troubles_by_run
from miniseries.control.decide.spec_changes import Accepted, accept
from miniseries.control.io import kube
from miniseries.control.io.store_reads import observe_runs, trained_tokenizer_ready

log = logging.getLogger("miniseries.operator")


def read_sweep(namespace: str, name: str) -> dict[str, Any] | None:
    """The sweep as the API server has it now; None once it is gone."""
    try:
        body: dict[str, Any] = kube.custom().get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    return body


def parse_status(body: dict[str, Any]) -> ScalingSweepStatus:
    raw = body.get("status") or {}
    try:
        return ScalingSweepStatus.model_validate({k: v for k, v in raw.items() if k != "kopf"})
    except Exception:
        log.warning("status of %s does not parse; starting from an empty one", body["metadata"]["name"])
        return ScalingSweepStatus()


def secret_labels(namespace: str, name: str) -> dict[str, str] | None:
    """The labels of a Secret, None if it does not exist. Only its metadata is requested
    (PartialObjectMetadata): the operator never holds a Secret's data."""
    try:
        resp = kube.core().read_namespaced_secret(
            name,
            namespace,
            _headers={"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"},
            _preload_content=False,
        )
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    doc = json.loads(resp.data)
    if doc.get("kind") != "PartialObjectMetadata":  # never look at anything but metadata
        raise RuntimeError(f"asked for the metadata of Secret {namespace}/{name}, got a {doc.get('kind')}")
    return dict(doc["metadata"].get("labels") or {})


def admission(policy: Policy, spec: ScalingSweepSpec, namespace: str, planned_runs: int) -> SpecError | None:
    """The operator's admission policy (policy.py): the images (a custom trainer's own too: its pods run
    it), priority class, training runtime, GPUs at once (`planned_runs`: how many runs the plan has) and
    the Secret a sweep may use."""
    r = spec.resources
    problems = policy.image_problems(r.image)
    if spec.trainer is not None and spec.trainer.image is not None:
        problems += policy.image_problems(spec.trainer.image, "spec.trainer.image")
    problems += policy.priority_class_problems(r.priority_class_name)
    problems += policy.training_runtime_problems(r.runtime_name if r.backend is Backend.trainjob else None)
    problems += policy.gpu_problems(namespace, min(r.max_runs_in_flight, planned_runs), r.gpus_per_run)
    secret = spec.store.credentials_secret
    if policy.secret_opt_in_label and secret is not None:
        try:
            labels = secret_labels(namespace, secret)
        except ApiException as e:
            if e.status != 403:
                raise
            problems.append(
                FieldProblem(
                    "spec.store.credentialsSecret",
                    f"the operator may not read the metadata of Secret {secret!r} in {namespace!r} (403) to check "
                    f"its opt-in label {policy.secret_opt_in_label}; the cluster admin grants that per namespace "
                    f"(chart value admission.secretNamespaces, or a RoleBinding in {namespace!r} to the chart's "
                    "ClusterRole <release>-secret-labels)",
                )
            )
        else:
            problems += policy.secret_problems(namespace, secret, labels)
    return SpecError(problems) if problems else None


def served_kinds(served: tuple[Backend, ...]) -> list[JobBackend]:
    """The job backends an operator serves (OperatorSettings.backends): their jobs are listed for every
    sweep whatever its own spec.resources.backend says now, so a job created before a backend change
    is still seen (it holds its slot, its result counts)."""
    return [backend_for(b) for b in dict.fromkeys(served)]


def backend_problem(spec: ScalingSweepSpec, served: tuple[Backend, ...]) -> SpecError | None:
    """A sweep whose backend this operator does not serve (it may not create those jobs), or that
    queues TrainJobs, which the tested versions admit but never start: refused before any job is
    made, rather than leaving runs Admitted with no pod."""
    want = spec.resources.backend
    if want is Backend.trainjob and spec.resources.queue_name:
        return SpecError.one(
            "spec.resources.queueName",
            f"{spec.resources.queue_name!r} with backend trainjob: Kueue v0.19.2 admits Trainer v2.3.0 TrainJobs, "
            "but JobSet v0.12.0's webhook then refuses the trainer's update and no pod starts (docs/admin.md, "
            "'Two backends'); allowed: backend pytorchjob with a queueName, or backend trainjob without one",
        )
    if want in served:
        return None
    return SpecError.one(
        "spec.resources.backend",
        f"{want.value!r} is not served by this operator (it serves: {', '.join(b.value for b in served)}); install the chart with "
        f"backends including {want.value} (RBAC for its jobs), or choose one of those",
    )


def owned_jobs(namespace: str, sweep: str, uid: str, served: tuple[Backend, ...]) -> list[ObservedJob]:
    """The sweep's run jobs of every served kind, one `list` by the sweep label per kind."""
    out: list[ObservedJob] = []
    for kind in served_kinds(served):
        items = kube.custom().list_namespaced_custom_object(
            kind.group, kind.version, namespace, kind.plural, label_selector=f"{jobs.LABEL_SWEEP}={sweep}"
        )["items"]
        # A leftover from an earlier sweep of the same name is not ours (its owner uid differs).
        mine = [j for j in items if any(o.get("uid") == uid for o in j["metadata"].get("ownerReferences") or [])]
        # A list's items carry no kind: it is the list's.
        out += [observe_job({**j, "kind": kind.kind}) for j in mine]
    return out


def tokenizer_state(spec: ScalingSweepSpec, store: Store, layout: SweepLayout) -> TokenizerState:
    namespace, sweep = layout.namespace, layout.sweep
    if spec.data.tokenizer_uri:
        return TokenizerState.NotNeeded
    if trained_tokenizer_ready(store, layout):
        return TokenizerState.Ready
    try:
        job = kube.batch().read_namespaced_job(jobs.tokenizer_job_name(sweep), namespace)
    except ApiException as e:
        if e.status == 404:
            return TokenizerState.Missing
        raise
    for c in (job.status and job.status.conditions) or []:
        if c.type == "Failed" and c.status == "True":
            return TokenizerState.Failed
    return TokenizerState.Running


def pod_troubles(
    namespace: str, sweep: str, observed: list[ObservedJob] | None = None, tokenizer_running: bool = False
) -> dict[str, PodTrouble]:
    """What the kubelet and the scheduler say about the sweep's pods (pods.py): one `list` by the
    sweep label its job templates carry. Without `list` on pods (a chart older than this operator)
    the operator works on, only without these reasons. For the jobs (`observed`, and the tokenizer's)
    that have no pod at all: why admission refused their pods, from the namespace's Events."""
    try:
        resp = kube.core().list_namespaced_pod(
            namespace, label_selector=f"{jobs.LABEL_SWEEP}={sweep}", _preload_content=False
        )
    except ApiException as e:
        if e.status == 403:
            log.warning("cannot list pods in %s (%s): pod-level reasons are not shown", namespace, e.reason)
            return {}
        raise
    pods = json.loads(resp.data).get("items", [])
    troubles = troubles_by_run(pods)
    active = {j.run: (j.name, j.created) for j in observed or [] if j.active and not j.suspended and not j.deleting}
    wanted = {**active, **({TOKENIZER: (jobs.tokenizer_job_name(sweep), None)} if tokenizer_running else {})}
    if wanted and set(wanted) - pod_keys(pods):
        refused = admission_refusals(job_events(namespace), wanted, pod_keys(pods))
        troubles = {**refused, **troubles}
    return troubles


def job_events(namespace: str) -> list[dict[str, Any]]:
    """The namespace's Warning Events (one `list`; FailedCreate/FailedCreatePod are among them).
    Without `list` on events (a chart older than this operator) admission refusals are not shown."""
    try:
        resp = kube.core().list_namespaced_event(namespace, field_selector="type=Warning", _preload_content=False)
    except ApiException as e:
        if e.status == 403:
            log.warning("cannot list events in %s (%s): admission refusals are not shown", namespace, e.reason)
            return []
        raise
    items: list[dict[str, Any]] = json.loads(resp.data).get("items", [])
    return items


KUEUE_GROUP, KUEUE_VERSION, KUEUE_WORKLOADS = "kueue.x-k8s.io", "v1beta2", "workloads"


def queue_workloads(namespace: str, observed: list[ObservedJob]) -> dict[str, ObservedWorkload]:
    """The Kueue Workload of each of the sweep's jobs, by run: one `list` of the namespace's
    Workloads, matched by owner uid (Kueue copies no job labels to a Workload by default). A
    Workload left from an earlier attempt of the same name has another owner uid and is not
    matched. Without `list` on workloads (a chart without kueue.enabled) the runs show the job's
    own state, without Kueue's reasons."""
    by_uid = {j.uid: j for j in observed if j.uid}
    if not by_uid:
        return {}
    try:
        items = kube.custom().list_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, namespace, KUEUE_WORKLOADS)[
            "items"
        ]
    except ApiException as e:
        if e.status in (403, 404):
            log.warning("cannot list Kueue workloads in %s (%s %s): queue reasons are not shown", namespace,
                        e.status, e.reason)  # fmt: skip
            return {}
        raise
    out: dict[str, ObservedWorkload] = {}
    for item in items:
        w = observe_workload(item)
        job = by_uid.get(w.job_uid) if w is not None else None
        if w is not None and job is not None:
            out[job.run] = w
    return out


def observe(
    body: dict[str, Any],
    given: ScalingSweepSpec,
    given_plan: PlanStatus,
    store: Store,
    layout: SweepLayout,
    previous: ScalingSweepStatus,
    now: datetime,
    owners: frozenset[str] | None = None,
    retry: RetryTimings = DEFAULT_RETRY,
    served: tuple[Backend, ...] = (Backend.pytorchjob,),
) -> tuple[Observations, Accepted]:
    """Everything `decide` needs about a sweep that passed its checks and claimed its store key,
    and which spec is reconciled (the caller writes it to the store when `Accepted.save`).
    `owners`: the uids whose store documents are this sweep's (its claim's layout.lineage);
    `retry` and `served`: the operator's settings (control/settings.py)."""
    meta = body["metadata"]
    observed = owned_jobs(layout.namespace, layout.sweep, meta["uid"], served)
    accepted = accept(load_spec(store, layout), given, given_plan, observed, previous)
    runs = observe_runs(store, layout, accepted.plan.runs, owners or meta["uid"])
    for name, o in runs.items():
        if o.results_error:
            log.warning("results of %s/%s unreadable: %s", layout.root, name, o.results_error)
    tokenizer = tokenizer_state(accepted.spec, store, layout)
    obs = Observations(
        sweep=layout.sweep,
        spec=accepted.spec,
        plan=accepted.plan,
        previous=previous,
        jobs=observed,
        store=runs,
        tokenizer=tokenizer,
        now=now,
        generation=meta.get("generation"),
        refused=accepted.refused,
        pods=pod_troubles(layout.namespace, layout.sweep, observed, tokenizer is TokenizerState.Running),
        workloads=queue_workloads(layout.namespace, observed) if accepted.spec.resources.queue_name else {},
        retry=retry,
    )
    return obs, accepted
