"""`miniseries operator` as a real process on the test cluster (tests/harness/cluster.py): real API server,
etcd, garbage collector, scheduler and a kwok 8-GPU node.

The Kubeflow training-operator is not part of this cluster: in these tests the PyTorchJob
lifecycle is driven by tests/harness/operator_process.py's JobDriver, which sets job conditions through
the status subresource and runs each job's container args with tests/support/fake_trainer.py (progress,
checkpoints, resume, results.json in the store the operator reads). The real training-operator
and the real trainer are covered end to end by tests/e2e.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from miniseries.api.spec import ScalingSweepSpec
from miniseries.control.backends import manifests as jobs
from miniseries.control.backends.pytorchjob import pytorchjob
from miniseries.plan.planner import make_plan
from tests.harness.binaries import REPO
from tests.harness.cluster import Cluster
from tests.harness.operator_process import (
    PYTHONPATH,
    JobDriver,
    Operator,
    SweepHistory,
    condition,
    custom,
    events,
    get_sweep,
    install_crds,
    job_phase,
    list_jobs,
    sweep_doc,
)
from tests.harness.processes import Unreachable, wait_for
from tests.harness.s3 import S3Bucket

pytestmark = [pytest.mark.cluster]

#: How long any wait below may take before it fails: a safety net for a machine that is merely
#: slow, not a guess at how long a step takes. Every wait returns as soon as its condition holds
#: and fails at once when the condition can no longer hold (the operator died, the sweep ended
#: elsewhere, a state was passed).
DEADLINE = 300.0
#: Phases a sweep stays in until its spec changes.
END_PHASES = ("Succeeded", "Failed", "Degraded", "Invalid")


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> Cluster:
    install_crds(cluster)
    return cluster


@pytest.fixture
def store_uri(tmp_path: Path) -> str:
    return (tmp_path / "store").as_uri()


@pytest.fixture
def start_operator(crds: Cluster, namespace: str, tmp_path: Path) -> Iterator[Callable[..., Operator]]:
    started: list[Operator] = []

    def start(log: str = "operator", **kw: Any) -> Operator:
        op = Operator(crds, namespace, tmp_path / f"{log}.log", **kw).start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()


def api(cluster: Cluster) -> Any:
    return custom(cluster)


def status(cluster: Cluster, ns: str, name: str) -> dict[str, Any]:
    return get_sweep(api(cluster), ns, name).get("status") or {}


def wait_phase(
    cluster: Cluster, ns: str, name: str, phases: tuple[str, ...], operator: Operator | None = None
) -> dict[str, Any]:
    """The sweep's status once its phase is one of `phases`; fails at once if it ends in another
    phase, or if `operator` exits."""

    def check() -> Any:
        s = status(cluster, ns, name)
        if s.get("phase") in phases:
            return s
        if s.get("phase") in END_PHASES:
            raise Unreachable(f"ended in phase {s['phase']}: {s.get('conditions')}")
        return None

    return wait_for(f"{name} in phase {phases}", check, DEADLINE, operator.proc if operator else None)  # type: ignore[no-any-return]


def ended(st: dict[str, Any]) -> bool:
    return st.get("phase") in END_PHASES


def offline_plan(doc: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    out = subprocess.run([sys.executable, "-m", "miniseries.cli", "plan", str(path), "-o", "json"], check=True,
                         capture_output=True, text=True, env={"PYTHONPATH": PYTHONPATH, "PATH": ""})  # fmt: skip
    return json.loads(out.stdout)["plan"]  # type: ignore[no-any-return]


def floats(x: Any) -> Any:
    """Numbers as floats: the API server writes 4.5e20 back as the integer 451163695429032350000."""
    if isinstance(x, dict):
        return {k: floats(v) for k, v in x.items()}
    if isinstance(x, list):
        return [floats(v) for v in x]
    if isinstance(x, int | float) and not isinstance(x, bool):
        return float(x)
    return x


# ---------------------------------------------------------------- create


def test_apply_the_example_creates_exactly_the_planned_jobs(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """examples/miniseries.yaml (only its store moved to this test's): status.plan is what
    `miniseries plan` prints, the tokenizer Job comes first, then the first wave of PyTorchJobs,
    each exactly pytorchjob() of its planned run, within parallelism and the node's GPUs."""
    kc, ns = crds, namespace
    doc = yaml.safe_load((REPO / "examples" / "miniseries.yaml").read_text())
    doc["spec"]["store"]["uri"] = store_uri
    doc["spec"]["data"].update(shardsUri=f"{store_uri}/data", evalBundleUri=f"{store_uri}/eval")
    spec = ScalingSweepSpec.model_validate(doc["spec"])
    plan = make_plan(spec)
    # The example's store Secret, opted in as the operator's default policy wants (issue 28): the JobDriver,
    # like the kubelet, starts no container whose Secret is missing.
    kc.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": doc["spec"]["store"]["credentialsSecret"],
              "namespace": ns, "labels": {"miniseries.dev/allow-sweeps": "true"}},
              "stringData": {"AWS_ACCESS_KEY_ID": "test"}})  # fmt: skip
    op = start_operator()
    started = time.monotonic()
    kc.apply(doc, "-n", ns)
    st = wait_for("status.plan", lambda: status(kc, ns, "miniseries").get("plan"), DEADLINE, op.proc)
    assert floats(st) == floats(offline_plan(doc, tmp_path))
    # The tokenizer stage: a batch Job, and no run before its tokenizer is in the store.
    tok = json.loads(kc.kubectl("get", "job", "miniseries-tokenizer", "-n", ns, "-o=json").stdout)
    sweep = get_sweep(api(kc), ns, "miniseries")
    uid = sweep["metadata"]["uid"]
    want_tok = jobs.tokenizer_job(spec, "miniseries", uid, ns)
    assert tok["metadata"]["ownerReferences"] == want_tok["metadata"]["ownerReferences"]
    (c,) = tok["spec"]["template"]["spec"]["containers"]
    (w,) = want_tok["spec"]["template"]["spec"]["containers"]
    assert (c["image"], c["command"], c["args"]) == (w["image"], w["command"], w["args"])
    assert list_jobs(api(kc), ns) == []
    assert condition(sweep, "Progressing")["reason"] == "TrainingTokenizer"

    with JobDriver(kc, ns, hold={r.name for r in plan.runs}, log_dir=tmp_path):  # runs the tokenizer only
        first = wait_for("first wave", lambda: list_jobs(api(kc), ns), DEADLINE, op.proc)
        print(json.dumps({"apply_to_first_wave_seconds_incl_tokenizer": round(time.monotonic() - started, 2)}))
        # Three whole reconciles later (the counter counts starts; one may be under way): still exactly the first wave.
        seen = op.metric("miniseries_operator_reconciles_total")
        wait_for("3 more reconciles", lambda: op.metric("miniseries_operator_reconciles_total") >= seen + 4,
                 DEADLINE, op.proc)  # fmt: skip
        first = list_jobs(api(kc), ns)
    wave = [r for r in plan.runs if r.wave == 0]
    assert [j["metadata"]["name"] for j in first] == [f"miniseries-{r.name}" for r in wave]
    assert len(first) <= plan.max_runs_in_flight == 1  # parallelism 1, 8 GPUs per run on an 8-GPU node
    assert sum(int(j["spec"]["nprocPerNode"]) for j in first) <= spec.resources.node_gpus
    for j, run in zip(first, wave, strict=True):
        want = pytorchjob(spec, "miniseries", uid, ns, run, attempt=1)
        assert j["spec"] == want["spec"]
        assert j["metadata"]["labels"] == want["metadata"]["labels"]
        assert j["metadata"]["ownerReferences"] == want["metadata"]["ownerReferences"]
    # the printer columns
    table = kc.kubectl("get", "scalingsweeps", "-n", ns).stdout
    assert table.split("\n")[0].split()[:8] == ["NAME", "PHASE", "RUNS", "COST", "PLAN", "BEST-CORE", "FORECAST",
                                                 "FIT-N~C^A"]  # fmt: skip
    row = table.split("\n")[1].split()
    assert row[2] == "0/11"
    plan_status = status(kc, ns, "miniseries")["plan"]
    assert row[4] == f"${plan_status['totalCostUsd']:,.2f}/{plan_status['estWallHours']:.1f}h"


