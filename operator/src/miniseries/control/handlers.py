"""kopf handlers: gather what exists, call `decide`, carry out its actions. I/O only.

One reconcile function serves every trigger (create, resume after an operator
restart, spec update, a PyTorchJob event, the store-polling timer), so all of
them converge on the same state from what exists in the API server and the
store: creating with deterministic names and treating 409 as success makes a
restart mid-sweep create no duplicates.

Deciding what to launch is fenced, not just locked: the handler reads the sweep,
decides, and writes the new status with the resourceVersion it read as a
precondition *before* creating any job. Two deciders that read the same sweep
(two threads of this process, a replica during a peering hand-over, an operator
restarted while the old one still finishes a handler) cannot both get their
status written, so they cannot both spend a free slot; the loser reads again and
then sees the winner's launch, as a job or as a recorded launch (decide.py).

The accepted spec is kept in the store (`<namespace>/<sweep>/sweep.json`, the
layout's place for "the spec the runs were planned from"): a spec change that would
invalidate started runs is refused and the operator keeps reconciling the
accepted one (only `suspend` is taken from the new spec).

Before anything is read or written there, the sweep claims its store key (layout.claim):
a key another sweep owns, or data of the layout before namespaces, is refused with a
condition and an Event, and a store URI outside the operator's store roots
(MINISERIES_STORE_ROOTS / --store-root) is refused as an invalid spec.store.uri.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from miniseries.api.errors import FieldProblem, SpecError
from miniseries.api.policy import Policy
from miniseries.api.spec import (
    GROUP,
    PLURAL,
    VERSION,
    PlanStatus,
    RunState,
    ScalingSweepSpec,
    ScalingSweepStatus,
    writable,
)
from miniseries.api.sweepfile import parse_sweep
from miniseries.contract.layout import (
    ADOPT_ANNOTATION,
    ClaimRefused,
    SweepIdentity,
    SweepLayout,
    claim,
    delete_owned,
    join_uri,
)
from miniseries.contract.results import ResultsError, checkpoint_steps, read_progress, read_results
from miniseries.contract.store import (
    Store,
    StoreError,
    StoreNotFound,
    open_store,
    parse_roots,
    root_problem,
    uri_problem,
)
from miniseries.control import decide as dec
from miniseries.control import events, jobs
from miniseries.control import metrics as opmetrics
from miniseries.control.accepted import load_spec, save_spec
from miniseries.control.plan import make_plan
from miniseries.control.trainer_args import trained_tokenizer_ready

log = logging.getLogger("miniseries.operator")

# Tests shorten both through the environment; production keeps the defaults.
POLL_SECONDS = float(os.environ.get("MINISERIES_POLL_SECONDS", "10"))
dec.RETRY_BASE_SECONDS = float(os.environ.get("MINISERIES_RETRY_BASE_SECONDS", dec.RETRY_BASE_SECONDS))
FINALIZER_RETRIES = 5  # store errors while deleting a sweep's artifacts
JOBS_GONE_RETRIES = 30  # ~30 s waiting for a deleted sweep's jobs before its store prefix goes
KUBECONFIG: str | None = None  # set by `miniseries operator --kubeconfig`; None: in-cluster first
#: Store URIs a sweep may use (`{namespace}` stands for the sweep's); empty: any. The chart's
#: storeRoots value, as MINISERIES_STORE_ROOTS or `miniseries operator --store-root`.
STORE_ROOTS: list[str] = parse_roots(os.environ.get("MINISERIES_STORE_ROOTS"))
POLICY = Policy.from_env()  # set by `miniseries operator` from its admission flags
_locks: dict[tuple[str, str], threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock(namespace: str, name: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault((namespace, name), threading.Lock())


def _now() -> datetime:
    return datetime.now(UTC)


def _custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi()


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


# ---------------------------------------------------------------- startup


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    # Progress in annotations: status is ours, and its schema would prune kopf's fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="miniseries.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="miniseries.dev")
    settings.posting.level = logging.INFO
    settings.execution.max_workers = 8
    if KUBECONFIG:
        config.load_kube_config(config_file=KUBECONFIG)
        return
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


@kopf.on.probe(id="sweeps")
def probe_sweeps(**_: Any) -> int:
    """Part of /healthz: the API server answers for our resource."""
    return len(_custom().list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=1).get("items", []))


# ---------------------------------------------------------------- status helpers


def _status(body: dict[str, Any]) -> ScalingSweepStatus:
    raw = body.get("status") or {}
    try:
        return ScalingSweepStatus.model_validate({k: v for k, v in raw.items() if k != "kopf"})
    except Exception:
        log.warning("status of %s does not parse; starting from an empty one", body["metadata"]["name"])
        return ScalingSweepStatus()


def _read_sweep(namespace: str, name: str) -> dict[str, Any] | None:
    """The sweep as the API server has it now; None once it is gone."""
    try:
        body: dict[str, Any] = _custom().get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as e:
        if e.status == 404:
            return None
        raise
    return body


class Conflict(Exception):
    """The sweep changed since it was read: decide again from a fresh read."""


def _patch_status(namespace: str, name: str, status: ScalingSweepStatus, resource_version: str | None = None) -> None:
    """Merge-patch status; with `resource_version`, only if the sweep is still at that version."""
    doc, bad = writable(status.wire())
    if bad:  # a NaN loss or an infinite cost from the store must not make every patch fail
        log.warning("status of %s/%s: non-finite numbers left out: %s", namespace, name, ", ".join(bad[:10]))
    body: dict[str, Any] = {"status": doc}
    if resource_version is not None:
        body["metadata"] = {"resourceVersion": resource_version}
    try:
        _custom().patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, body)
    except ApiException as e:
        if e.status == 409 and resource_version is not None:
            raise Conflict(f"{namespace}/{name} changed since resourceVersion {resource_version}") from None
        raise


def _invalid(body: dict[str, Any], err: SpecError, reason: str) -> None:
    """Ready=False naming the fields, and a Warning event; nothing is written again while the
    problem stays the same (a poll, a restart), so it is one Event, not one per reconcile."""
    meta = body["metadata"]
    gen = meta.get("generation")
    status = _status(body)
    msg = "; ".join(str(p) for p in err.problems)[:1000]
    before = status.model_copy(deep=True)
    status.conditions = dec.set_condition(status.conditions, "Ready", False, reason, msg, _now(), gen)
    status.phase = "Invalid" if status.plan is None else status.phase
    status.observed_generation = gen
    if status.wire() == before.wire():
        return
    _patch_status(meta["namespace"], meta["name"], status)
    events.post(body, "Warning", reason, msg)


def _secret_labels(namespace: str, name: str) -> dict[str, str] | None:
    """The labels of a Secret, None if it does not exist. Only its metadata is requested
    (PartialObjectMetadata): the operator never holds a Secret's data."""

    try:
        resp = client.CoreV1Api().read_namespaced_secret(
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


def _admission(spec: ScalingSweepSpec, namespace: str) -> SpecError | None:
    """The operator's admission policy (policy.py): the image and the Secret a sweep may use."""
    problems = POLICY.image_problems(spec.resources.image)
    secret = spec.store.credentials_secret
    if POLICY.secret_opt_in_label and secret is not None:
        try:
            labels = _secret_labels(namespace, secret)
        except ApiException as e:
            if e.status != 403:
                raise
            problems.append(
                FieldProblem(
                    "spec.store.credentialsSecret",
                    f"the operator may not read the metadata of Secret {secret!r} in {namespace!r} (403) to check "
                    f"its opt-in label {POLICY.secret_opt_in_label}; grant it `get` on secrets (the chart does "
                    "when admission.secretOptInLabel is set)",
                )
            )
        else:
            problems += POLICY.secret_problems(namespace, secret, labels)
    return SpecError(problems) if problems else None


# ---------------------------------------------------------------- gathering


def _observe_store(store: Store, layout: SweepLayout, plan: PlanStatus) -> dict[str, dec.RunObservation]:
    """What the store says about each run. A store that does not answer raises (the reconcile
    then reports it); it never reads as "no results", which would retry finished runs."""
    out: dict[str, dec.RunObservation] = {}
    for run in plan.runs:
        rl = layout.run(run.name)
        results, error = None, None
        try:
            results = read_results(store, rl)
        except ResultsError as e:
            log.warning("results of %s unreadable: %s", rl.root, e)
            error = str(e)
        except StoreNotFound:
            results = None  # deleted between listing and reading
        steps = checkpoint_steps(store, rl)
        out[run.name] = dec.RunObservation(
            results=results,
            progress=None if results else read_progress(store, rl),
            checkpoint_uri=join_uri(store.uri, rl.checkpoint(steps[-1])) if steps else None,
            results_uri=join_uri(store.uri, rl.results) if results else None,
            results_error=error,
        )
    return out


def _tokenizer_state(spec: ScalingSweepSpec, store: Store, layout: SweepLayout) -> dec.TokenizerState:
    namespace, sweep = layout.namespace, layout.sweep
    if spec.data.tokenizer_uri:
        return dec.TokenizerState.NotNeeded
    if trained_tokenizer_ready(store, layout):
        return dec.TokenizerState.Ready
    try:
        job = client.BatchV1Api().read_namespaced_job(jobs.tokenizer_job_name(sweep), namespace)
    except ApiException as e:
        if e.status == 404:
            return dec.TokenizerState.Missing
        raise
    for c in (job.status and job.status.conditions) or []:
        if c.type == "Failed" and c.status == "True":
            return dec.TokenizerState.Failed
    return dec.TokenizerState.Running


def _owned_jobs(namespace: str, sweep: str, uid: str) -> list[dec.ObservedJob]:
    items = _custom().list_namespaced_custom_object(
        jobs.PYTORCHJOB_GROUP,
        jobs.PYTORCHJOB_VERSION,
        namespace,
        jobs.PYTORCHJOB_PLURAL,
        label_selector=f"{jobs.LABEL_SWEEP}={sweep}",
    )["items"]
    # A leftover from an earlier sweep of the same name is not ours (its owner uid differs).
    mine = [j for j in items if any(o.get("uid") == uid for o in j["metadata"].get("ownerReferences") or [])]
    return [dec.observe_job(j) for j in mine]


def _accepted_spec(
    store: Store,
    layout: SweepLayout,
    spec: ScalingSweepSpec,
    previous: ScalingSweepStatus,
    observed: list[dec.ObservedJob],
) -> tuple[ScalingSweepSpec, list[str]]:
    """The spec to reconcile and the reasons a change was refused (empty when accepted)."""
    old = load_spec(store, layout)
    if old is not None and old.wire() != spec.wire():
        # Started: a job exists for it, or status saw one (its job may be gone since).
        started = {j.run for j in observed}
        started |= {r.name for r in previous.runs if r.attempts > 0 or r.state is RunState.Succeeded}
        new_plan = make_plan(spec, max_gpu_hours_without_budget=float("inf"))
        try:
            old_plan: PlanStatus | None = make_plan(old, max_gpu_hours_without_budget=float("inf"))
        except SpecError:
            old_plan = None
        new_runs = {r.name for r in new_plan.runs}
        problems = dec.refused_changes(old, spec, started, new_runs, old_plan, new_plan)
        if problems:
            return old.model_copy(update={"suspend": spec.suspend}), problems
    if old is None or old.wire() != spec.wire():
        save_spec(store, layout, spec)
    return spec, []


# ---------------------------------------------------------------- reconcile


CONFLICT_RETRIES = 5
# An unreachable store is retried at this pace (it is a wrong URI, bucket or credentials, or an outage).
STORE_RETRY_SECONDS = float(os.environ.get("MINISERIES_STORE_RETRY_SECONDS", "30"))


def reconcile(body: dict[str, Any], *, permanent_on_invalid: bool = False) -> None:
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    labels = {"sweep": name, "namespace": ns}
    start = time.perf_counter()
    opmetrics.RECONCILES.labels(**labels).inc()
    # Exported at 0 from the first reconcile: a counter series that appears only on the first
    # error makes rate() blind to that error (and leaves the dashboard's panel empty until then).
    errors = opmetrics.ERRORS.labels(**labels)
    try:
        with _lock(ns, name):
            for attempt in range(CONFLICT_RETRIES):
                try:
                    _reconcile(body, permanent_on_invalid)
                    break
                except Conflict as e:
                    log.info("reconcile of %s/%s raced another writer (try %d): %s", ns, name, attempt + 1, e)
            else:
                raise kopf.TemporaryError(f"{ns}/{name} kept changing while reconciling", delay=1)
    except (kopf.PermanentError, kopf.TemporaryError):
        raise
    except StoreError as e:
        errors.inc()
        _store_unreachable(ns, name, e)
        raise kopf.TemporaryError(f"store unreachable: {e}", delay=STORE_RETRY_SECONDS) from None
    except Exception:
        errors.inc()
        raise
    finally:
        opmetrics.DURATION.labels(**labels).observe(time.perf_counter() - start)


def _store_unreachable(namespace: str, name: str, err: StoreError) -> None:
    """Say on the sweep itself why nothing moves: a condition naming spec.store.uri, and an Event.

    Nothing is launched while the store cannot be read and written (the accepted spec, results
    and checkpoints live there); the next reconcile that reaches it sets StoreReachable back to True.
    """
    body = _read_sweep(namespace, name)
    if body is None:
        return
    store = body.get("spec", {}).get("store") or {}
    secret = store.get("credentialsSecret")
    where = f"the Secret {secret!r} (spec.store.credentialsSecret)" if secret else "the operator's environment"
    msg = (
        f"spec.store.uri {store.get('uri')!r} cannot be read or written: {err}. Check that the bucket exists and "
        f"that AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in {where} reach it; "
        f"retrying every {STORE_RETRY_SECONDS:g} s"
    )[:1000]
    status, now, gen = _status(body), _now(), body["metadata"].get("generation")
    # The jobs are still visible: a run whose job failed is not shown Running meanwhile.
    try:
        observed = _owned_jobs(namespace, name, body["metadata"]["uid"])
        retry_limit = int(body.get("spec", {}).get("retryLimit", ScalingSweepSpec.model_fields["retry_limit"].default))
        status = dec.reflect_failed_jobs(status, observed, retry_limit, now, gen)
    except (ApiException, ValueError, TypeError) as e:
        log.warning("jobs of %s/%s not observed while its store is unreachable: %s", namespace, name, e)
    before = next((c for c in status.conditions if c.type == "StoreReachable"), None)
    status.conditions = dec.set_condition(status.conditions, "StoreReachable", False, "StoreUnreachable", msg, now, gen)
    status.conditions = dec.set_condition(status.conditions, "Progressing", False, "StoreUnreachable", msg, now, gen)
    _patch_status(namespace, name, status)
    if before is None or before.status != "False" or before.message != msg:
        events.post(body, "Warning", reason="StoreUnreachable", message=msg)


def _reconcile(body: dict[str, Any], permanent_on_invalid: bool) -> None:
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    # Re-read: the trigger may be a job event or a timer carrying an old copy of the sweep,
    # and the status patch below is conditional on exactly this version.
    fresh = _read_sweep(ns, name)
    if fresh is None:
        return
    body, meta = fresh, fresh["metadata"]
    uid, gen, rv = meta["uid"], meta.get("generation"), meta["resourceVersion"]
    if meta.get("deletionTimestamp"):
        return
    previous = _status(body)
    try:
        sweep = parse_sweep({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
        # budget, ceiling and packing checks name their fields too
        new_plan = make_plan(sweep.spec, max_gpu_hours_without_budget=POLICY.max_gpu_hours_without_budget)
    except SpecError as e:
        _invalid(body, e, "InvalidSpec")
        if permanent_on_invalid:
            raise kopf.PermanentError(str(e)) from None
        return
    denied = _admission(sweep.spec, ns)
    if denied is not None:
        _invalid(body, denied, "AdmissionDenied")
        if permanent_on_invalid:
            raise kopf.PermanentError(str(denied)) from None
        return

    outside = root_problem(sweep.spec.store.uri, STORE_ROOTS, ns)
    if outside:
        _invalid(body, SpecError.one("spec.store.uri", outside), "StoreNotAllowed")
        if permanent_on_invalid:
            raise kopf.PermanentError(outside)
        return
    store = open_store(sweep.spec.store.uri)
    layout = SweepLayout(ns, name)
    identity = SweepIdentity(namespace=ns, name=name, uid=uid, created=meta.get("creationTimestamp"))
    try:
        claim(store, layout, identity, [r.name for r in new_plan.runs],
              adopt_uid=(meta.get("annotations") or {}).get(ADOPT_ANNOTATION))  # fmt: skip
    except ClaimRefused as e:
        _store_refused(body, e)
        return
    now = _now()
    observed = _owned_jobs(ns, name, uid)
    spec, refused = _accepted_spec(store, layout, sweep.spec, previous, observed)
    plan = make_plan(spec, max_gpu_hours_without_budget=float("inf"))  # accepted: checked when it was
    tokenizer = _tokenizer_state(spec, store, layout)
    observations = _observe_store(store, layout, plan)
    decision = dec.decide(spec, name, plan, observed, observations, previous.runs, tokenizer, now)

    status = previous.model_copy(deep=True)
    if status.plan is None or not refused:
        status.plan = plan
    status = dec.aggregate(status, decision.runs, suspended=spec.suspend, tokenizer=tokenizer, now=now, generation=gen)
    status.conditions = dec.set_condition(
        status.conditions, "StoreReachable", True, "StoreReadable", f"{spec.store.uri} read and written", now, gen
    )
    if refused:
        msg = "; ".join(refused)[:1000]
        status.conditions = dec.set_condition(status.conditions, "Ready", False, "SpecChangeRefused", msg, now, gen)
        if not any(
            c.type == "Ready" and c.reason == "SpecChangeRefused" and c.message == msg for c in previous.conditions
        ):
            decision.events.append(dec.Event("SpecChangeRefused", msg, "Warning"))
    if dec.finished(status.runs) and status.fit is None and status.totals.runs_done:
        _fit(store, layout, spec, status)
        status.phase = dec.phase_of(status.runs, spec.suspend, status.fit)

    # Record first, conditionally on the version read (Conflict: decide again), then act:
    # a crash after this leaves recorded launches (created next time, 409 if they exist)
    # and recorded Retrying runs (their failed jobs deleted next time). A poll that changes
    # nothing and does nothing writes nothing (each write is a watch event for every client).
    acts = decision.create or decision.delete or decision.suspend or decision.create_tokenizer or decision.events
    if acts or status.wire() != previous.wire():
        _patch_status(ns, name, status, rv)

    tok_job = jobs.tokenizer_job(spec, name, uid, ns)
    tok_what = f"Job {jobs.tokenizer_job_name(name)}"
    if decision.create_tokenizer and _create_or_report(body, tok_what, client.BatchV1Api().create_namespaced_job, ns,
                                                       tok_job):  # fmt: skip
        opmetrics.JOBS_CREATED.labels(sweep=name, namespace=ns).inc()
        events.post(body, "Normal", reason="TokenizerStarted", message=jobs.tokenizer_job_name(name))
    for run, attempt in decision.create:
        manifest = jobs.pytorchjob(spec, name, uid, ns, run, attempt=attempt)
        created = _create_or_report(
            body,
            f"PyTorchJob {manifest['metadata']['name']}",
            _custom().create_namespaced_custom_object,
            jobs.PYTORCHJOB_GROUP,
            jobs.PYTORCHJOB_VERSION,
            ns,
            jobs.PYTORCHJOB_PLURAL,
            manifest,
        )
        if created:
            opmetrics.JOBS_CREATED.labels(sweep=name, namespace=ns).inc()
            events.post(
                body, "Normal", reason="RunStarted", message=f"{manifest['metadata']['name']} attempt {attempt}"
            )

    for e in decision.events:
        events.post(body, e.type, reason=e.reason, message=e.message)

    for job_name in decision.delete:
        try:
            _custom().delete_namespaced_custom_object(
                jobs.PYTORCHJOB_GROUP,
                jobs.PYTORCHJOB_VERSION,
                ns,
                jobs.PYTORCHJOB_PLURAL,
                job_name,
                body=client.V1DeleteOptions(propagation_policy="Foreground"),
            )
        except ApiException as e:
            if e.status != 404:
                raise
    for job_name, suspend in decision.suspend.items():
        _custom().patch_namespaced_custom_object(
            jobs.PYTORCHJOB_GROUP,
            jobs.PYTORCHJOB_VERSION,
            ns,
            jobs.PYTORCHJOB_PLURAL,
            job_name,
            {"spec": {"runPolicy": {"suspend": suspend}}},
        )

    for state in RunState:
        opmetrics.SWEEP_RUNS.labels(sweep=name, namespace=ns, state=state.value).set(
            sum(r.state is state for r in status.runs)
        )
    opmetrics.SWEEP_COST.labels(sweep=name, namespace=ns).set(status.totals.cost_usd)


def _store_refused(body: dict[str, Any], err: ClaimRefused) -> None:
    """The sweep may not use its store key: Ready=False with the reason naming both sweeps, one Event per change."""
    meta = body["metadata"]
    status, now, gen = _status(body), _now(), meta.get("generation")
    before = next((c for c in status.conditions if c.type == "Ready"), None)
    msg = err.message[:1000]
    status.conditions = dec.set_condition(status.conditions, "Ready", False, err.reason, msg, now, gen)
    status.conditions = dec.set_condition(status.conditions, "Progressing", False, err.reason, msg, now, gen)
    status.phase = "Invalid" if status.plan is None else status.phase
    status.observed_generation = gen
    _patch_status(meta["namespace"], meta["name"], status)
    if before is None or before.reason != err.reason or before.message != msg:
        events.post(body, "Warning", reason=err.reason, message=msg)


def _fit(store: Store, layout: SweepLayout, spec: ScalingSweepSpec, status: ScalingSweepStatus) -> None:
    """Fit and report what succeeded; a failure is retried by the next timer tick."""
    from miniseries.science.report import build_report  # matplotlib and scipy load only when a sweep ends

    sweep = layout.sweep
    try:
        uri, fit = build_report(store, layout, spec)
    except Exception as e:
        log.exception("report for %s failed", sweep)
        status.conditions = dec.set_condition(
            status.conditions, "Degraded", True, "FitFailed", str(e)[:500], _now(), status.observed_generation
        )
        return
    if status.totals.runs_failed:
        fit = fit.model_copy(update={"partial": True})
    status.fit, status.report_uri = fit, uri


# ---------------------------------------------------------------- triggers


@kopf.on.create(GROUP, VERSION, PLURAL)
def on_create(body: kopf.Body, **_: Any) -> None:
    reconcile(dict(body), permanent_on_invalid=True)


@kopf.on.resume(GROUP, VERSION, PLURAL)
def on_resume(body: kopf.Body, **_: Any) -> None:
    reconcile(dict(body))


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def on_update(body: kopf.Body, **_: Any) -> None:
    reconcile(dict(body), permanent_on_invalid=True)


def _in_flight(status: kopf.Status, **_: Any) -> bool:
    return dec.needs_polling(dict(status))


@kopf.timer(GROUP, VERSION, PLURAL, interval=POLL_SECONDS, idle=0, when=_in_flight)
def poll_store(body: kopf.Body, **_: Any) -> None:
    """Progress and results only appear in the store: poll it, while something can still move
    (kopf stops the timer when the sweep's status no longer matches `_in_flight`, starts it again
    when it does; a spec change or a job event reconciles a quiet sweep as before)."""
    reconcile(dict(body))


@kopf.on.event(
    jobs.PYTORCHJOB_GROUP, jobs.PYTORCHJOB_VERSION, jobs.PYTORCHJOB_PLURAL, labels={jobs.LABEL_SWEEP: kopf.PRESENT}
)
def on_job_event(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> None:
    sweep = labels[jobs.LABEL_SWEEP]
    parent = _read_sweep(namespace, sweep)
    if parent is not None:  # else the sweep is gone, and garbage collection takes its jobs
        reconcile(parent)


def _deletes_store(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("deletionPolicy", "Retain") == "Delete"


def _stop_jobs(namespace: str, sweep: str, uid: str) -> int:
    """Delete the sweep's jobs (foreground: their pods first); how many still exist."""
    left = 0
    for job in _owned_jobs(namespace, sweep, uid):
        left += 1
        if not job.deleting:
            try:
                _custom().delete_namespaced_custom_object(
                    jobs.PYTORCHJOB_GROUP, jobs.PYTORCHJOB_VERSION, namespace, jobs.PYTORCHJOB_PLURAL, job.name,
                    body=client.V1DeleteOptions(propagation_policy="Foreground"),
                )  # fmt: skip
            except ApiException as e:
                if e.status != 404:
                    raise
    try:
        client.BatchV1Api().delete_namespaced_job(
            jobs.tokenizer_job_name(sweep), namespace, propagation_policy="Foreground"
        )
    except ApiException as e:
        if e.status != 404:
            raise
    return left


@kopf.on.delete(GROUP, VERSION, PLURAL, when=_deletes_store)
def on_delete(body: kopf.Body, spec: kopf.Spec, name: str, namespace: str, uid: str, retry: int, **_: Any) -> None:
    """deletionPolicy Delete: stop the runs, then remove what the sweep's store manifest says is its own.

    With Retain (the default) this handler does not run: the store is left alone and
    the PyTorchJobs go by ownerReference garbage collection. (Every sweep still carries
    kopf's finalizer, which kopf needs to stop the polling timer; it is released as soon
    as the operator sees the deletion.) Here the jobs are deleted first (a trainer still
    running would write into the prefix after it is gone), waiting for them a bounded
    while, and store errors are retried a bounded number of times: the finalizer never
    blocks forever; when it gives up it says so in a Warning event.

    Only this sweep's objects go (layout.delete_owned): those under the prefixes its store
    manifest records, written after its claim; a key without its manifest (never claimed,
    or another sweep's) loses nothing.
    """
    uri = (spec.get("store") or {}).get("uri")
    if not uri:
        return
    layout = SweepLayout(namespace, name)
    where = join_uri(uri, layout.root)
    bad = uri_problem(uri) or root_problem(uri, STORE_ROOTS, namespace)
    if bad:
        events.post(body, "Warning", reason="StoreNotDeleted", message=f"nothing deleted: spec.store.uri {bad}")
        return
    left = _stop_jobs(namespace, name, uid)
    if left and retry < JOBS_GONE_RETRIES:
        raise kopf.TemporaryError(f"waiting for {left} PyTorchJobs to go before deleting {where}", delay=1)
    identity = SweepIdentity(namespace=namespace, name=name, uid=uid, created=body["metadata"].get("creationTimestamp"))
    try:
        removed, kept = delete_owned(open_store(uri), layout, identity)
    except ClaimRefused as e:
        events.post(body, "Warning", reason="StoreNotDeleted", message=f"nothing deleted: {e.message}"[:1000])
        return
    except (StoreError, ValueError) as e:
        if retry < JOBS_GONE_RETRIES + FINALIZER_RETRIES:
            raise kopf.TemporaryError(f"deleting store data failed: {e}", delay=min(2 ** (retry % 6), 30)) from e
        events.post(body, "Warning", reason="StoreCleanupFailed",
                   message=f"gave up deleting {where} after {retry + 1} tries: {e}")  # fmt: skip
        return
    note = f"; kept {kept} objects there that this sweep did not write" if kept else ""
    events.post(body, "Normal", reason="StoreDeleted", message=f"deleted {removed} objects under {where}{note}")
