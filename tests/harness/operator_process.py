"""`miniseries operator` as a real process against the test cluster (tests/harness/cluster.py), and a
stand-in for what runs PyTorchJobs there.

The cluster has a real API server, etcd, garbage collector and scheduler, and a kwok GPU node,
but no Kubeflow training-operator and no kubelet that runs containers (tests/e2e covers that
path). So :class:`JobDriver` plays their part, visibly and only through the API and the store:
it sets each PyTorchJob's conditions through the status subresource (Created, Running, then
Succeeded or Failed, as the training-operator does) and runs the job's own container args with
tests/support/fake_trainer.py, which honours the trainer's contract (progress, checkpoints, resume,
results.json) in the same store the operator reads. Used by tests/integration/test_operator_cluster.py
and bench/operator_reconcile.py.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.harness.binaries import REPO
from tests.harness.cluster import Cluster
from tests.harness.processes import Unreachable, free_port, unwatch, wait_for, watch

PYTHONPATH = os.pathsep.join(
    [str(REPO / "operator" / "src"), str(REPO / "trainer_image" / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]
)
PYTORCHJOBS = ("kubeflow.org", "v1", "pytorchjobs")
SWEEPS = ("miniseries.dev", "v1alpha1", "scalingsweeps")
FINISHED = ("Succeeded", "Failed")
POD_FINALIZER = "test.miniseries.dev/process"  # JobDriver(pods=True): a pod stays while its process runs
#: JobDriver's pace: each poll is two LISTs (Jobs, PyTorchJobs). A quarter second instead cost more CPU, not
#: less (test_operator_cluster.py: 114 CPU s against 105): its tests ran longer, and their operators polled on.
POLL_SECONDS = 0.1


def sweep_url(namespace: str, name: str) -> str:
    """The API server's path of a ScalingSweep (Cluster.get_json reads it)."""
    group, version, plural = SWEEPS
    return f"/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}"


#: What a ScalingSweep CRD older than the API server's own checks of strings and across fields lacked (`older=True`).
API_SERVER_CHECKS = ("pattern", "maxLength", "x-kubernetes-validations")


