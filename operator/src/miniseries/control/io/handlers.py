"""kopf handlers: observe (observe.py), decide (decide.py), carry out (act.py). The reconcile loop.

One reconcile function serves every trigger (create, resume after an operator
restart, spec update, an event of one of its PyTorchJobs or TrainJobs, the store-polling timer), so all of
them converge on the same state from what exists in the API server and the
store: creating with deterministic names and treating 409 as success makes a
restart mid-sweep create no duplicates.

The handlers are methods of an `Operator` holding its settings (control/settings.OperatorSettings,
built once by `miniseries operator`); `register(settings, registry)` puts them into a kopf registry.
Nothing is registered at import, and nothing here is configured by assigning a module global.

One reconcile: read the sweep; check it (spec, plan, admission policy, store roots; the plan
is made here, once); claim its store key; observe its jobs and store into plain data; `decide`
the whole new status and the actions; record the status (only if it changed, or if the
cluster is about to be touched); carry out the actions.

Deciding what to launch is fenced, not just locked: the handler reads the sweep,
decides, and writes the new status with the resourceVersion it read as a precondition
*before* creating any job. Two deciders that read the same sweep (two threads of this
process, a replica during a peering hand-over, an operator restarted while the old one
still finishes a handler) cannot both get their status written, so they cannot both
spend a free slot; the loser reads again and then sees the winner's launch, as a job or
as a recorded launch (decide.py).

The accepted spec is kept in the store (`<namespace>/<sweep>/sweep.json`, the
layout's place for "the spec the runs were planned from"): a spec change that would
invalidate started runs is refused and the operator keeps reconciling the
accepted one (only `suspend` is taken from the new spec; spec_changes.py).

Before anything is read or written there, the sweep claims its store key (layout.claim):
a key another sweep owns, or data of the layout before namespaces, is refused with a
condition and an Event, and a store URI outside the operator's store roots (its settings' policy,
`--store-root`) is refused as an invalid spec.store.uri.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
from kubernetes import config
from kubernetes.client.rest import ApiException

from miniseries.api.errors import SpecError
from miniseries.api.spec import (
    GROUP,
    PLURAL,
    VERSION,
    PlanStatus,
    ScalingSweep,
    ScalingSweepSpec,
    ScalingSweepStatus,
)
from miniseries.api.sweepfile import parse_sweep, save_spec
from miniseries.contract.layout import (
    ADOPT_ANNOTATION,
    ClaimRefused,
    SweepIdentity,
    SweepLayout,
    claim,
    delete_owned,
    join_uri,
)
from miniseries.contract.store import StoreError, open_store
from miniseries.control.backends import manifests as jobs
from miniseries.control.decide import forecast_status as forecasts
from miniseries.control.decide import sweep_status as st
from miniseries.control.decide.observations import parse_time, rfc3339
from miniseries.control.decide.reconcile import decide
from miniseries.control.io import act, events, kube
from miniseries.control.io import operator_metrics as opmetrics
from miniseries.control.io.observe import (
    admission,
    backend_problem,
    observe,
    owned_jobs,
    parse_status,
    read_sweep,
    served_kinds,
)
from miniseries.control.settings import OperatorSettings
from miniseries.plan.planner import make_plan

log = logging.getLogger("miniseries.operator")

#: A deleted sweep's jobs may take this long to go (their controller's finalizers) before its pods are
#: counted on alone; its pods are waited for until their grace period ends plus WRITERS_MARGIN_SECONDS.
JOBS_GONE_SECONDS = 30.0
WRITERS_MARGIN_SECONDS = 60.0
CONFLICT_RETRIES = 5


def _now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- startup


def serve_terminating_namespaces() -> None:
    """Serve a listed namespace that is being deleted, also when the operator starts during that deletion.

    kopf (1.38) serves the namespaces it lists and watches; one marked for deletion whose content is not
    gone yet ("termination pending") keeps being served if it was served already, but is never added: an
    operator watching listed namespaces (the chart's watch.allNamespaces=false) restarted mid-deletion
    never saw that namespace's sweeps, never released kopf's finalizer on them, and the namespace stayed
    Terminating (issue 27). The all-namespaces mode does not look at namespaces and is not affected.
    Called by `miniseries operator` for listed namespaces; tests/unit/test_namespace_deletion.py checks
    that kopf's function still behaves as assumed here."""
    from kopf._cogs.structs import references
    from kopf._core.reactor import observation

    if getattr(observation.revise_namespaces, "serves_terminating", False):
        return
    original = observation.revise_namespaces

    def revise(*, insights: Any, namespaces: Any, raw_events: Any = (), raw_bodies: Any = ()) -> None:
        original(insights=insights, namespaces=namespaces, raw_events=raw_events, raw_bodies=raw_bodies)
        objects = [e["object"] for e in raw_events if e.get("type") != "DELETED"] + list(raw_bodies)
        for obj in objects:
            name = obj["metadata"]["name"]
            pending = obj["metadata"].get("deletionTimestamp") and observation.get_blockers(
                {"type": None, "object": obj}  # type: ignore[typeddict-item]
            )
            if pending and any(references.match_namespace(name, p) for p in namespaces):
                insights.namespaces.add(name)

    revise.serves_terminating = True  # type: ignore[attr-defined]
    observation.revise_namespaces = revise


def probe_sweeps(**_: Any) -> int:
    """Part of /healthz: the API server answers for our resource."""
    return len(kube.custom().list_cluster_custom_object(GROUP, VERSION, PLURAL, limit=1).get("items", []))


# ---------------------------------------------------------------- reconcile: what needs no settings


def _refuse(body: dict[str, Any], previous: ScalingSweepStatus, reason: str, err: SpecError, permanent: bool) -> None:
    """Ready=False naming the fields, and a Warning event; nothing is written again while the
    problem stays the same (a poll, a restart), so it is one Event, not one per reconcile."""
    meta = body["metadata"]
    msg = "; ".join(str(p) for p in err.problems)[:1000]
    status = st.refused(previous, reason, msg, _now(), meta.get("generation"), stops=False)
    if act.record(meta["namespace"], meta["name"], status, previous):
        events.post(body, "Warning", reason, msg)
    if permanent:
        raise kopf.PermanentError(str(err))


def _store_refused(body: dict[str, Any], previous: ScalingSweepStatus, err: ClaimRefused) -> None:
    """The sweep may not use its store key: Ready=False with the reason naming both sweeps, one Event per change."""
    meta = body["metadata"]
    before = st.condition(previous, "Ready")
    msg = err.message[:1000]
    status = st.refused(previous, err.reason, msg, _now(), meta.get("generation"), stops=True)
    act.record(meta["namespace"], meta["name"], status, previous)
    if before is None or before.reason != err.reason or before.message != msg:
        events.post(body, "Warning", reason=err.reason, message=msg)


def _in_flight(status: kopf.Status, **_: Any) -> bool:
    return st.needs_polling(dict(status))


def _deletes_store(spec: kopf.Spec, **_: Any) -> bool:
    return spec.get("deletionPolicy", "Retain") == "Delete"


def _writer_pods(namespace: str, sweep: str) -> list[dict[str, Any]]:
    """The sweep's pods that still exist (trainers and the tokenizer, by the sweep label): processes
    that can still write under its store key, however long their grace period."""
    try:
        resp = kube.core().list_namespaced_pod(
            namespace, label_selector=f"{jobs.LABEL_SWEEP}={sweep}", _preload_content=False
        )
    except ApiException as e:
        if e.status == 403:  # a chart without `list` on pods: the uid fence alone protects a new sweep
            log.warning(
                "cannot list pods in %s (%s): not waiting for %s's trainers to stop", namespace, e.reason, sweep
            )
            return []
        raise
    return json.loads(resp.data).get("items", [])  # type: ignore[no-any-return]


def writers_deadline(deleted_at: datetime, pods: list[dict[str, Any]], jobs_left: int) -> datetime:
    """Until when a deleting sweep waits for its writers: each pod until its deletionTimestamp (the
    API server sets it to the deletion time plus the pod's grace period) or, not yet deleted, the
    sweep's deletion time plus its grace period; and its jobs JOBS_GONE_SECONDS; plus a margin.
    After that a pod is on a lost node (it may never report back) and the uid fence covers it."""
    ends = [deleted_at + timedelta(seconds=JOBS_GONE_SECONDS)] if jobs_left else [deleted_at]
    for pod in pods:
        meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        grace = float(spec.get("terminationGracePeriodSeconds") or 30)
        ends.append(parse_time(meta.get("deletionTimestamp")) or deleted_at + timedelta(seconds=grace))
    return max(ends) + timedelta(seconds=WRITERS_MARGIN_SECONDS if pods or jobs_left else 0)


# ---------------------------------------------------------------- the operator


@dataclasses.dataclass(frozen=True)
class Refusal:
    """Why a sweep is not reconciled: the Ready condition's reason and the fields it names."""

    reason: str
    error: SpecError


class Operator:
    """One operator's handlers, bound to its settings; `register` puts them into a kopf registry."""

    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def configure(self, settings: kopf.OperatorSettings, **_: Any) -> None:
        """kopf's startup handler. `settings` is kopf's own (kopf passes it by that name); ours is self.settings."""
        # Progress in annotations: status is ours, and its schema would prune kopf's fields.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="miniseries.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="miniseries.dev")
        settings.posting.level = logging.INFO
        settings.execution.max_workers = 8
        if self.settings.optional_peering:
            # A namespaced KopfPeering lives in the namespace it guards: when that namespace is deleted the
            # namespace controller removes it, and kopf's mandatory peering (an explicit --peering name) then
            # keeps the operator paused there for good, so a restarted operator never releases the sweeps'
            # finalizers and the namespace stays Terminating (issue 27). Optional peering elects the same way
            # while the object exists and acts alone once it is gone; the status writes are fenced anyway
            # (resourceVersion preconditions), so a moment of two active replicas launches nothing twice.
            settings.peering.name = self.settings.optional_peering
            settings.peering.mandatory = False
        if self.settings.kubeconfig:
            config.load_kube_config(config_file=self.settings.kubeconfig)
        else:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                config.load_kube_config()
        kube.reset()  # the shared client is built from this configuration

    def reconcile(self, body: dict[str, Any], *, permanent_on_invalid: bool = False) -> None:
        meta = body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        labels = {"sweep": name, opmetrics.NAMESPACE_LABEL: ns}
        start = time.perf_counter()
        opmetrics.RECONCILES.labels(**labels).inc()
        # Exported at 0 from the first reconcile: a counter series that appears only on the first
        # error makes rate() blind to that error (and leaves the dashboard's panel empty until then).
        errors = opmetrics.ERRORS.labels(**labels)
        try:
            with self._lock(ns, name):
                for attempt in range(CONFLICT_RETRIES):
                    try:
                        self._reconcile(body, permanent_on_invalid)
                        break
                    except act.Conflict as e:
                        log.info("reconcile of %s/%s raced another writer (try %d): %s", ns, name, attempt + 1, e)
                else:
                    raise kopf.TemporaryError(f"{ns}/{name} kept changing while reconciling", delay=1)
        except (kopf.PermanentError, kopf.TemporaryError):
            raise
        except StoreError as e:
            errors.inc()
            self._store_unreachable(ns, name, e)
            raise kopf.TemporaryError(f"store unreachable: {e}", delay=self.settings.store_retry_seconds) from None
        except Exception:
            errors.inc()
            raise
        finally:
            opmetrics.DURATION.labels(**labels).observe(time.perf_counter() - start)

    def check(self, body: dict[str, Any]) -> tuple[ScalingSweep, PlanStatus] | Refusal:
        """The sweep and its plan (made here, once), or why this operator refuses it: its spec or plan
        (InvalidSpec), a backend it does not serve or its admission policy (AdmissionDenied), a store
        outside its store roots (StoreNotAllowed). Reads the cluster only for a named Secret's labels."""
        ns, policy = body["metadata"]["namespace"], self.settings.policy
        try:
            sweep = parse_sweep({k: body[k] for k in ("apiVersion", "kind", "metadata", "spec")})
            # budget, ceiling and packing checks name their fields too; this is the reconcile's plan
            plan = make_plan(sweep.spec, max_gpu_hours_without_budget=policy.max_gpu_hours_without_budget)
        except SpecError as e:
            return Refusal("InvalidSpec", e)
        denied = backend_problem(sweep.spec, self.settings.backends) or admission(
            policy, sweep.spec, ns, len(plan.runs)
        )
        if denied is not None:
            return Refusal("AdmissionDenied", denied)
        outside = policy.store_problem(sweep.spec.store.uri, ns)
        if outside:
            return Refusal("StoreNotAllowed", SpecError.one("spec.store.uri", outside))
        return sweep, plan

    def _reconcile(self, body: dict[str, Any], permanent_on_invalid: bool) -> None:
        meta = body["metadata"]
        ns, name = meta["namespace"], meta["name"]
        # Re-read: the trigger may be a job event or a timer carrying an old copy of the sweep,
        # and the status patch below is conditional on exactly this version.
        fresh = read_sweep(ns, name)
        if fresh is None:
            return
        body, meta = fresh, fresh["metadata"]
        if meta.get("deletionTimestamp"):
            return
        previous = parse_status(body)
        checked = self.check(body)
        if isinstance(checked, Refusal):
            _refuse(body, previous, checked.reason, checked.error, permanent_on_invalid)
            return
        sweep, plan = checked
        store = open_store(sweep.spec.store.uri)
        layout = SweepLayout(ns, name)
        identity = SweepIdentity(namespace=ns, name=name, uid=meta["uid"], created=meta.get("creationTimestamp"))
        try:
            manifest = claim(store, layout, identity, [r.name for r in plan.runs],
                             adopt_uid=(meta.get("annotations") or {}).get(ADOPT_ANNOTATION))  # fmt: skip
        except ClaimRefused as e:
            _store_refused(body, previous, e)
            return
        # what this sweep reads as its own: its uid's documents and those of the sweeps it adopted, never
        # a deleted predecessor's (whose trainer may have written after this claim)
        owners = frozenset({identity.uid, *(a.uid for a in manifest.adopted_from)})
        retry, served = self.settings.retry, self.settings.backends
        observations, accepted = observe(body, sweep.spec, plan, store, layout, previous, _now(), owners, retry, served)
        if accepted.save:
            save_spec(store, layout, accepted.spec)
        due = forecasts.due(observations.plan, observations.jobs, observations.store, previous.runs)
        if due:  # a forecast is an observation of the store, computed (numpy) only when one is due
            made = act.forecast(store, layout, accepted.spec, observations.plan, observations.store, due)
            observations = dataclasses.replace(observations, forecasts=made)
        decision = decide(observations)
        status, actions = decision.status, decision.actions
        if actions.fit:
            fit, report_uri, error = act.fit(store, layout, accepted.spec)
            status = st.with_fit(status, fit, report_uri, error, _now())
        act.record(ns, name, status, previous, meta["resourceVersion"], fence=actions.touch_the_cluster())
        act.carry_out(body, accepted.spec, actions, observations.jobs)
        act.export_metrics(ns, name, status)

    def _store_unreachable(self, namespace: str, name: str, err: StoreError) -> None:
        """Say on the sweep itself why nothing moves: a condition naming spec.store.uri, and an Event.

        Nothing is launched while the store cannot be read and written (the accepted spec, results
        and checkpoints live there); the next reconcile that reaches it sets StoreReachable back to True.
        """
        body = read_sweep(namespace, name)
        if body is None:
            return
        store = body.get("spec", {}).get("store") or {}
        secret = store.get("credentialsSecret")
        where = f"the Secret {secret!r} (spec.store.credentialsSecret)" if secret else "the operator's environment"
        if str(store.get("uri") or "").startswith("file://"):
            check = (
                "Check that the directory exists or can be created, and is writable by the operator and the trainers"
            )
        else:
            check = (f"Check that the bucket exists and that AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID and "
                     f"AWS_SECRET_ACCESS_KEY in {where} reach it")  # fmt: skip
        msg = (
            f"spec.store.uri {store.get('uri')!r} cannot be read or written: {err}. {check}; "
            f"retrying every {self.settings.store_retry_seconds:g} s"
        )[:1000]
        previous, now, gen = parse_status(body), _now(), body["metadata"].get("generation")
        # The jobs are still visible: a run whose job failed is not shown Running meanwhile.
        observed, retry_limit = None, ScalingSweepSpec.model_fields["retry_limit"].default
        try:
            observed = owned_jobs(namespace, name, body["metadata"]["uid"], self.settings.backends)
            retry_limit = int(body.get("spec", {}).get("retryLimit", retry_limit))
        except (ApiException, ValueError, TypeError) as e:
            observed = None
            log.warning("jobs of %s/%s not observed while its store is unreachable: %s", namespace, name, e)
        before = st.condition(previous, "StoreReachable")
        status = st.store_unreachable(previous, observed, retry_limit, msg, now, gen)
        act.record(namespace, name, status, previous)
        if before is None or before.status != "False" or before.message != msg:
            events.post(body, "Warning", reason="StoreUnreachable", message=msg)

    def on_create(self, body: kopf.Body, **_: Any) -> None:
        self.reconcile(dict(body), permanent_on_invalid=True)

    def on_resume(self, body: kopf.Body, **_: Any) -> None:
        self.reconcile(dict(body))

    def on_update(self, body: kopf.Body, **_: Any) -> None:
        self.reconcile(dict(body), permanent_on_invalid=True)

    def poll_store(self, body: kopf.Body, **_: Any) -> None:
        """Progress and results only appear in the store: poll it, while something can still move
        (kopf stops the timer when the sweep's status no longer matches `_in_flight`, starts it again
        when it does; a spec change or a job event reconciles a quiet sweep as before)."""
        self.reconcile(dict(body))

    def on_job_event(self, body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> None:
        sweep = labels[jobs.LABEL_SWEEP]
        parent = read_sweep(namespace, sweep)
        if parent is not None:  # else the sweep is gone, and garbage collection takes its jobs
            self.reconcile(parent)

    def _stop_jobs(self, namespace: str, sweep: str, uid: str) -> int:
        """Delete the sweep's jobs (foreground: their pods first); how many still exist."""
        left = 0
        for job in owned_jobs(namespace, sweep, uid, self.settings.backends):
            left += 1
            if not job.deleting:
                act.delete_job(namespace, job.name, job.kind)
        try:
            kube.batch().delete_namespaced_job(
                jobs.tokenizer_job_name(sweep), namespace, propagation_policy="Foreground"
            )
        except ApiException as e:
            if e.status != 404:
                raise
        return left

    def on_delete(
        self, body: kopf.Body, spec: kopf.Spec, name: str, namespace: str, uid: str, retry: int, **_: Any
    ) -> None:
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
        bad = self.settings.policy.store_problem(uri, namespace)
        if bad:
            events.post(body, "Warning", reason="StoreNotDeleted", message=f"nothing deleted: spec.store.uri {bad}")
            return
        # No process of the sweep may write after its data is gone (a new sweep of the same name would
        # find it): its jobs and its pods must be gone, however long the trainers' grace period (issue 27).
        left = self._stop_jobs(namespace, name, uid)
        pods = _writer_pods(namespace, name)
        deleted_at = parse_time(body["metadata"].get("deletionTimestamp")) or _now()
        deadline = writers_deadline(deleted_at, pods, left)
        if (left or pods) and _now() < deadline:
            names = ", ".join(sorted(p["metadata"]["name"] for p in pods)[:5])
            raise kopf.TemporaryError(f"waiting for {left} jobs and {len(pods)} pods ({names}) to stop before "
                                      f"deleting {where} (until {rfc3339(deadline)} at most)", delay=2)  # fmt: skip
        if left or pods:
            events.post(body, "Warning", reason="WritersNotGone",
                        message=f"{left} jobs and {len(pods)} pods of this sweep still exist past their grace period "
                        f"(a lost node?); deleting {where} anyway: a new sweep of this name never reads what they "
                        "write (their checkpoints and results carry this sweep's uid)")  # fmt: skip
        identity = SweepIdentity(
            namespace=namespace, name=name, uid=uid, created=body["metadata"].get("creationTimestamp")
        )
        try:
            removed, kept = delete_owned(open_store(uri), layout, identity)
        except ClaimRefused as e:
            events.post(body, "Warning", reason="StoreNotDeleted", message=f"nothing deleted: {e.message}"[:1000])
            return
        except (StoreError, ValueError) as e:
            if _now() < deadline + timedelta(seconds=self.settings.store_delete_seconds):
                raise kopf.TemporaryError(f"deleting store data failed: {e}", delay=min(2 ** (retry % 6), 30)) from e
            events.post(body, "Warning", reason="StoreCleanupFailed",
                       message=f"gave up deleting {where} after {retry + 1} tries: {e}")  # fmt: skip
            return
        note = f"; kept {kept} objects there that this sweep did not write" if kept else ""
        events.post(body, "Normal", reason="StoreDeleted", message=f"deleted {removed} objects under {where}{note}")


def register(settings: OperatorSettings, registry: kopf.OperatorRegistry) -> Operator:
    """An operator with these settings, its handlers put into `registry` (run it with
    `kopf.run(registry=...)`). The ids are the handlers' names before they were methods: kopf keeps
    a handler's progress under its id on the sweep, so a restart across versions finds it.
    A backend not served is not watched, so its API group need not exist and the operator needs
    no RBAC for it."""
    op = Operator(settings)
    on, where = kopf.on, (GROUP, VERSION, PLURAL)
    # kopf logs in with the kubernetes client's configuration (the default registry brings this
    # login itself; a registry of our own has none, and kopf then finds no credentials)
    on.login(id="login_via_client", registry=registry)(kopf.login_via_client)
    on.startup(id="configure", registry=registry)(op.configure)
    on.probe(id="sweeps", registry=registry)(probe_sweeps)
    on.create(*where, id="on_create", registry=registry)(op.on_create)
    on.resume(*where, id="on_resume", registry=registry)(op.on_resume)
    on.update(*where, field="spec", id="on_update", registry=registry)(op.on_update)
    kopf.timer(*where, interval=settings.poll_seconds, idle=0, when=_in_flight, id="poll_store",
               registry=registry)(op.poll_store)  # fmt: skip
    for r in dict.fromkeys(r for backend in served_kinds(settings.backends) for r in backend.watches()):
        on.event(r.group, r.version, r.plural, labels={jobs.LABEL_SWEEP: kopf.PRESENT},
                 id=f"on_{r.plural}_event", registry=registry)(op.on_job_event)  # fmt: skip
    on.delete(*where, when=_deletes_store, id="on_delete", registry=registry)(op.on_delete)
    return op
