"""The Trainer v2 backend on the test cluster: the control plane (tests/harness/cluster.py), JobSet's
controller-manager and Kubeflow Trainer v2's, each with its webhooks served over TLS to the API
server, and the node agent (tests/harness/node_agent.py) that runs the TrainJobs' pods as local
processes. A TrainJob applied after `trainer_cluster` returns is defaulted and validated by the
trainer's webhooks, becomes a JobSet (validated by JobSet's), whose Jobs' pods the node agent runs.

The binaries come from the Go-built cache, ``~/.cache/miniseries/bin/{jobset,trainer}-<version>/``
(scripts/build-trainer.sh; the versions are scripts/versions.env's JOBSET_VERSION and
TRAINER_VERSION); a missing one is a skip naming that script. Their CRDs, webhook configurations and
Kubeflow's torch-distributed ClusterTrainingRuntime are the ones their modules publish, vendored under
tests/harness/crds/{jobset,trainer}/ (see its README) and applied server-side.

Both run with their own certificate management off and leader election off, every listener on a
free loopback port, metrics off:
- JobSet: a Configuration (config.jobset.x-k8s.io/v1alpha1) whose webhook certDir holds this
  harness's serving certificate. Its CRD has one version, so its conversion webhook is left out.
- Trainer: a Configuration (config.trainer.kubeflow.org/v1alpha1); with certManagement off its
  webhook server reads controller-runtime's default certDir, ``$TMPDIR/k8s-webhook-server/serving-certs``,
  so the process gets a TMPDIR of its own there (no machine-wide path, unlike the training-operator).
Ready means a state: both /readyz, then the ClusterTrainingRuntimes are created through the trainer's
validating webhook (the API server reaches it over TLS).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from tests.harness.binaries import CACHE, REPO, MissingBinary, built, pinned_version
from tests.harness.cluster import start_kwok
from tests.harness.helm import CHART, render
from tests.harness.kueue import KueueCluster, kueue_binary, start_kueue
from tests.harness.processes import Stack, free_port, wait_for
from tests.harness.training_operator import RealPathCluster, real_path_cluster, start_node_agent
from tests.harness.webhooks import published_configurations, serving_pki

JOBSET_VERSION = pinned_version("JOBSET_VERSION")
TRAINER_VERSION = pinned_version("TRAINER_VERSION")
VENDORED = REPO / "tests" / "harness" / "crds"
JOBSET_CRDS = [VENDORED / "jobset" / "jobset.x-k8s.io_jobsets.yaml"]
TRAINER_CRDS = [VENDORED / "trainer" / f"trainer.kubeflow.org_{p}.yaml"
                for p in ("trainjobs", "clustertrainingruntimes", "trainingruntimes")]  # fmt: skip
#: Kubeflow's stock runtime (manifests/base/runtimes/torch_distributed.yaml): what a user may name instead.
STOCK_RUNTIME = VENDORED / "trainer" / "torch_distributed.yaml"
#: The runtime the chart installs (charts/miniseries-operator/templates/trainingruntime.yaml).
CHART_RUNTIME_TEMPLATE = CHART / "templates" / "trainingruntime.yaml"


def _binary(name: str, version: str) -> Path:
    path = CACHE / f"{name}-{version}" / name

    def lookup() -> Path:
        if not path.is_file():
            raise MissingBinary(f"{path} missing: run scripts/build-trainer.sh")
        return path

    return built(lookup, what=name)  # waits for `make test`'s background build (builds.py)


def jobset_binary() -> Path:
    return _binary("jobset", JOBSET_VERSION)


def trainer_binary() -> Path:
    return _binary("trainer", TRAINER_VERSION)


def chart_runtime(values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The chart's ClusterTrainingRuntime as `helm template` renders it (the real helm), so the tests
    run the manifest a user installs."""
    args = {"backends": "{trainjob}", **(values or {})}
    (runtime,) = [o for o in render(args) if o["kind"] == "ClusterTrainingRuntime"]
    return runtime


@dataclass
class TrainerCluster(RealPathCluster):
    """The control plane, JobSet, the trainer and the node agent: where their logs are."""

    jobset_log: Path = Path()
    trainer_log: Path = Path()
    start_seconds: float = 0.0  # JobSet + trainer, from their CRDs to both ready


def _apply_crds(cluster: RealPathCluster, paths: list[Path]) -> None:
    established = "-o=jsonpath={.status.conditions[?(@.type=='Established')].status}"
    for path in paths:
        cluster.kubectl("apply", "--server-side", "-f", str(path), timeout=180)
    for path in paths:
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        wait_for(f"CRD {name}", lambda n=name: cluster.kubectl("get", f"crd/{n}", established).stdout == "True", 60)


def _ready(name: str, port: int, proc: Any) -> None:
    wait_for(f"{name} /readyz", lambda: requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200,
             180, proc)  # fmt: skip