def _without(node: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(node, dict):
        return {k: _without(v, keys) for k, v in node.items() if k not in keys}
    if isinstance(node, list):
        return [_without(v, keys) for v in node]
    return node


def install_crds(cluster: Cluster, *, older: bool = False) -> None:
    """The ScalingSweep CRD as `miniseries crd` renders it, and kopf's peering CRDs. `older`: the CRD
    without its patterns, lengths and CEL rules, as installed before it had them, so that a test can
    reach the operator's own checks (which stay for such clusters and other clients) with a spec the
    current CRD refuses; reinstall without `older` when done (the cluster is the session's)."""
    crd = subprocess.run(
        [sys.executable, "-m", "miniseries.cli", "crd"],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": PYTHONPATH},
    ).stdout
    if older:
        crd = yaml.safe_dump(_without(yaml.safe_load(crd), API_SERVER_CHECKS), sort_keys=False)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", stdin=crd)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / "kopf-peering.yaml"))
    established = "-o=jsonpath={.status.conditions[?(@.type=='Established')].status}"
    for name in ("scalingsweeps.miniseries.dev", "kopfpeerings.kopf.dev"):
        wait_for(f"CRD {name}", lambda n=name: cluster.kubectl("get", f"crd/{n}", established).stdout == "True", 60)
    # An updated CRD takes effect in the API server's handlers a moment after it is stored (Established
    # is already True): wait until a probe's dot-dot store URI is refused (or, `older`, taken) by a dry run.
    probe = yaml.safe_dump(sweep_doc("crd-probe", "file:///probe/../x"))

    def in_force() -> bool:
        dry = cluster.kubectl("create", "--dry-run=server", "-n", "default", "-f", "-", stdin=probe, check=False)
        return dry.returncode == 0 if older else "path segment" in dry.stderr

    wait_for("the CRD's string checks " + ("gone" if older else "in force"), in_force, 60)


@contextlib.contextmanager
def older_crd(cluster: Cluster) -> Iterator[None]:
    """Within: the ScalingSweep CRD without the API server's string checks (`install_crds(older=True)`)."""
    install_crds(cluster, older=True)
    try:
        yield
    finally:
        install_crds(cluster)


def sweep_doc(name: str, store_uri: str, *, depths: list[int] | None = None, **resources: Any) -> dict[str, Any]:
    """examples/tiny.yaml under another name and store, its tokenizer trained by the sweep."""
    doc: dict[str, Any] = yaml.safe_load((REPO / "examples" / "tiny.yaml").read_text())
    doc["metadata"] = {"name": name}
    spec = doc["spec"]
    spec["depths"] = depths or [1, 2, 3]
    spec["store"] = {"uri": store_uri}
    spec["data"]["shardsUri"] = f"{store_uri}/data/shards"
    spec["resources"].update(cpu="1", memory="1Gi", **resources)
    return doc


@dataclass
class Operator:
    """One `miniseries operator` process watching one namespace, with the admission policy the
    operator has without flags (the chart's defaults) plus `args`.

    Store roots are required (issue 28): `store_roots` are the test's own, by default the folder
    of its log (a test's tmp_path, where its file:// stores live); a test with an S3 store names
    its bucket (`store_roots=[s3.uri]`), never the single-tenant opt-out.
    """

    cluster: Cluster
    namespace: str
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    store_roots: list[str] | None = None
    args: list[str] = field(default_factory=list)
    peering: str | None = None
    priority: int | None = None
    poll_seconds: float = 0.5
    retry_base_seconds: float = 1.0
    proc: subprocess.Popen[bytes] | None = None
    metrics_port: int = 0
    liveness_port: int = 0
    all_namespaces: bool = False  # --all-namespaces instead of --namespace (the chart's default watch mode)

    def start(self) -> Operator:
        self.metrics_port, self.liveness_port = free_port(), free_port()
        where = "--all-namespaces" if self.all_namespaces else f"--namespace={self.namespace}"
        cmd = [sys.executable, "-m", "miniseries.cli", "operator", f"--kubeconfig={self.cluster.kubeconfig}",
               where, f"--metrics-port={self.metrics_port}", f"--liveness-port={self.liveness_port}"]  # fmt: skip
        roots = self.store_roots if self.store_roots is not None else [self.log_path.parent.resolve().as_uri()]
        cmd += [f"--store-root={r}" for r in roots] + self.args
        if self.peering:
            cmd.append(f"--peering={self.peering}")
        if self.priority is not None:
            cmd.append(f"--priority={self.priority}")
        env = {
            **os.environ,
            **self.env,
            "PYTHONPATH": PYTHONPATH,
            "MINISERIES_POLL_SECONDS": str(self.poll_seconds),
            "MINISERIES_RETRY_BASE_SECONDS": str(self.retry_base_seconds),
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        watch(f"operator ({self.namespace})", self.proc, self.log_path)  # its exit fails any wait at once
        wait_for(f"operator /healthz ({self.log_path})", self.healthy, 60)
        return self

    def healthy(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None:
            unwatch(self.proc)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def metric(self, name: str) -> float:
        """Sum of a metric's samples (all label sets) from this process's /metrics."""
        text = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total


# ---------------------------------------------------------------- reading the cluster


def custom(cluster: Cluster) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(cluster.api_client())


def get_sweep(api: Any, namespace: str, name: str) -> dict[str, Any]:
    return api.get_namespaced_custom_object(*SWEEPS[:2], namespace, SWEEPS[2], name)  # type: ignore[no-any-return]


def list_jobs(api: Any, namespace: str) -> list[dict[str, Any]]:
    return api.list_namespaced_custom_object(*PYTORCHJOBS[:2], namespace, PYTORCHJOBS[2])["items"]  # type: ignore[no-any-return]


def job_phase(job: dict[str, Any]) -> str:
    """The newest True condition's type ('' when the job has none)."""
    true = [c["type"] for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    for phase in ("Succeeded", "Failed", "Suspended", "Running", "Created"):
        if phase in true:
            return phase
    return ""


def condition(sweep: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in (sweep.get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def events(cluster: Cluster, namespace: str, name: str) -> list[dict[str, Any]]:
    out = cluster.kubectl("get", "events", "-n", namespace, f"--field-selector=involvedObject.name={name}", "-o=json")
    return json.loads(out.stdout)["items"]  # type: ignore[no-any-return]


def set_job_condition(api: Any, namespace: str, name: str, type_: str, reason: str, message: str = "") -> None:
    """What the training-operator writes: the new condition True, Running False once finished."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    job = api.get_namespaced_custom_object(*PYTORCHJOBS[:2], namespace, PYTORCHJOBS[2], name)
    conds = [c for c in (job.get("status") or {}).get("conditions") or [] if c["type"] != type_]
    if type_ in FINISHED:
        conds = [{**c, "status": "False"} if c["type"] == "Running" else c for c in conds]
    conds.append({"type": type_, "status": "True", "reason": reason, "message": message or reason,
                  "lastUpdateTime": now, "lastTransitionTime": now})  # fmt: skip
    status = {"conditions": conds, "replicaStatuses": {}}
    if type_ == "Running":
        status["startTime"] = now
    if type_ in FINISHED:
        status["completionTime"] = now
    api.patch_namespaced_custom_object_status(*PYTORCHJOBS[:2], namespace, PYTORCHJOBS[2], name, {"status": status})


class SweepHistory:
    """Every version of one ScalingSweep that the API server records, in order, from a watch
    started before the sweep is applied.

    Polling the live object sees only the versions that happen to be current when it looks: a
    state the operator passes through between two looks (a run Retrying for the second of its
    backoff, Running for a run that trains in a second) is missed on a busy machine, and the
    wait then runs to its deadline. A watch delivers every write, so `first` finds a state once
    it has been reached, however briefly, and knows when it was passed without ever being
    recorded (then the wait fails at once, listing what was recorded).
    """

    def __init__(self, cluster: Cluster, namespace: str, name: str) -> None:
        self.cluster, self.namespace, self.name = cluster, namespace, name
        self.versions: list[dict[str, Any]] = []  # each recorded object, oldest first
        self.relists = 0  # watches restarted from scratch (410 Gone): versions may be missing
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watch: Any = None
        self._rv: str | None = None
        self._thread = threading.Thread(target=self._loop, name=f"sweep-history-{name}", daemon=True)

    def __enter__(self) -> SweepHistory:
        # List first, then watch from the list's version: no write between the two is lost.
        listed = custom(self.cluster).list_namespaced_custom_object(
            *SWEEPS[:2], self.namespace, SWEEPS[2], field_selector=f"metadata.name={self.name}"
        )
        self.versions.extend(listed["items"])
        self._rv = listed["metadata"]["resourceVersion"]
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        from kubernetes import watch
        from kubernetes.client.rest import ApiException

        api = custom(self.cluster)
        rv = self._rv
        while not self._stop.is_set():
            self._watch = watch.Watch()
            kwargs: dict[str, Any] = {"field_selector": f"metadata.name={self.name}", "timeout_seconds": 5}
            if rv is not None:
                kwargs["resource_version"] = rv
            try:
                for ev in self._watch.stream(api.list_namespaced_custom_object, *SWEEPS[:2], self.namespace,
                                             SWEEPS[2], **kwargs):  # fmt: skip
                    obj = ev["object"]
                    rv = obj["metadata"]["resourceVersion"]
                    if ev["type"] in ("ADDED", "MODIFIED"):
                        with self._lock:
                            self.versions.append(obj)
                    if self._stop.is_set():
                        break
            except ApiException as e:
                if e.status == 410:  # too old to resume: start again from now (versions may be missed)
                    rv, self.relists = None, self.relists + 1
                else:
                    self.errors.append(f"{e.status}: {e.reason}")
                    self._stop.wait(0.2)
            except Exception as e:  # the API server restarting: watch again from the last version
                self.errors.append(f"{type(e).__name__}: {e}")
                self._stop.wait(0.2)

    def statuses(self) -> list[dict[str, Any]]:
        with self._lock:
            return [v.get("status") or {} for v in self.versions]

    def first(self, reached: Callable[[dict[str, Any]], Any], passed: Callable[[dict[str, Any]], Any]) -> Any:
        """What `reached` returns for the earliest recorded status where it is truthy; None while
        no status has reached it yet; raises Unreachable when a status that `passed` accepts was
        recorded before any that `reached` accepts (the state can no longer be reached)."""
        for st in self.statuses():
            if value := reached(st):
                return value
            if passed(st):
                raise Unreachable(
                    f"passed without being recorded ({len(self.versions)} versions, {self.relists} relists, "
                    f"watch errors {self.errors[-3:]}): {self.summary()}"
                )
        return None

    def summary(self) -> str:
        """Phase and run states of each recorded version, for failure messages."""

        def runs(st: dict[str, Any]) -> str:
            return ", ".join(f"{r['name']}:{r['state']}/{r.get('attempts')}" for r in st.get("runs", []))

        return "; ".join(f"{st.get('phase')} [{runs(st)}]" for st in self.statuses())


# ---------------------------------------------------------------- the stand-in


def container_env(core: Any, namespace: str, container: dict[str, Any]) -> dict[str, str]:
    """A container's environment as the kubelet builds it, read from the real API server: `envFrom`
    (secretRef, configMapRef, with their prefix) first, then `env` in order (a value, with `$(VAR)`
    expansion, or valueFrom secretKeyRef/configMapKeyRef; an optional reference to a missing Secret
    or key is left unset, a required one fails the container as the kubelet refuses to start it)."""
    from kubernetes.client.rest import ApiException

    def data(kind: str, name: str, optional: bool) -> dict[str, str] | None:
        try:
            if kind == "secret":
                raw = core.read_namespaced_secret(name, namespace).data or {}
                return {k: base64.b64decode(v).decode() for k, v in raw.items()}
            return dict(core.read_namespaced_config_map(name, namespace).data or {})
        except ApiException as e:
            if e.status == 404 and optional:
                return None
            raise RuntimeError(
                f"{kind} {namespace}/{name}: {e.status} {e.reason} (the kubelet would not start it)"
            ) from e

    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        kind, ref = ("secret", source["secretRef"]) if "secretRef" in source else ("configmap", source["configMapRef"])
        for k, v in (data(kind, ref["name"], bool(ref.get("optional"))) or {}).items():
            env[source.get("prefix", "") + k] = v
    for var in container.get("env") or []:
        value_from = var.get("valueFrom")
        if value_from is None:
            env[var["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)", lambda m: env.get(m.group(1), m.group(0)),
                                      var.get("value", ""))  # fmt: skip
            continue
        if "secretKeyRef" in value_from or "configMapKeyRef" in value_from:
            kind = "secret" if "secretKeyRef" in value_from else "configmap"
            ref = value_from.get("secretKeyRef") or value_from["configMapKeyRef"]
            got = data(kind, ref["name"], bool(ref.get("optional")))
            if got is None or ref["key"] not in got:
                if ref.get("optional"):
                    continue
                raise RuntimeError(f"env {var['name']}: key {ref['key']!r} not in {kind} {ref['name']}")
            env[var["name"]] = got[ref["key"]]
        else:
            raise ValueError(f"env {var['name']}: valueFrom {sorted(value_from)} is not resolved by the JobDriver")
    return env


@dataclass
class Seen:
    name: str
    run: str
    attempt: int
    uid: str
    gpus: int


def terminated_status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A `pods/status` patch as the kubelet writes it when the trainer's container has exited: its
    terminated state (exit code, reason, the log's end as message; terminationMessagePolicy
    FallbackToLogsOnError) and the pod's phase."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    terminated = {"exitCode": code, "reason": reason, "message": message, "startedAt": now, "finishedAt": now}
    return {"status": {"phase": "Succeeded" if code == 0 else "Failed", "containerStatuses": [
        {"name": "pytorch", "image": "stand-in", "imageID": "", "ready": False, "restartCount": 0,
         "state": {"terminated": terminated}}]}}  # fmt: skip


def write_terminated(cluster: Cluster, namespace: str, pod: str, code: int, reason: str, message: str) -> None:
    """Write `pod`'s terminated container through `pods/status`, as the kubelet does when it exits."""
    status = json.dumps(terminated_status(code, reason, message))
    cluster.kubectl("patch", "pod", pod, "-n", namespace, "--subresource=status", "--type=merge", "-p", status)


class JobDriver:
    """Runs the sweep's PyTorchJobs the way training-operator + kubelet would, through the API.

    Every poll it lists the namespace's PyTorchJobs; a new one gets Created and Running
    conditions and a fake trainer process with the job's container args and its environment as
    the kubelet resolves it (:func:`container_env`: envFrom, secretKeyRef, from the API server),
    in the store the operator reads; when that process exits the job gets Succeeded, or Failed with reason
    `ExitCode<n>`. `fail` names runs whose given attempts crash after `fail_step`. It also
    runs the tokenizer Job's args with tests/support/fake_tokenizer.py, and records what it saw:
    every (job, attempt, uid) and the most jobs and GPUs in flight at once.
    """

    def __init__(self, cluster: Cluster, namespace: str, env: dict[str, str] | None = None, *,
                 fail: dict[str, set[int]] | None = None, fail_step: int = 30, step_seconds: float = 0.002,
                 hold: set[str] | None = None, log_dir: Path | None = None, pods: bool = False,
                 pod_status: bool = False) -> None:  # fmt: skip
        from kubernetes import client

        self.cluster, self.namespace = cluster, namespace
        self.api = custom(cluster)
        self.batch = client.BatchV1Api(cluster.api_client())
        self.core = client.CoreV1Api(cluster.api_client())
        self.env = {**os.environ, **(env or {}), "PYTHONPATH": PYTHONPATH,
                    "FAKE_TRAINER_STEP_SECONDS": str(step_seconds)}  # fmt: skip
        self.fail, self.fail_step = fail or {}, fail_step
        self.hold = hold if hold is not None else set()  # runs left Running until released
        self.log_dir = log_dir
        #: Each trainer process also stands as a Pod (labels of its job's template, owned by the job, held by
        #: a finalizer until the process exits), so that a deleted job's pod is there while its trainer
        #: stops, as a kubelet's would be; and a process whose job is deleted gets SIGTERM (`stopped`).
        self.pods = pods
        #: With `pods`: an exited process's pod gets its container's terminated state through `pods/status` (the
        #: exit code, and the end of its log as the message, as FallbackToLogsOnError has the kubelet copy it)
        #: and stays, without its finalizer, until its job is deleted, as a kubelet's pod does: what the
        #: operator reads a failed trainer's exit code from (control/decide/pod_troubles.py). Needs `log_dir` for the log.
        self.pod_status = pod_status
        self.logs: dict[str, Path] = {}  # job uid -> its process's log
        self.pods_gone: set[str] = set()  # job uids whose pod was deleted
        self.stopped: dict[str, float] = {}  # job uid -> when its process was sent SIGTERM
        self.exited: dict[str, float] = {}  # job uid -> when its process was seen exited
        self.seen: dict[str, Seen] = {}  # uid -> job
        self.procs: dict[str, tuple[subprocess.Popen[bytes], str]] = {}  # uid -> (process, job name)
        self.tokenizers: set[str] = set()
        self.reported: set[str] = set()  # uids whose final condition was written
        self.max_in_flight = 0  # unfinished PyTorchJobs at once
        self.max_in_flight_by_sweep: dict[str, int] = {}
        self.max_training = 0  # trainer processes alive at once
        self.max_gpus = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"job-driver-{namespace}", daemon=True)

    def __enter__(self) -> JobDriver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        for proc, _ in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if self.pods:  # every process has exited: no pod of ours may hold its namespace's deletion
            self._kubelet({})

    def duplicates(self) -> list[tuple[str, int]]:
        """(job, attempt) pairs created more than once."""
        keys = [(s.name, s.attempt) for s in self.seen.values()]
        return sorted({k for k in keys if keys.count(k) > 1})

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception as e:  # the API server restarting, a job deleted under us: next poll
                self.errors.append(f"{type(e).__name__}: {e}")
            self._stop.wait(POLL_SECONDS)

    def _create_pod(self, job: dict[str, Any]) -> None:
        from kubernetes.client.rest import ApiException

        meta, tmpl = job["metadata"], job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": f"{meta['name']}-master-0", "labels": tmpl["metadata"]["labels"],
                            "finalizers": [POD_FINALIZER],
                            "ownerReferences": [{"apiVersion": "kubeflow.org/v1", "kind": "PyTorchJob",
                                                 "name": meta["name"], "uid": meta["uid"]}]},
               # never scheduled: the process here is its container; the template's security settings, so
               # the restricted namespace's PodSecurity admission takes it as it takes the job's own pods
               "spec": {"nodeSelector": {"miniseries.dev/test-no-node": "true"}, "containers": [
                   {"name": "pytorch", "image": "stand-in",
                    "securityContext": tmpl["spec"]["containers"][0].get("securityContext", {})}],
                   "securityContext": tmpl["spec"].get("securityContext", {}),
                   "terminationGracePeriodSeconds": tmpl["spec"].get("terminationGracePeriodSeconds", 30)}}  # fmt: skip
        core = self.core
        try:
            core.create_namespaced_pod(self.namespace, pod)
        except ApiException as e:  # a kept pod of the job's earlier incarnation (same name), not deleted yet
            if e.status != 409:
                raise
            self._delete_pod(core, pod["metadata"]["name"])
            core.create_namespaced_pod(self.namespace, pod)

    def _delete_pod(self, core: Any, pod: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            core.patch_namespaced_pod(pod, self.namespace, {"metadata": {"finalizers": None}})
            core.delete_namespaced_pod(pod, self.namespace, grace_period_seconds=0)
        except ApiException as e:
            if e.status != 404:
                raise

    def _write_terminated(self, core: Any, uid: str, pod: str, code: int) -> None:
        """What the kubelet writes when the container exits: its terminated state, the log's end as message."""
        log = self.logs[uid].read_bytes()[-2048:].decode(errors="replace") if uid in self.logs else ""
        status = terminated_status(code, "Completed" if code == 0 else "Error", "\n".join(log.splitlines()[-80:]))
        core.patch_namespaced_pod_status(pod, self.namespace, status)
        core.patch_namespaced_pod(pod, self.namespace, {"metadata": {"finalizers": None}})

    def _kubelet(self, jobs: dict[str, dict[str, Any]]) -> None:
        """SIGTERM to a process whose job is deleted (or gone); its pod goes once the process has exited."""
        from kubernetes.client.rest import ApiException

        core = self.core
        for uid, (proc, name) in self.procs.items():
            job = jobs.get(uid)
            going = job is None or bool(job["metadata"].get("deletionTimestamp"))
            if proc.poll() is None and uid not in self.stopped and going:
                proc.send_signal(signal.SIGTERM)
                self.stopped[uid] = time.time()
                self.reported.add(uid)  # a deleted job gets no final condition
            if proc.poll() is None:
                continue
            if uid not in self.exited:
                self.exited[uid] = time.time()
                if self.pod_status and not going:
                    try:
                        self._write_terminated(core, uid, f"{name}-master-0", proc.returncode)
                    except ApiException as e:
                        if e.status != 404:
                            raise
            if uid not in self.pods_gone and (going or not self.pod_status):
                self.pods_gone.add(uid)
                self._delete_pod(core, f"{name}-master-0")

    def _spawn(self, module: str, args: list[str], extra: dict[str, str], log_name: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{log_name}.log").open("ab") if self.log_dir else subprocess.DEVNULL
        # The container's own environment over this process's (PYTHONPATH, the fake's knobs stay).
        return subprocess.Popen([sys.executable, "-m", module, *args], env={**self.env, **extra},
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip

    def _step(self) -> None:
        for job in self.batch.list_namespaced_job(self.namespace).items:
            if job.metadata.uid not in self.tokenizers:
                self.tokenizers.add(job.metadata.uid)
                container = self.batch.api_client.sanitize_for_serialization(job.spec.template.spec.containers[0])
                env = container_env(self.core, self.namespace, container)
                self._spawn("tests.support.fake_tokenizer", container["args"], env, job.metadata.name).wait()
        jobs = list_jobs(self.api, self.namespace)
        in_flight = [j for j in jobs if job_phase(j) not in FINISHED]
        self.max_in_flight = max(self.max_in_flight, len(in_flight))
        for sweep in {j["metadata"]["labels"]["miniseries.dev/sweep"] for j in in_flight}:
            n = sum(j["metadata"]["labels"]["miniseries.dev/sweep"] == sweep for j in in_flight)
            self.max_in_flight_by_sweep[sweep] = max(self.max_in_flight_by_sweep.get(sweep, 0), n)
        gpus = sum(int(j["spec"]["nprocPerNode"]) for j in in_flight)
        self.max_gpus = max(self.max_gpus, gpus)
        for j in jobs:
            meta, uid = j["metadata"], j["metadata"]["uid"]
            labels = meta["labels"]
            if uid not in self.seen:
                self.seen[uid] = Seen(meta["name"], labels["miniseries.dev/run"],
                                      int(labels["miniseries.dev/attempt"]), uid, int(j["spec"]["nprocPerNode"]))  # fmt: skip
            if job_phase(j) == "" and not meta.get("deletionTimestamp"):
                set_job_condition(self.api, self.namespace, meta["name"], "Created", "PyTorchJobCreated")
            suspended = (j["spec"].get("runPolicy") or {}).get("suspend")
            if uid in self.procs or suspended or job_phase(j) in FINISHED or meta.get("deletionTimestamp"):
                continue
            s = self.seen[uid]
            if s.run in self.hold:
                if job_phase(j) != "Running":
                    set_job_condition(self.api, self.namespace, meta["name"], "Running", "PyTorchJobRunning")
                continue
            container = j["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
            # what the kubelet would give it; a missing Secret stops here, the job not Running (next poll again)
            extra = container_env(self.core, self.namespace, container)
            if s.attempt in self.fail.get(s.run, set()):
                extra.update(FAKE_TRAINER_FAIL_RUN=s.run, FAKE_TRAINER_FAIL_STEP=str(self.fail_step))
            set_job_condition(self.api, self.namespace, meta["name"], "Running", "PyTorchJobRunning")
            if self.log_dir:
                self.logs[uid] = self.log_dir / f"{meta['name']}-a{s.attempt}.log"
            self.procs[uid] = (self._spawn("tests.support.fake_trainer", container["args"], extra, f"{meta['name']}-a{s.attempt}"),
                               meta["name"])  # fmt: skip
            if self.pods:
                self._create_pod(j)
        if self.pods:
            self._kubelet({j["metadata"]["uid"]: j for j in jobs})
        self.max_training = max(self.max_training, sum(p.poll() is None for p, _ in self.procs.values()))
        for uid, (proc, name) in list(self.procs.items()):
            if uid not in self.reported and proc.poll() is not None:
                if proc.returncode == 0:
                    set_job_condition(self.api, self.namespace, name, "Succeeded", "PyTorchJobSucceeded")
                else:
                    set_job_condition(self.api, self.namespace, name, "Failed", f"ExitCode{proc.returncode}",
                                      f"PyTorchJob {name} failed: master exited with code {proc.returncode}")  # fmt: skip
                self.reported.add(uid)
