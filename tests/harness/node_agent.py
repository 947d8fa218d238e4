"""A test node agent: a tiny kubelet stand-in that runs pod containers as local processes.

TEST TOOL ONLY. It lets the end-to-end tests run real trainer processes under a real API
server, scheduler and Kubeflow training-operator on a machine without a container runtime.

What it does, as a kubelet would:
  - registers a Node (label ``miniseries.dev/e2e-node=true``, CPU/memory capacity, optional
    ``nvidia.com/gpu`` capacity) and keeps its Ready condition and its Lease fresh;
  - polls the pods the scheduler bound to it; runs init containers in order, then every
    container, each as a local process from the container's ``command`` + ``args`` and its
    environment (``env`` values, ``valueFrom`` fieldRef/secretKeyRef/configMapKeyRef,
    ``envFrom`` secrets/configmaps, ``$(VAR)`` expansion);
  - reports phase, podIP/hostIP (127.0.0.1), conditions and container statuses (running,
    terminated with exit code, restart count) through ``pods/status``;
  - follows ``restartPolicy`` (Always/OnFailure restart a failed process in place);
  - kills a pod's processes (process group: SIGTERM, then SIGKILL) when the pod is deleted,
    then removes the pod object, as kubelet does after graceful termination.

What it does differently, on purpose:
  - images are never pulled: ``python``/``python3``/``torchrun`` are mapped to the
    interpreter (and its torchrun) this agent runs under, so the trainer must be installed
    in that virtualenv;
  - every pod gets IP 127.0.0.1, and an env value that names a Service of the pod's
    namespace (the training-operator sets ``MASTER_ADDR=<job>-master-0``), or a hostname under
    one (Trainer v2 sets ``PET_MASTER_ADDR=<job>-node-0-0.<job>``, the JobSet's headless Service),
    is rewritten to 127.0.0.1 so that torch's rendezvous reaches the master process on this host;
  - a container's port named ``metrics`` (the operator's trainers declare 9400) is moved to a free port
    of this host: every argument that is that number, or ends in ``=`` and it, names the new one
    (``--metrics-port=9400``; a torchrun pod's local ranks serve on the next ports, kept free too).
    On a kubelet each pod has its own network namespace; here every pod shares this host's, where two
    trainers of two test sessions side by side would collide on 9400;
  - volumes and probes are ignored; each container's output goes to
    ``<log-dir>/<namespace>_<pod>_<container>.log``;
  - every container runs with ``OMP_NUM_THREADS`` set to ``--omp-threads`` (1) unless its pod or this
    host's environment sets it: the pods share this host's few cores (2 on the CI machine), where two
    OpenMP threads per trainer spin against every other process's and a tiny trainer's step took
    10 times as long under load (3.1 s vs 0.32 s a step, 15.5 vs 6.3 s of CPU for 20 steps;
    tests/e2e/shapes.py). A kubelet would give the pod a CPU limit; torch does not read it.

Run: ``python -m tests.harness.node_agent --kubeconfig KC --name e2e-node --log-dir DIR``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.harness.processes import free_port_run

log = logging.getLogger("node_agent")

NODE_LABEL = "miniseries.dev/e2e-node"
#: <log-dir>/pids/<pod uid>_<container>: the pid of the container's process (its group leader), and
#: <...>.exit its exit code once it exited (also when the pod was deleted and no status says it)
PID_DIR = "pids"
POD_IP = "127.0.0.1"
_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known variables are replaced, unknown ones kept."""
    return _VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), text)


#: the ports after a moved metrics port kept free too: a torchrun pod's local rank k serves on port + k
METRICS_RANKS = 8


def moved_metrics_port(argv: list[str], spec: Any) -> list[str]:
    """``argv`` with the container's declared metrics port moved to a free one (see the module docstring)."""
    declared = [p.container_port for p in (spec.ports or []) if p.name == "metrics"]
    if not declared:
        return argv
    old, new = str(declared[0]), str(free_port_run(METRICS_RANKS))
    return [new if a == old else a[: -len(old)] + new if a.endswith("=" + old) else a for a in argv]


def local_command(argv: list[str], python: str) -> list[str]:
    """The image is not pulled: the interpreter named in the pod runs as this venv's Python."""
    if not argv:
        raise ValueError("container has no command: the node agent cannot run an image's entrypoint")
    head = os.path.basename(argv[0])
    if head in ("python", "python3") or re.fullmatch(r"python3\.\d+", head):
        return [python, *argv[1:]]
    if head == "torchrun":
        return [python, "-m", "torch.distributed.run", *argv[1:]]
    return argv