def test_runs_fill_in_next_runs_start_and_the_fit_appears(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """Three depths, two at a time: status.runs follow the jobs and the store, the third run
    starts when a slot frees, never more than two in flight, and the fit and report land."""
    kc, ns = crds, namespace
    op = start_operator()
    with SweepHistory(kc, ns, "life") as history, JobDriver(kc, ns, log_dir=tmp_path) as driver:
        kc.apply(sweep_doc("life", store_uri, parallelism=2, nodeGpus=8), "-n", ns)
        # A run trains for a second or two: look for Running in every recorded status, not the current one.
        running = wait_for(
            "a run in progress in status",
            lambda: history.first(lambda st: [r for r in st.get("runs", []) if r["state"] == "Running"], ended),
            DEADLINE,
            op.proc,
        )
        assert running[0]["jobName"].startswith("life-d")
        st = wait_phase(kc, ns, "life", ("Succeeded", "Failed", "Degraded"), op)
    assert st["phase"] == "Succeeded", st
    assert driver.max_in_flight == 2 and driver.duplicates() == [] and not driver.errors
    assert sorted((s.run, s.attempt) for s in driver.seen.values()) == [("d1", 1), ("d2", 1), ("d3", 1)]
    runs = {r["name"]: r for r in st["runs"]}
    for name, r in runs.items():
        assert r["state"] == "Succeeded" and r["attempts"] == 1 and r["jobName"] == f"life-{name}"
        assert r["step"] == r["steps"] > 0 and r["tokens"] > 0 and r["loss"] > 0
        assert r["resultsUri"] == f"{store_uri}/{ns}/life/{name}/results.json"
    assert st["totals"]["runsDone"] == 3 and st["progress"] == "3/3"
    assert st["fit"]["runsFitted"] == 3  # (the fake losses are too few points for every law: "partial" is the report's)
    # `kubectl get scalingsweeps` shows the fitted exponent a (N_opt ~ C^a)
    header, row = kc.kubectl("get", "scalingsweeps", "life", "-n", ns).stdout.splitlines()[:2]
    fit_column = row[header.index("FIT-N~C^A") : header.index("AGE")].strip()  # BEST-CORE is blank: no CORE here
    assert float(fit_column) == pytest.approx(st["fit"]["paramsExponent"], rel=1e-6)
    assert st["reportUri"].startswith(f"{store_uri}/{ns}/life/report")
    assert (Path(store_uri.removeprefix("file://")) / ns / "life" / "report" / "report.json").exists()
    ready = condition(get_sweep(api(kc), ns, "life"), "Ready")
    assert ready["status"] == "True" and ready["observedGeneration"] == 1 and st["observedGeneration"] == 1
    reasons = [e["reason"] for e in events(kc, ns, "life")]
    assert reasons.count("RunStarted") == 3 and reasons.count("RunSucceeded") == 3


def test_a_failed_job_is_retried_from_its_checkpoint(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """d2's first attempt crashes at step 30, after its step-25 checkpoint: the run goes
    Retrying with the job's reason, the job is deleted and recreated as attempt 2 with
    --resume=auto, which starts from step 25, and the sweep succeeds."""
    kc, ns = crds, namespace
    op = start_operator()
    history = SweepHistory(kc, ns, "retry")
    with history, JobDriver(kc, ns, fail={"d2": {1}}, fail_step=30, log_dir=tmp_path) as driver:
        kc.apply(sweep_doc("retry", store_uri, depths=[2]), "-n", ns)
        # Retrying lasts from the failed job's deletion to the end of its backoff (1 s here), and
        # the operator may record the next attempt's Pending in the reconcile right after: wait for
        # the state in every recorded version of the status, not in the current one.
        retrying = wait_for(
            "d2 Retrying",
            lambda: history.first(
                lambda st: [r for r in st.get("runs", []) if r["state"] == "Retrying"],
                lambda st: ended(st) or any(r["attempts"] >= 2 for r in st.get("runs", [])),
            ),
            DEADLINE,
            op.proc,
        )
        st = wait_phase(kc, ns, "retry", ("Succeeded", "Failed", "Degraded"), op)
    (r,) = retrying
    assert r["reason"] == "ExitCode3" and "exited with code 3" in r["message"] and r["attempts"] == 1
    assert r["checkpointUri"] == f"{store_uri}/{ns}/retry/d2/ckpt/step_00000025/"
    assert st["phase"] == "Succeeded", st
    (done,) = st["runs"]
    # succeeded: the failure of attempt 1 no longer describes the run (issue 27); its Event keeps it
    assert done["attempts"] == 2 and done["state"] == "Succeeded" and "reason" not in done and "message" not in done
    assert sorted((s.run, s.attempt) for s in driver.seen.values()) == [("d2", 1), ("d2", 2)]
    (job,) = list_jobs(api(kc), ns)
    assert job["metadata"]["labels"]["miniseries.dev/attempt"] == "2"
    assert "--resume=auto" in job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["args"]
    starts = sorted(
        p.name for p in (Path(store_uri.removeprefix("file://")) / ns / "retry" / "d2" / "starts").iterdir()
    )
    assert starts == ["00000000", "00000025"]  # attempt 2 resumed from the checkpoint
    ev = [e for e in events(kc, ns, "retry") if e["reason"] == "RunRetrying"]
    assert len(ev) == 1 and ev[0]["type"] == "Warning" and "step_00000025" in ev[0]["message"]


def wsd_doc(name: str, store_uri: str) -> dict[str, Any]:
    """A wsd sweep of d2 on 3 GPUs: a trunk to step 45 (checkpoints kept at 22 and 45), branches at 2 and
    4 tokens/param from its steps 22 and 45 (28 and 56 steps), so branches may run beside their trunk."""
    doc = sweep_doc(name, store_uri, depths=[2], nodeGpus=3)
    training = doc["spec"]["training"]
    training.pop("tokensPerParam")
    training.update(mode="wsd", wsd={"budgets": [2, 4]})
    return doc


def test_wsd_branches_wait_for_their_trunk_and_survive_its_retry_and_their_preemption(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """A wsd sweep on the real API server. While the trunk's job runs without a checkpoint, no branch
    job is created although two GPUs are free. The trunk then crashes after its step-25 checkpoint
    (past d2-b2's start, 22) and is retried: attempt 2 resumes from step 25; d2-b2 starts from the
    trunk's step 22 and d2-b4 from its step 45, which only attempt 2 writes. d2-b4 is preempted after
    its own step-50 checkpoint (exit EXIT_PREEMPTED, progress.json `preempted`) and relaunched as the
    same attempt, no retry spent, from that checkpoint and not from the trunk's."""
    kc, ns = crds, namespace
    plan = {r.name: r for r in make_plan(ScalingSweepSpec.model_validate(wsd_doc("wsd", store_uri)["spec"])).runs}
    assert (plan["d2-trunk"].keep_steps, plan["d2-b2"].start_step, plan["d2-b4"].start_step) == ([22, 45], 22, 45)
    op = start_operator()
    preempt = {"FAKE_TRAINER_PREEMPT_RUN": "d2-b4", "FAKE_TRAINER_PREEMPT_STEP": "50"}
    with JobDriver(kc, ns, preempt, fail={"d2-trunk": {1}}, fail_step=25, step_seconds=0.02, hold={"d2-trunk"},
                   log_dir=tmp_path) as driver:  # fmt: skip
        kc.apply(wsd_doc("wsd", store_uri), "-n", ns)
        wait_for("the trunk's job Running",
                 lambda: [j for j in list_jobs(api(kc), ns) if job_phase(j) == "Running"], DEADLINE, op.proc)  # fmt: skip
        # Held Running without a process: no checkpoint. Once the status shows the trunk Running (a
        # reconcile read it), three whole reconciles more (the counter counts starts; one may be under
        # way) have each decided with a free GPU and no trunk checkpoint: and created nothing else.
        wait_for("the trunk Running in status", lambda: {r["name"]: r["state"] for r in status(kc, ns, "wsd")["runs"]}
                 .get("d2-trunk") == "Running", DEADLINE, op.proc)  # fmt: skip
        seen = op.metric("miniseries_operator_reconciles_total")
        wait_for("3 more reconciles", lambda: op.metric("miniseries_operator_reconciles_total") >= seen + 4,
                 DEADLINE, op.proc)  # fmt: skip
        assert [j["metadata"]["labels"]["miniseries.dev/run"] for j in list_jobs(api(kc), ns)] == ["d2-trunk"]
        states = {r["name"]: r["state"] for r in status(kc, ns, "wsd")["runs"]}
        assert states == {"d2-trunk": "Running", "d2-b2": "Pending", "d2-b4": "Pending"}
        driver.hold.discard("d2-trunk")
        st = wait_phase(kc, ns, "wsd", ("Succeeded", "Failed", "Degraded"), op)
    assert st["phase"] == "Succeeded", st
    runs = {r["name"]: r for r in st["runs"]}
    assert (runs["d2-trunk"]["attempts"], runs["d2-trunk"].get("reason")) == (2, None)  # succeeded: cleared
    assert (runs["d2-b4"]["attempts"], runs["d2-b4"]["preemptions"], runs["d2-b4"]["state"]) == (1, 1, "Succeeded")
    assert (runs["d2-b2"]["attempts"], runs["d2-b2"]["preemptions"]) == (1, 0)
    root = Path(store_uri.removeprefix("file://")) / ns / "wsd"
    starts = {run: sorted(p.name for p in (root / run / "starts").iterdir()) for run in plan}
    assert starts == {
        "d2-trunk": ["00000000", "00000025"],  # attempt 2 resumed from its own checkpoint
        "d2-b2": ["00000022-from-trunk"],
        "d2-b4": ["00000045-from-trunk", "00000050"],  # relaunched on its own step 50, not the trunk's 45
    }
    order = [(s.run, s.attempt) for s in driver.seen.values()]
    assert order.index(("d2-trunk", 2)) < order.index(("d2-b4", 1))  # d2-b4 waited for the retried trunk
    assert order.count(("d2-b4", 1)) == 2 and order.count(("d2-b2", 1)) == 1
    reasons = [e["reason"] for e in events(kc, ns, "wsd")]
    assert reasons.count("RunRetrying") == 1 and reasons.count("RunPreempted") == 1


# ---------------------------------------------------------------- production manners


@pytest.mark.safety
def test_operator_killed_mid_sweep_and_restarted_makes_no_duplicates(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """SIGKILL the operator while the first run trains; the run finishes meanwhile; a new
    operator resumes: status is intact, every job exists once, the sweep completes one run
    at a time (parallelism 1)."""
    kc, ns = crds, namespace
    first = start_operator("operator-1")
    with JobDriver(kc, ns, hold={"d3"}, log_dir=tmp_path) as driver:
        kc.apply(sweep_doc("restart", store_uri, parallelism=1), "-n", ns)
        wait_for("d3 Running in status",  # d3 is held Running: the live status shows it
                 lambda: [r for r in status(kc, ns, "restart").get("runs", []) if r["state"] == "Running"],
                 DEADLINE, first.proc)  # fmt: skip
        before = status(kc, ns, "restart")
        first.stop(signal.SIGKILL)
        driver.hold.clear()  # d3 finishes while no operator runs
        wait_for(
            "d3 job Succeeded", lambda: [j for j in list_jobs(api(kc), ns) if job_phase(j) == "Succeeded"], DEADLINE
        )
        assert [j["metadata"]["name"] for j in list_jobs(api(kc), ns)] == ["restart-d3"]
        after_kill = status(kc, ns, "restart")
        assert after_kill["plan"] == before["plan"] and after_kill["runs"] == before["runs"]
        second = start_operator("operator-2")
        st = wait_phase(kc, ns, "restart", ("Succeeded", "Failed", "Degraded"), second)
    assert st["phase"] == "Succeeded" and st["plan"] == before["plan"]
    assert driver.duplicates() == [] and driver.max_in_flight == 1
    assert sorted((s.run, s.attempt) for s in driver.seen.values()) == [("d1", 1), ("d2", 1), ("d3", 1)]
    assert [r["attempts"] for r in st["runs"]] == [1, 1, 1]


def test_two_operators_at_once_only_one_acts(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """Two replicas sharing kopf peering: the higher priority acts, the other is paused and
    reconciles nothing; when the active one stops, the other takes over."""
    kc, ns = crds, namespace
    kc.apply({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "miniseries"}}, "-n", ns)
    low = start_operator("operator-low", peering="miniseries", priority=10)
    high = start_operator("operator-high", peering="miniseries", priority=20)
    with JobDriver(kc, ns, log_dir=tmp_path) as driver:
        kc.apply(sweep_doc("pair", store_uri, parallelism=1), "-n", ns)
        st = wait_phase(kc, ns, "pair", ("Succeeded", "Failed", "Degraded"), high)
        assert st["phase"] == "Succeeded"
        assert high.metric("miniseries_operator_reconciles_total") > 0
        assert low.metric("miniseries_operator_reconciles_total") == 0
        assert driver.duplicates() == [] and driver.max_in_flight == 1
        high.stop()  # a clean exit leaves the peering: the other one resumes
        kc.apply(sweep_doc("pair2", store_uri, depths=[1]), "-n", ns)
        wait_phase(kc, ns, "pair2", ("Succeeded",), low)
    assert low.metric("miniseries_operator_reconciles_total") > 0


# ---------------------------------------------------------------- delete


@pytest.mark.parametrize("store_kind", ["file", pytest.param("s3", marks=pytest.mark.s3)])
def test_delete_collects_jobs_and_applies_the_deletion_policy(
    crds: Cluster,
    namespace: str,
    store_uri: str,
    start_operator: Callable[..., Operator],
    tmp_path: Path,
    store_kind: str,
    request: pytest.FixtureRequest,
) -> None:
    """Two finished sweeps deleted: their PyTorchJobs and tokenizer Jobs go by garbage
    collection; `keep` (Retain, the default) leaves its store data, `wipe` (Delete) removes it
    in the deletion handler, before kopf releases its finalizer."""
    from miniseries.contract.store import open_store

    kc, ns = crds, namespace
    env: dict[str, str] = {}
    if store_kind == "s3":
        s3 = request.getfixturevalue("s3")
        store_uri, env = f"{s3.uri}/sweeps", s3.env
    op = start_operator(env=env, store_roots=[store_uri] if store_kind == "s3" else None)
    with JobDriver(kc, ns, env, log_dir=tmp_path):
        kc.apply(sweep_doc("keep", store_uri, depths=[1]), "-n", ns)
        kc.apply({**sweep_doc("wipe", store_uri, depths=[1]), "spec": {**sweep_doc("wipe", store_uri, depths=[1])["spec"],
                                                                       "deletionPolicy": "Delete"}}, "-n", ns)  # fmt: skip
        for name in ("keep", "wipe"):
            wait_phase(kc, ns, name, ("Succeeded",), op)
    assert sorted(j["metadata"]["name"] for j in list_jobs(api(kc), ns)) == ["keep-d1", "wipe-d1"]
    import os

    os.environ.update(env)  # for open_store in this process (S3 credentials and endpoint)
    store = open_store(store_uri)
    assert store.exists(f"{ns}/keep/d1/results.json") and store.exists(f"{ns}/wipe/d1/results.json")
    kc.kubectl("delete", "scalingsweep", "keep", "wipe", "-n", ns, f"--timeout={DEADLINE:.0f}s", timeout=DEADLINE + 30)
    wait_for("jobs garbage-collected", lambda: list_jobs(api(kc), ns) == [], DEADLINE)
    wait_for(
        "tokenizer Jobs garbage-collected",
        lambda: json.loads(kc.kubectl("get", "jobs", "-n", ns, "-o=json").stdout)["items"] == [],
        DEADLINE,
    )
    assert store.list(f"{ns}/wipe/") == []
    assert f"{ns}/keep/d1/results.json" in store.list(f"{ns}/keep/") and f"{ns}/keep/sweep.json" in store.list(
        f"{ns}/keep/"
    )
    assert any(e["reason"] == "StoreDeleted" for e in events(kc, ns, "wipe"))


# ---------------------------------------------------------------- spec changes


@pytest.mark.safety
def test_suspend_resume_add_depths_and_a_refused_change(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    kc, ns = crds, namespace
    op = start_operator()
    patch = ["patch", "scalingsweep", "chg", "-n", ns, "--type=merge", "-p"]
    with JobDriver(kc, ns, hold={"d2", "d3"}, log_dir=tmp_path):
        kc.apply(sweep_doc("chg", store_uri, depths=[1, 2], parallelism=1), "-n", ns)
        wait_for(
            "d2 running", lambda: [j for j in list_jobs(api(kc), ns) if job_phase(j) == "Running"], DEADLINE, op.proc
        )

        def suspended() -> Any:
            return [j["spec"]["runPolicy"]["suspend"] for j in list_jobs(api(kc), ns)]

        kc.kubectl(*patch, '{"spec": {"suspend": true}}')
        wait_for("job suspended", lambda: suspended() == [True], DEADLINE, op.proc)
        st = wait_phase(kc, ns, "chg", ("Suspended",), op)
        assert condition({"status": st}, "Progressing")["reason"] == "Suspended"
        kc.kubectl(*patch, '{"spec": {"suspend": false}}')
        wait_for("job resumed", lambda: suspended() == [False], DEADLINE, op.proc)

        kc.kubectl(*patch, '{"spec": {"depths": [1, 2, 3]}}')
        st = wait_for("d3 planned", lambda: len((status(kc, ns, "chg").get("plan") or {}).get("runs", [])) == 3
                        and status(kc, ns, "chg"), DEADLINE, op.proc)  # fmt: skip
        assert {r["name"] for r in st["runs"]} == {"d1", "d2", "d3"}

        kc.kubectl(*patch, '{"spec": {"training": {"tokensPerParam": 10}}}')
        refused = wait_for(
            "change refused",
            lambda: (c := condition(get_sweep(api(kc), ns, "chg"), "Ready")).get("reason") == "SpecChangeRefused" and c,
            DEADLINE,
            op.proc,
        )
        assert refused["status"] == "False" and "spec.training.tokensPerParam" in refused["message"]
        assert "d2" in refused["message"]
        assert any(e["reason"] == "SpecChangeRefused" for e in events(kc, ns, "chg"))
        args = list_jobs(api(kc), ns)[0]["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
        assert any(a.startswith("--target-tokens=") for a in args["containers"][0]["args"])
        assert status(kc, ns, "chg")["plan"]["runs"][0]["steps"] == st["plan"]["runs"][0]["steps"]
        kc.kubectl(*patch, '{"spec": {"training": {"tokensPerParam": 8}}}')
        wait_for(
            "accepted again",
            lambda: condition(get_sweep(api(kc), ns, "chg"), "Ready").get("status") == "True",
            DEADLINE,
            op.proc,
        )


# ---------------------------------------------------------------- validation

BASE = sweep_doc("bad", "file:///tmp/unused", depths=[1])


def mutate(path: str, value: Any, drop: str | None = None) -> dict[str, Any]:
    """BASE with `path` (dotted, under spec) set to `value`, or removed when value is ...;
    `drop` removes another top-level spec field."""
    doc = json.loads(json.dumps(BASE))
    if drop:
        doc["spec"].pop(drop)
    node = doc["spec"]
    *parents, leaf = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    if value is ...:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return doc


# (what is wrong, the sweep, a field name the message must contain)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("depth 0", mutate("depths", [0]), "depths"),
    ("depth 65", mutate("depths", [65]), "depths"),
    ("no depths", mutate("depths", []), "depths"),
    ("repeated depth", mutate("depths", [2, 2]), "depths"),
    ("depths and depthRange", mutate("depthRange", {"min": 1, "max": 2}), "depthRange"),
    ("neither depths nor depthRange", mutate("depths", ...), "depthRange"),
    ("range max < min", mutate("depthRange", {"min": 3, "max": 2}, drop="depths"), "max"),
    ("odd headDim", mutate("model.headDim", 7), "headDim"),
    ("tiny vocab", mutate("model.vocabSize", 100), "vocabSize"),
    ("short context", mutate("model.sequenceLength", 8), "sequenceLength"),
    ("zero aspect ratio", mutate("model.aspectRatio", 0), "aspectRatio"),
    ("unknown mode", mutate("training.mode", "chinchilla"), "mode"),
    ("zero tokensPerParam", mutate("training.tokensPerParam", 0), "tokensPerParam"),
    ("isoflop without budgets", mutate("training.mode", "isoflop"), "isoflopBudgets"),
    ("budgets in ratio mode", mutate("training.isoflopBudgets", [1e15]), "isoflopBudgets"),
    ("warmdown > 1", mutate("training.warmdownRatio", 1.5), "warmdownRatio"),
    ("batch not a micro-batch multiple", mutate("training.totalBatchTokens", 1000), "totalBatchTokens"),
    ("more GPUs per run than the node", mutate("resources.gpusPerRun", 2), "gpusPerRun"),
    ("zero parallelism", mutate("resources.parallelism", 0), "parallelism"),
    ("bad pull policy", mutate("resources.imagePullPolicy", "Sometimes"), "imagePullPolicy"),
    ("MFU > 1", mutate("resources.assumedMfu", 2), "assumedMfu"),
    ("http store", mutate("store.uri", "http://example.com/x"), "uri"),
    ("no store", mutate("store", ...), "store"),
    ("relative shards", mutate("data.shardsUri", "data/shards"), "shardsUri"),
    ("over budget", mutate("cost", {"pricePerGpuHour": 3.0, "budgetUsd": 1e-6}), "budgetUsd"),
    ("retryLimit 50", mutate("retryLimit", 50), "retryLimit"),
    ("unknown deletionPolicy", mutate("deletionPolicy", "Keep"), "deletionPolicy"),
    ("misspelt field", mutate("trainng", {"mode": "ratio"}), "trainng"),
    ("name too long for job names", {**BASE, "metadata": {"name": "x" * 51}}, "metadata.name"),
]


def test_invalid_sweeps_are_rejected_naming_the_field(
    crds: Cluster, namespace: str, start_operator: Callable[..., Operator]
) -> None:
    """Each invalid sweep is refused by the API server (the CRD schema) or by the operator
    (Ready=False with reason InvalidSpec and a Warning event); either message names the field."""
    kc, ns = crds, namespace
    assert len(INVALID) >= 20
    op = start_operator()
    by_operator: dict[str, tuple[str, str]] = {}
    by_schema = []
    for i, (what, doc, field) in enumerate(INVALID):
        name = doc["metadata"]["name"] if what.startswith("name") else f"bad-{i}"
        doc = {**doc, "metadata": {"name": name}}
        proc = kc.kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(doc), check=False)
        if proc.returncode:
            assert field in proc.stderr, f"{what}: API server message does not name {field}: {proc.stderr}"
            by_schema.append(what)
        else:
            by_operator[name] = (what, field)
    for name, (what, field) in by_operator.items():
        ready = wait_for(
            f"{what}: Ready=False",
            lambda n=name: (c := condition(get_sweep(api(kc), ns, n), "Ready")).get("status") == "False" and c,
            DEADLINE,
            op.proc,
        )
        assert ready["reason"] == "InvalidSpec" and field in ready["message"], (what, ready)
        assert status(kc, ns, name)["phase"] == "Invalid"
        # the operator writes the status, then posts the Event: wait for it rather than read once
        warnings = wait_for(
            f"{what}: an InvalidSpec Event",
            lambda n=name: [e for e in events(kc, ns, n) if e["reason"] == "InvalidSpec"],
            DEADLINE,
            op.proc,
        )
        assert field in warnings[0]["message"] and warnings[0]["type"] == "Warning"
    assert list_jobs(api(kc), ns) == []
    print(json.dumps({"rejected_by_schema": len(by_schema), "rejected_by_operator": len(by_operator)}))


@pytest.mark.s3
def test_an_unreachable_store_is_a_condition_and_an_event_until_it_is_reachable(
    crds: Cluster, namespace: str, s3: S3Bucket, start_operator: Callable[..., Operator]
) -> None:
    """A sweep whose bucket does not exist (a wrong spec.store.uri, or an outage) launches nothing,
    and says so on the resource: StoreReachable=False naming spec.store.uri, Progressing=False,
    a Warning event. Once the bucket exists the same sweep proceeds, nothing lost or restarted."""
    kc, ns = crds, namespace
    missing = f"t-{uuid.uuid4().hex[:12]}"
    op = start_operator(env={**s3.env, "MINISERIES_STORE_RETRY_SECONDS": "1"}, store_roots=[f"s3://{missing}"])
    kc.apply(sweep_doc("nostore", f"s3://{missing}/sweeps", depths=[1]), "-n", ns)
    cond = wait_for(
        "StoreReachable=False",
        lambda: next(
            (c for c in status(kc, ns, "nostore").get("conditions", []) if c["type"] == "StoreReachable"), None
        ),
        DEADLINE,
        op.proc,
    )
    assert cond["status"] == "False" and cond["reason"] == "StoreUnreachable"
    assert f"spec.store.uri 's3://{missing}/sweeps' cannot be read or written" in cond["message"]
    assert "NoSuchBucket" in cond["message"] and "AWS_ENDPOINT_URL" in cond["message"]
    assert condition(get_sweep(api(kc), ns, "nostore"), "Progressing")["reason"] == "StoreUnreachable"
    warning = wait_for("a StoreUnreachable event", lambda: [e for e in events(kc, ns, "nostore")
                                                              if e["reason"] == "StoreUnreachable"], DEADLINE, op.proc)  # fmt: skip
    assert warning[0]["type"] == "Warning"
    assert (
        list_jobs(api(kc), ns) == []
        and json.loads(kc.kubectl("get", "jobs", "-n", ns, "-o=json").stdout)["items"] == []
    )

    s3.client.create_bucket(Bucket=missing)
    wait_for(
        "StoreReachable=True",
        lambda: condition(get_sweep(api(kc), ns, "nostore"), "StoreReachable").get("status") == "True",
        DEADLINE,
        op.proc,
    )
    wait_for(
        "the tokenizer Job",
        lambda: json.loads(kc.kubectl("get", "jobs", "-n", ns, "-o=json").stdout)["items"],
        DEADLINE,
        op.proc,
    )
    assert s3.client.get_object(Bucket=missing, Key=f"sweeps/{ns}/nostore/sweep.json")["Body"].read()