def start_jobset(stack: Stack, cluster: RealPathCluster, workdir: Path) -> Path:
    binary = jobset_binary()
    pki = workdir / "jobset-pki"
    ca = serving_pki(pki, "jobset-test-ca", "jobset-webhook-service.jobset-system.svc")
    webhook, health = free_port(), free_port()
    _apply_crds(cluster, JOBSET_CRDS)
    here = VENDORED / "jobset"
    cluster.apply(published_configurations(here / "webhook-manifests.yaml", f"https://127.0.0.1:{webhook}", ca,
                                           {"MutatingWebhookConfiguration": here / "mutating-patch.yaml",
                                            "ValidatingWebhookConfiguration": here / "validating-patch.yaml"}))  # fmt: skip
    config = workdir / "jobset-config.yaml"
    config.write_text(yaml.safe_dump({
        "apiVersion": "config.jobset.x-k8s.io/v1alpha1", "kind": "Configuration",
        "internalCertManagement": {"enable": False},
        "leaderElection": {"leaderElect": False},
        "webhook": {"port": webhook, "host": "127.0.0.1", "certDir": str(pki)},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
    }))  # fmt: skip
    proc = stack.start("jobset", [str(binary), f"--config={config}", "--metrics-bind-address=0",
                                  f"--health-probe-bind-address=127.0.0.1:{health}", "--zap-log-level=info"],
                       env={"KUBECONFIG": str(cluster.kubeconfig)})  # fmt: skip
    _ready("jobset", health, proc)
    return Path(proc.log_path)  # type: ignore[attr-defined]


def start_trainer(stack: Stack, cluster: RealPathCluster, workdir: Path) -> Path:
    binary = trainer_binary()
    tmp = workdir / "trainer-tmp"
    ca = serving_pki(tmp / "k8s-webhook-server" / "serving-certs", "trainer-test-ca",
                     "kubeflow-trainer-controller-manager.kubeflow-system.svc")  # fmt: skip
    webhook, health = free_port(), free_port()
    _apply_crds(cluster, TRAINER_CRDS)
    here = VENDORED / "trainer"
    cluster.apply(published_configurations(here / "webhook-manifests.yaml", f"https://127.0.0.1:{webhook}", ca,
                                           {"MutatingWebhookConfiguration": here / "patch_mutating.yaml",
                                            "ValidatingWebhookConfiguration": here / "patch_validating.yaml"}))  # fmt: skip
    config = workdir / "trainer-config.yaml"
    config.write_text(yaml.safe_dump({
        "apiVersion": "config.trainer.kubeflow.org/v1alpha1", "kind": "Configuration",
        "webhook": {"port": webhook, "host": "127.0.0.1"},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health}", "readinessEndpointName": "readyz",
                   "livenessEndpointName": "healthz"},
        "metrics": {"bindAddress": "0"},
        "leaderElection": {"leaderElect": False},
        "certManagement": {"enable": False},
    }))  # fmt: skip
    proc = stack.start("trainer", [str(binary), f"--config={config}", "--zap-log-level=info"],
                       env={"KUBECONFIG": str(cluster.kubeconfig), "TMPDIR": str(tmp)})  # fmt: skip
    _ready("trainer", health, proc)
    return Path(proc.log_path)  # type: ignore[attr-defined]


def install_runtimes(cluster: RealPathCluster) -> None:
    """The chart's runtime and Kubeflow's stock torch-distributed, through the trainer's validating
    webhook (retried while the API server's webhook client warms up)."""
    stdin = yaml.safe_dump_all([chart_runtime(), yaml.safe_load(STOCK_RUNTIME.read_text())])

    def created() -> bool:
        out = cluster.kubectl("apply", "-f", "-", stdin=stdin, check=False)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        return True

    wait_for("ClusterTrainingRuntimes through the trainer's webhook", created, 60)


@contextlib.contextmanager
def trainer_cluster(workdir: Path, gpus: int = 8) -> Iterator[TrainerCluster]:
    """The Trainer v2 path, up and ready (no training-operator): everything stopped afterwards."""
    jobset_binary(), trainer_binary()  # a skip before anything starts when they are not built
    with real_path_cluster(workdir, gpus, node_agent=False, training_operator=False) as base:
        stack = Stack(workdir)
        try:
            t0 = time.monotonic()
            jobset_log = start_jobset(stack, base, workdir)
            trainer_log = start_trainer(stack, base, workdir)
            install_runtimes(base)
            started = time.monotonic() - t0
            start_node_agent(stack, base, gpus)
            tc = TrainerCluster(**vars(base), jobset_log=jobset_log, trainer_log=trainer_log, start_seconds=started)
            tc.pids = [*base.pids, *stack.pids()]
            yield tc
        finally:
            stack.stop()


@contextlib.contextmanager
def trainer_kueue_cluster(workdir: Path) -> Iterator[KueueCluster]:
    """The Trainer v2 path with Kueue instead of the node agent: kwok's 8-GPU node `gpu-node-0`,
    JobSet, the trainer and its runtimes, then Kueue (its TrainJob integration finds their CRDs at
    start) serving batch/job and trainer.kubeflow.org/trainjob."""
    jobset_binary(), trainer_binary(), kueue_binary()
    with real_path_cluster(workdir, node_agent=False, training_operator=False) as base:
        stack = Stack(workdir)
        try:
            start_kwok(stack, base)
            start_jobset(stack, base, workdir)
            start_trainer(stack, base, workdir)
            install_runtimes(base)
            kc = start_kueue(stack, base, workdir, ("batch/job", "trainer.kubeflow.org/trainjob"))
            kc.gpu_nodes = ["gpu-node-0"]
            kc.pids = [*base.pids, *stack.pids()]
            yield kc
        finally:
            stack.stop()