@dataclass
class Container:
    name: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    finished_at: str = ""
    exit_code: int | None = None
    exited: float = 0.0  # monotonic time of the last exit, for the restart back-off
    restarts: int = 0


def due_restart(box: Container, restart_policy: str) -> bool:
    """The restart policy says restart, and the kubelet-style back-off has passed
    (2 s doubling to 60 s; the kubelet starts at 10 s, too slow for short tests)."""
    if box.exit_code is None or restart_policy == "Never" or (restart_policy == "OnFailure" and box.exit_code == 0):
        return False
    return time.monotonic() - box.exited >= min(2.0 * 2**box.restarts, 60.0)


@dataclass
class PodRun:
    namespace: str
    name: str
    uid: str
    init_done: bool = False
    containers: dict[str, Container] = field(default_factory=dict)
    start_time: str = field(default_factory=now)
    reported: Any = None


class NodeAgent:
    def __init__(self, api: client.CoreV1Api, coord: client.CoordinationV1Api, args: argparse.Namespace) -> None:
        self.api, self.coord, self.args = api, coord, args
        self.name: str = args.name
        self.log_dir = Path(args.log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.pods: dict[str, PodRun] = {}

    # ---- node registration and heartbeats
    def register(self) -> None:
        capacity = {"cpu": str(self.args.cpus), "memory": "16Gi", "pods": "110"}
        if self.args.gpus:
            capacity["nvidia.com/gpu"] = str(self.args.gpus)
        taints = []
        if self.args.taint:
            key, _, rest = self.args.taint.partition("=")
            value, _, effect = rest.partition(":")
            taints.append({"key": key, "value": value, "effect": effect or "NoSchedule"})
        body = {
            "metadata": {"name": self.name, "labels": {NODE_LABEL: "true", "kubernetes.io/hostname": self.name}},
            "spec": {"taints": taints},
        }
        try:
            self.api.create_node(body)
        except ApiException as e:
            if e.status != 409:
                raise
        status = {
            "capacity": capacity,
            "allocatable": capacity,
            "addresses": [{"type": "InternalIP", "address": POD_IP}],
        }
        self.api.patch_node_status(self.name, {"status": status})
        self.heartbeat()

    def heartbeat(self) -> None:
        t = now()
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "node agent is polling",
                 "lastHeartbeatTime": t, "lastTransitionTime": t}  # fmt: skip
        self.api.patch_node_status(self.name, {"status": {"conditions": [ready]}})
        micro = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        lease = {"metadata": {"name": self.name, "namespace": "kube-node-lease"},
                 "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40, "renewTime": micro}}  # fmt: skip
        try:
            self.coord.patch_namespaced_lease(self.name, "kube-node-lease", {"spec": lease["spec"]})
        except ApiException as e:
            if e.status != 404:
                raise
            self.coord.create_namespaced_lease("kube-node-lease", lease)

    # ---- environment of a container, as the kubelet resolves it
    def _config_data(self, kind: str, namespace: str, name: str) -> dict[str, str]:
        if kind == "secret":
            data = self.api.read_namespaced_secret(name, namespace).data or {}
            return {k: base64.b64decode(v).decode() for k, v in data.items()}
        return dict(self.api.read_namespaced_config_map(name, namespace).data or {})

    def _field(self, pod: Any, path: str) -> str:
        m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
        if m:
            return str((getattr(pod.metadata, m.group(1)) or {}).get(m.group(2), ""))
        simple = {"metadata.name": pod.metadata.name, "metadata.namespace": pod.metadata.namespace,
                  "metadata.uid": pod.metadata.uid, "spec.nodeName": pod.spec.node_name,
                  "spec.serviceAccountName": pod.spec.service_account_name,
                  "status.podIP": POD_IP, "status.hostIP": POD_IP}  # fmt: skip
        if path not in simple:
            raise ValueError(f"fieldRef {path!r} is not supported by the node agent")
        return str(simple[path] or "")

    def environment(self, pod: Any, container: Any) -> dict[str, str]:
        ns = pod.metadata.namespace
        services = {s.metadata.name for s in self.api.list_namespaced_service(ns).items}
        env: dict[str, str] = {}
        for source in container.env_from or []:
            ref = source.secret_ref or source.config_map_ref
            kind = "secret" if source.secret_ref else "configmap"
            for k, v in self._config_data(kind, ns, ref.name).items():
                env[(source.prefix or "") + k] = v
        for var in container.env or []:
            if var.value_from is None:
                value = expand(var.value or "", env)
            elif var.value_from.field_ref is not None:
                value = self._field(pod, var.value_from.field_ref.field_path)
            elif var.value_from.secret_key_ref is not None or var.value_from.config_map_key_ref is not None:
                ref = var.value_from.secret_key_ref or var.value_from.config_map_key_ref
                kind = "secret" if var.value_from.secret_key_ref is not None else "configmap"
                data = self._config_data(kind, ns, ref.name)
                if ref.key not in data and ref.optional:
                    continue  # the kubelet leaves an optional reference to a missing key unset
                value = data[ref.key]
            else:
                raise ValueError(f"env {var.name}: valueFrom kind not supported by the node agent")
            # No cluster DNS here: a Service name (MASTER_ADDR=<job>-master-0), or a pod's hostname under
            # a headless Service (a JobSet's PET_MASTER_ADDR=<jobset>-node-0-0.<jobset>), means this host.
            host = value.split(".", 1)
            env[var.name] = POD_IP if value in services or (len(host) == 2 and host[1] in services) else value
        return env

    # ---- process lifecycle
    def _start(self, pod: Any, spec: Any, box: Container) -> None:
        env = self.environment(pod, spec)
        argv = moved_metrics_port([expand(a, env) for a in [*(spec.command or []), *(spec.args or [])]], spec)
        cmd = local_command(argv, self.args.python)
        path = self.log_dir / f"{pod.metadata.namespace}_{pod.metadata.name}_{spec.name}.log"
        out = path.open("ab")
        out.write(f"--- node agent: {' '.join(cmd)}\n".encode())
        out.flush()
        full_env = {"OMP_NUM_THREADS": str(self.args.omp_threads), **os.environ, **env, "HOSTNAME": pod.metadata.name}
        cwd = spec.working_dir if spec.working_dir and Path(spec.working_dir).is_dir() else None
        log.info("start %s/%s:%s %s", pod.metadata.namespace, pod.metadata.name, spec.name, cmd)
        try:
            box.proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                        start_new_session=True)  # fmt: skip
            # Tests find a container's process by its pod's uid (RealPathCluster.container_pid), not by
            # its command line; the process leads its own group (the container's processes).
            pids = self.log_dir / PID_DIR
            pids.mkdir(exist_ok=True)
            (pids / f"{pod.metadata.uid}_{spec.name}").write_text(str(box.proc.pid))
        except OSError as e:  # a missing executable is a failed container, not a dead agent
            out.write(f"--- node agent: cannot start: {e}\n".encode())
            box.exit_code, box.finished_at, box.exited = 127, now(), time.monotonic()
        out.close()
        box.started_at = now()

    @staticmethod
    def _poll(box: Container) -> None:
        if box.proc is not None and box.exit_code is None:
            code = box.proc.poll()
            if code is not None:
                box.exit_code = code if code >= 0 else 128 - code  # killed by signal N -> 128+N
                box.finished_at, box.exited = now(), time.monotonic()

    def _record_exit(self, uid: str, box: Container) -> None:
        if box.proc is not None and box.proc.returncode is not None:
            code = box.proc.returncode
            (self.log_dir / PID_DIR / f"{uid}_{box.name}.exit").write_text(str(code if code >= 0 else 128 - code))

    def kill(self, run: PodRun) -> None:
        for box in run.containers.values():
            if box.proc is not None and box.proc.poll() is None:
                try:
                    os.killpg(box.proc.pid, signal.SIGTERM)
                    box.proc.wait(timeout=self.args.grace)
                except subprocess.TimeoutExpired:
                    os.killpg(box.proc.pid, signal.SIGKILL)
                    box.proc.wait()
                except ProcessLookupError:
                    pass
            self._record_exit(run.uid, box)

    def step_pod(self, pod: Any) -> None:
        key = pod.metadata.uid
        run = self.pods.setdefault(key, PodRun(pod.metadata.namespace, pod.metadata.name, key))
        if pod.metadata.deletion_timestamp is not None:
            self.kill(run)
            try:
                # grace 0 goes in the body: with a body, the API server ignores the query parameter
                options = client.V1DeleteOptions(grace_period_seconds=0, preconditions={"uid": key})
                self.api.delete_namespaced_pod(run.name, run.namespace, body=options)
            except ApiException as e:
                if e.status not in (404, 409):
                    raise
            self.pods.pop(key, None)
            return
        restart = pod.spec.restart_policy or "Always"
        init_specs = pod.spec.init_containers or []
        if not run.init_done:  # init containers one at a time, in order
            for spec in init_specs:
                box = run.containers.setdefault("init:" + spec.name, Container(spec.name))
                if box.proc is None and box.exit_code is None:
                    self._start(pod, spec, box)
                self._poll(box)
                if box.exit_code is None:
                    break
                if box.exit_code != 0:
                    if restart == "Never":
                        break
                    box.restarts += 1
                    box.proc, box.exit_code = None, None
                    break
            else:
                run.init_done = True
        if run.init_done:
            for spec in pod.spec.containers:
                box = run.containers.setdefault(spec.name, Container(spec.name))
                if box.proc is None and box.exit_code is None:
                    self._start(pod, spec, box)
                self._poll(box)
                self._record_exit(key, box)
                if due_restart(box, restart):
                    box.restarts += 1
                    box.exit_code = None
                    self._start(pod, spec, box)
        self.report(pod, run)

    def report(self, pod: Any, run: PodRun) -> None:
        def status_of(spec: Any, box: Container | None) -> dict[str, Any]:
            if box is None or (box.proc is None and box.exit_code is None):
                state: dict[str, Any] = {"waiting": {"reason": "PodInitializing"}}
            elif box.exit_code is None:
                state = {"running": {"startedAt": box.started_at}}
            else:
                state = {"terminated": {"exitCode": box.exit_code, "startedAt": box.started_at,
                                        "finishedAt": box.finished_at,
                                        "reason": "Completed" if box.exit_code == 0 else "Error"}}  # fmt: skip
            return {"name": spec.name, "image": spec.image, "imageID": "", "ready": "running" in state,
                    "started": "running" in state, "restartCount": box.restarts if box else 0, "state": state}  # fmt: skip

        mains = [status_of(s, run.containers.get(s.name)) for s in pod.spec.containers]
        inits = [status_of(s, run.containers.get("init:" + s.name)) for s in pod.spec.init_containers or []]
        terminated = [c["state"].get("terminated") for c in mains]
        restart = pod.spec.restart_policy or "Always"
        if all(terminated) and all(t["exitCode"] == 0 for t in terminated) and restart != "Always":
            phase = "Succeeded"
        elif restart == "Never" and (all(terminated) or any(i["state"].get("terminated", {}).get("exitCode")
                                                             for i in inits)):  # fmt: skip
            phase = "Failed"
        elif run.init_done and any("running" in c["state"] for c in mains):
            phase = "Running"
        else:
            phase = "Pending"
        ready = "True" if phase == "Running" and all(c["ready"] for c in mains) else "False"
        conditions = [{"type": t, "status": s} for t, s in
                      [("PodScheduled", "True"), ("Initialized", "True" if run.init_done else "False"),
                       ("ContainersReady", ready), ("Ready", ready)]]  # fmt: skip
        status = {"phase": phase, "podIP": POD_IP, "podIPs": [{"ip": POD_IP}], "hostIP": POD_IP,
                  "startTime": run.start_time, "conditions": conditions, "containerStatuses": mains,
                  "initContainerStatuses": inits}  # fmt: skip
        if status == run.reported:
            return
        try:
            self.api.patch_namespaced_pod_status(run.name, run.namespace, {"status": status})
            run.reported = status
        except ApiException as e:
            if e.status != 404:
                raise

    def loop(self) -> None:
        last_beat = 0.0
        while True:
            if time.monotonic() - last_beat > 10:
                self.heartbeat()
                last_beat = time.monotonic()
            pods = self.api.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={self.name}").items
            seen = set()
            for pod in pods:
                seen.add(pod.metadata.uid)
                if pod.status.phase in ("Succeeded", "Failed") and pod.metadata.deletion_timestamp is None:
                    continue
                try:
                    self.step_pod(pod)
                except ApiException as e:
                    log.warning("pod %s/%s: %s", pod.metadata.namespace, pod.metadata.name, e.reason)
            for uid in [u for u in self.pods if u not in seen]:  # deleted outright (grace 0)
                self.kill(self.pods.pop(uid))
            time.sleep(self.args.poll)

    def shutdown(self) -> None:
        for run in self.pods.values():
            self.kill(run)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--name", default="e2e-node")
    p.add_argument("--log-dir", required=True)
    p.add_argument("--cpus", type=int, default=8)
    p.add_argument("--gpus", type=int, default=0, help="nvidia.com/gpu capacity to advertise (nothing is checked)")
    p.add_argument("--taint", default="", help="KEY=VALUE:EFFECT put on the node")
    p.add_argument("--python", default=sys.executable, help="interpreter that runs `python` containers")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between pod polls")
    p.add_argument("--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL")
    p.add_argument("--omp-threads", type=int, default=1, help="OMP_NUM_THREADS of every container (unless set)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if shutil.which(args.python) is None and not Path(args.python).exists():
        p.error(f"--python {args.python!r}: not found")
    config.load_kube_config(args.kubeconfig)
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # test clusters' self-signed certs
    agent = NodeAgent(client.CoreV1Api(), client.CoordinationV1Api(), args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    agent.register()
    try:
        agent.loop()
    finally:
        agent.shutdown()


if __name__ == "__main__":
    main()
