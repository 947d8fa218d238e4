"""A shared cluster's store safety (issue 15, items 1, 2, 3 and 5), on the real test cluster with
`miniseries operator` as a process (tests/harness/operator_process.py), versitygw for S3, and the real
trainer where the trainer's own behaviour is the point:

- two namespaces share one bucket with a sweep of the same name; the one with deletionPolicy
  Delete trains its own plan and, deleted, removes only its own objects (a file that was under
  its key before it is kept); a sweep recreated under a name whose data another (earlier) sweep
  owns is refused with a condition and an Event naming both;
- a `..` store path is refused naming spec.store.uri (as `miniseries plan` does), a store URI
  outside the operator's roots too, and deleting such a sweep removes nothing;
- the real trainer rides out a versitygw outage mid-training (until its retries have waited past their
  backoff's 5 s cap), its metrics showing it;
  a job that fails while the store is down shows at once, not when the store is back;
- a truncated results.json is evaluated again from the final checkpoint, outside retryLimit.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.binaries import find_binary
from tests.harness.cluster import Cluster
from tests.harness.operator_process import (
    PYTHONPATH,
    JobDriver,
    Operator,
    condition,
    custom,
    events,
    get_sweep,
    install_crds,
    list_jobs,
    older_crd,
    sweep_doc,
)
from tests.harness.processes import free_port, wait_for
from tests.harness.s3 import S3Bucket, S3Server, new_bucket
from tests.support.tiny_training import make_corpus, train_argv, trainer_env

pytestmark = [pytest.mark.cluster, pytest.mark.safety]


@pytest.fixture(scope="session")
def crds(cluster: Cluster) -> Cluster:
    install_crds(cluster)
    return cluster


@pytest.fixture
def start_operator(crds: Cluster, tmp_path: Path) -> Iterator[Callable[..., Operator]]:
    started: list[Operator] = []

    def start(namespace: str, log: str = "operator", **kw: Any) -> Operator:
        op = Operator(crds, namespace, tmp_path / f"{log}.log", **kw).start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.stop()


@pytest.fixture
def second_namespace(cluster: Cluster, namespace: str) -> Iterator[str]:
    name = f"{namespace[:50]}-b"
    cluster.create_namespace(name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def status(kc: Cluster, ns: str, name: str) -> dict[str, Any]:
    return get_sweep(custom(kc), ns, name).get("status") or {}


def wait_phase(kc: Cluster, ns: str, name: str, phases: tuple[str, ...], timeout: float = 120) -> dict[str, Any]:
    return wait_for(  # type: ignore[no-any-return]
        f"{ns}/{name} in phase {phases}", lambda: (s := status(kc, ns, name)).get("phase") in phases and s, timeout
    )


def objects(bucket: S3Bucket, prefix: str) -> dict[str, str]:
    """key -> ETag under a prefix: what "untouched" is compared by."""
    pages = bucket.client.get_paginator("list_objects_v2").paginate(Bucket=bucket.bucket, Prefix=prefix)
    return {o["Key"]: o["ETag"] for page in pages for o in page.get("Contents", [])}


# ---------------------------------------------------------------- item 1: identity


@pytest.mark.s3
def test_two_namespaces_share_a_bucket_and_delete_removes_only_its_own(
    crds: Cluster, namespace: str, second_namespace: str, s3: S3Bucket, start_operator: Callable[..., Operator],
    tmp_path: Path,
) -> None:  # fmt: skip
    """The issue's first case: `s1` in two namespaces on `s3://<bucket>`, the second with
    tokensPerParam 16 and deletionPolicy Delete. Each trains its own plan under its own key;
    deleting the second removes its objects only: the first's are byte-identical, and a file that
    lay under the second's key before it was created is kept. Then the first, deleted (Retain) and
    applied again, is a new sweep (new uid) and is refused the old one's data, naming both."""
    kc, ns_a, ns_b = crds, namespace, second_namespace
    store_uri = s3.uri
    op_a = start_operator(ns_a, "operator-a", env=s3.env, store_roots=[s3.uri])
    start_operator(ns_b, "operator-b", env=s3.env, store_roots=[s3.uri])
    foreign = f"{ns_b}/s1/NOTES.txt"
    s3.client.put_object(Bucket=s3.bucket, Key=foreign, Body=b"a person's notes, there before the sweep")
    doc_a = sweep_doc("s1", store_uri, depths=[1, 2])
    doc_b = sweep_doc("s1", store_uri, depths=[1, 2])
    doc_b["spec"]["training"]["tokensPerParam"] = 2 * doc_a["spec"]["training"].get("tokensPerParam", 8)
    doc_b["spec"]["deletionPolicy"] = "Delete"
    with JobDriver(kc, ns_a, s3.env, log_dir=tmp_path), JobDriver(kc, ns_b, s3.env, log_dir=tmp_path):
        kc.apply(doc_a, "-n", ns_a)
        st_a = wait_phase(kc, ns_a, "s1", ("Succeeded", "Failed", "Degraded"))
        kc.apply(doc_b, "-n", ns_b)
        st_b = wait_phase(kc, ns_b, "s1", ("Succeeded", "Failed", "Degraded"))
    assert st_a["phase"] == st_b["phase"] == "Succeeded", (st_a, st_b)
    steps_a = {r["name"]: r["steps"] for r in st_a["runs"]}
    steps_b = {r["name"]: r["steps"] for r in st_b["runs"]}
    for run in ("d1", "d2"):  # each trained its own plan (the issue: b "succeeded" with a's 112 steps of 224)
        assert steps_b[run] > steps_a[run] and {r["name"]: r["step"] for r in st_b["runs"]}[run] == steps_b[run]
    before_a = objects(s3, f"{ns_a}/")
    assert f"{ns_a}/s1/d1/results.json" in before_a and f"{ns_a}/s1/store-manifest.json" in before_a
    manifest_a = json.loads(s3.client.get_object(Bucket=s3.bucket, Key=f"{ns_a}/s1/store-manifest.json")["Body"].read())
    uid_a = get_sweep(custom(kc), ns_a, "s1")["metadata"]["uid"]
    assert manifest_a["owner"] == {"namespace": ns_a, "name": "s1", "uid": uid_a,
                                   "created": get_sweep(custom(kc), ns_a, "s1")["metadata"]["creationTimestamp"]}  # fmt: skip
    assert objects(s3, f"{ns_b}/s1/d1/results.json")

    kc.kubectl("delete", "scalingsweep", "s1", "-n", ns_b, "--timeout=90s")
    assert objects(s3, f"{ns_b}/") == {foreign: objects(s3, foreign)[foreign]}  # only the foreign file is left
    assert objects(s3, f"{ns_a}/") == before_a  # the other namespace's sweep: every object, byte for byte
    deleted = [e for e in events(kc, ns_b, "s1") if e["reason"] == "StoreDeleted"]
    assert deleted and "kept 1 objects" in deleted[0]["message"], deleted
    a_now = status(kc, ns_a, "s1")
    assert a_now["phase"] == "Succeeded" and condition(get_sweep(custom(kc), ns_a, "s1"), "Ready")["status"] == "True"
    print(json.dumps({"objects_a_untouched": len(before_a), "steps_a": steps_a, "steps_b": steps_b}))

    # Retain, then the same name again: a new sweep (uid) finds the old one's manifest and refuses.
    kc.kubectl("delete", "scalingsweep", "s1", "-n", ns_a, "--timeout=90s")
    assert objects(s3, f"{ns_a}/") == before_a
    kc.apply(doc_a, "-n", ns_a)
    uid_new = get_sweep(custom(kc), ns_a, "s1")["metadata"]["uid"]
    ready = wait_for("Ready=False StoreOwnedByAnotherSweep",
                     lambda: (c := condition(get_sweep(custom(kc), ns_a, "s1"), "Ready")).get("reason")
                     == "StoreOwnedByAnotherSweep" and c, 60)  # fmt: skip
    assert ready["status"] == "False" and uid_a in ready["message"] and uid_new in ready["message"]
    assert "spec.store.uri" in ready["message"] and f"miniseries.dev/adopt-store={uid_a}" in ready["message"]
    warning = wait_for("the refusal Event", lambda: [e for e in events(kc, ns_a, "s1")
                                                     if e["reason"] == "StoreOwnedByAnotherSweep"], 30)  # fmt: skip
    assert warning[0]["type"] == "Warning" and uid_a in warning[0]["message"] and uid_new in warning[0]["message"]
    polls = op_a.metric("miniseries_operator_reconciles_total")
    wait_for("three more reconciles", lambda: op_a.metric("miniseries_operator_reconciles_total") >= polls + 3, 30)
    # ... and still nothing launched, nothing written, one Event
    assert [j for j in list_jobs(custom(kc), ns_a) if j["metadata"]["ownerReferences"][0]["uid"] == uid_new] == []
    assert objects(s3, f"{ns_a}/") == before_a
    assert len([e for e in events(kc, ns_a, "s1") if e["reason"] == "StoreOwnedByAnotherSweep"]) == 1


# ---------------------------------------------------------------- item 2: roots


def test_a_dot_dot_store_path_is_refused_and_its_delete_removes_nothing(
    crds: Cluster, namespace: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """The issue's second case: `file:///…/victim/../victim2/../../b/victimroot` with Delete. Refused
    naming spec.store.uri by the API server and, under a CRD without that rule, by the operator,
    exactly as `miniseries plan` refuses it; nothing is written there, and
    deleting the sweep removes nothing (a file that was there stays)."""
    kc, ns = crds, namespace
    base = tmp_path / "data"
    (base / "b" / "victimroot").mkdir(parents=True)
    victim = base / "b" / "victimroot" / "precious.txt"
    victim.write_text("not the operator's")
    uri = f"{(base / 'a').as_uri()}/victim/../victim2/../../b/victimroot"
    doc = sweep_doc("dots", uri, depths=[1])
    doc["spec"]["deletionPolicy"] = "Delete"
    doc["spec"]["data"]["shardsUri"] = (tmp_path / "shards").as_uri()  # only the store path is the point
    offline = tmp_path / "dots.yaml"
    offline.write_text(yaml.safe_dump(doc))
    plan = subprocess.run([sys.executable, "-m", "miniseries.cli", "plan", str(offline)], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": PYTHONPATH})  # fmt: skip
    assert plan.returncode != 0 and "spec.store.uri" in plan.stderr and "'..' path segment" in plan.stderr
    refused = kc.kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(doc), check=False)
    assert refused.returncode != 0 and "spec.store.uri" in refused.stderr  # the API server refuses it first
    # The operator's own check stays, for a cluster whose CRD predates the API server's (or another client).
    with older_crd(kc):
        start_operator(ns)
        kc.apply(doc, "-n", ns)
    ready = wait_for("Ready=False", lambda: (c := condition(get_sweep(custom(kc), ns, "dots"), "Ready"))
                     .get("status") == "False" and c, 60)  # fmt: skip
    assert ready["reason"] == "InvalidSpec" and "spec.store.uri" in ready["message"]
    assert "'..' path segment" in ready["message"] and uri in ready["message"]
    offline_problem = re.search(r"spec\.store\.uri: [^\n]*", plan.stderr)
    assert offline_problem and offline_problem.group(0).rstrip() in ready["message"]  # the same words
    kc.kubectl("delete", "scalingsweep", "dots", "-n", ns, "--timeout=60s")
    assert victim.read_text() == "not the operator's"
    assert sorted(p.relative_to(base).as_posix() for p in base.rglob("*")) == ["b", "b/victimroot",
                                                                               "b/victimroot/precious.txt"]  # fmt: skip


def test_a_store_outside_the_operators_roots_is_refused(
    crds: Cluster, namespace: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """--store-root (the chart's store.roots) with {namespace}: a team's sweep may write
    under its own root only; another path is an invalid spec.store.uri naming the allowed roots."""
    kc, ns = crds, namespace
    roots = f"{(tmp_path / 'teams').as_uri()}/{{namespace}}"
    start_operator(ns, store_roots=[roots])
    with JobDriver(kc, ns, log_dir=tmp_path):
        kc.apply(sweep_doc("inside", f"{(tmp_path / 'teams' / ns).as_uri()}/sweeps", depths=[1]), "-n", ns)
        kc.apply(sweep_doc("outside", f"{(tmp_path / 'teams' / 'other-team').as_uri()}", depths=[1]), "-n", ns)
        assert wait_phase(kc, ns, "inside", ("Succeeded", "Failed", "Degraded"))["phase"] == "Succeeded"
        ready = wait_for("outside refused", lambda: (c := condition(get_sweep(custom(kc), ns, "outside"), "Ready"))
                         .get("reason") == "StoreNotAllowed" and c, 60)  # fmt: skip
    assert "spec.store.uri" in ready["message"] and "outside the store roots" in ready["message"]
    assert f"{(tmp_path / 'teams').as_uri()}/{ns}" in ready["message"]
    assert not (tmp_path / "teams" / "other-team").exists()
    assert (tmp_path / "teams" / ns / "sweeps" / ns / "inside" / "d1" / "results.json").exists()


# ---------------------------------------------------------------- item 3: outages


class RestartableS3:
    """versitygw on a fixed port and directory, stopped and started again like a real outage."""

    def __init__(self, workdir: Path) -> None:
        self.binary = find_binary("versitygw")
        self.root = workdir / "s3-root"
        self.root.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "versitygw.log"
        port = free_port()
        self.server = S3Server(f"http://127.0.0.1:{port}", "minioutage", uuid.uuid4().hex, self.root, 0, port)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "--port", f"127.0.0.1:{self.server.port}", "posix", str(self.root)],
                env={**os.environ, "ROOT_ACCESS_KEY": self.server.access_key, "ROOT_SECRET_KEY": self.server.secret_key},
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        wait_for("versitygw", lambda: self.server.client().list_buckets() is not None, 30, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)  # no goodbye: the store just vanishes
            self.proc.wait()


@pytest.fixture
def outage_s3(tmp_path: Path) -> Iterator[RestartableS3]:
    s3 = RestartableS3(tmp_path)
    s3.start()
    yield s3
    s3.stop()


#: Seconds the trainer has waited on its store retries before the store comes back: 1 + 2 + 4 + 5, its
#: backoff at its cap (RetryPolicy.max_delay), every retry wait of a longer outage seen.
WAITED_S = 12.0


def scrape(port: int) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith("miniseries_store_"):
            name = line.split("{", 1)[0]
            out[name] = float(line.rsplit(" ", 1)[1])
    return out


@pytest.mark.s3
@pytest.mark.torch
@pytest.mark.slow
def test_the_real_trainer_rides_out_a_store_outage(outage_s3: RestartableS3, tmp_path: Path) -> None:
    """versitygw is killed right after the run's first checkpoint and started again once the trainer has
    waited WAITED_S on its retries (botocore's own 3 tries end within seconds; the trainer's backoff,
    1, 2, 4, then 5 s, has reached its cap). The trainer keeps training, skips progress.json, waits at its
    next checkpoint write, and finishes with every checkpoint and results.json; its /metrics show the
    outage while it lasts. (The outage ends on the trainer's own count, not after a fixed ~40 s: the same
    retries seen, some 25 s less waiting.)"""
    pytest.importorskip("torch")
    corpus = make_corpus(tmp_path / "corpus")
    bucket = new_bucket(outage_s3.server, f"t-{uuid.uuid4().hex[:12]}")
    port = free_port()
    batch = 64 * 4 * 2
    argv = train_argv(corpus, tmp_path, store=f"{bucket.uri}/sweeps", namespace="team-a", target_tokens=batch * 400,
                      checkpoint_every=40, metrics_port=port)  # fmt: skip
    env = {**trainer_env(), **outage_s3.server.env}
    log = tmp_path / "trainer.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "miniseries_trainer.train", *argv], env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        ckpt = "sweeps/team-a/t/d1/ckpt/"
        wait_for("the first checkpoint", lambda: [k for k in bucket.keys(ckpt) if k.endswith("manifest.json")],
                 300, proc)  # fmt: skip
        outage_s3.stop()
        down_at = time.monotonic()
        during = wait_for("the outage in /metrics",
                          lambda: (m := scrape(port)).get("miniseries_store_outage_seconds", 0) > 5 and m, 60, proc)  # fmt: skip
        assert during["miniseries_store_errors_total"] >= 1
        wait_for(f"the trainer waiting {WAITED_S} s on its retries",
                 lambda: scrape(port).get("miniseries_store_retry_wait_seconds_total", 0) >= WAITED_S, 120, proc)  # fmt: skip
        outage_s3.start()
        outage = time.monotonic() - down_at
        assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    results = json.loads(
        bucket.client.get_object(Bucket=bucket.bucket, Key="sweeps/team-a/t/d1/results.json")["Body"].read()
    )
    assert results["steps"] == 400
    steps = sorted(int(k.split("step_")[1][:8]) for k in bucket.keys(ckpt) if k.endswith("manifest.json"))
    assert steps[-1] == 400
    m = re.search(r"store: (\d+) failed operations, ([\d.]+) s waited on retries, longest outage ([\d.]+) s", text)
    assert m, text[-3000:]
    errors, waited, longest = int(m.group(1)), float(m.group(2)), float(m.group(3))
    assert longest >= WAITED_S and waited >= WAITED_S and errors >= 3
    assert "retrying for up to 300 s" in text and "answers again after" in text
    print(json.dumps({"outage_seconds": round(outage, 1), "trainer_longest_outage_seconds": longest,
                      "trainer_waited_seconds": waited, "store_errors": errors}))  # fmt: skip


@pytest.mark.s3
def test_a_job_failing_while_the_store_is_down_shows_at_once(
    crds: Cluster, namespace: str, outage_s3: RestartableS3, start_operator: Callable[..., Operator],
    tmp_path: Path,
) -> None:  # fmt: skip
    """The operator's half of item 3: with the store down, a job that fails (here the stand-in
    trainer, which does not retry) is shown at the next observation (the job's event): the run
    leaves Running and Degraded=True, while StoreReachable=False; once the store is back the run
    is retried and the sweep succeeds."""
    kc, ns = crds, namespace
    bucket = new_bucket(outage_s3.server, f"t-{uuid.uuid4().hex[:12]}")
    env = outage_s3.server.env
    start_operator(ns, env={**env, "MINISERIES_STORE_RETRY_SECONDS": "2"}, store_roots=[bucket.uri])
    with JobDriver(kc, ns, env, step_seconds=0.05, log_dir=tmp_path):
        kc.apply(sweep_doc("down", bucket.uri, depths=[1]), "-n", ns)
        wait_for("d1 Running", lambda: [r for r in status(kc, ns, "down").get("runs", []) if r["state"] == "Running"],
                 120)  # fmt: skip
        outage_s3.stop()
        failed_job = wait_for("the job Failed", lambda: [j for j in list_jobs(custom(kc), ns)
                              if any(c["type"] == "Failed" and c["status"] == "True"
                                     for c in (j.get("status") or {}).get("conditions") or [])], 60)  # fmt: skip
        failed_at = time.monotonic()
        st = wait_for("the failure in status", lambda: (s := status(kc, ns, "down")) and any(
            r["state"] in ("Retrying", "Failed") for r in s.get("runs", [])) and s, 30)  # fmt: skip
        shown_after = time.monotonic() - failed_at
        sweep = get_sweep(custom(kc), ns, "down")
        assert (
            condition(sweep, "Degraded")["status"] == "True" and condition(sweep, "StoreReachable")["status"] == "False"
        )
        (run,) = st["runs"]
        assert run["reason"].startswith("ExitCode") and failed_job[0]["metadata"]["name"] == "down-d1"
        outage_s3.start()
        final = wait_phase(kc, ns, "down", ("Succeeded", "Failed", "Degraded"), timeout=180)
    assert final["phase"] == "Succeeded" and final["runs"][0]["attempts"] == 2
    assert shown_after < 10, shown_after  # before: ~60 s (the store retry delay, twice)
    print(json.dumps({"failed_job_shown_after_seconds": round(shown_after, 2)}))


# ---------------------------------------------------------------- item 5: corrupt results


def test_a_truncated_results_json_is_evaluated_again_without_spending_a_retry(
    crds: Cluster, namespace: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """The issue's case: a run Succeeded, then its results.json truncated to 200 bytes (the other still runs,
    so the sweep is live). The run goes Retrying with reason ResultsCorrupt and a message naming
    the object and the parse error, its job is deleted and the same attempt started again, which
    resumes at the final checkpoint and only writes results; the retry budget (retryLimit 0 here)
    is not touched and no RunRetrying event is posted."""
    kc, ns = crds, namespace
    store_uri = (tmp_path / "store").as_uri()
    # Two slots: the held run keeps one, the re-evaluation needs the other (it trains nothing,
    # but it is a job like any other and waits for a free slot).
    doc = sweep_doc("corrupt", store_uri, depths=[1, 2], parallelism=2, nodeGpus=2)
    doc["spec"]["retryLimit"] = 0
    from miniseries.api.spec import ScalingSweepSpec
    from miniseries.plan.planner import make_plan

    first, second = (r.name for r in make_plan(ScalingSweepSpec.model_validate(doc["spec"])).runs)  # in launch order
    start_operator(ns)
    results = tmp_path / "store" / ns / "corrupt" / first / "results.json"
    with JobDriver(kc, ns, hold={second}, log_dir=tmp_path) as driver:
        kc.apply(doc, "-n", ns)
        wait_for("the first run Succeeded", lambda: [r for r in status(kc, ns, "corrupt").get("runs", [])
                                          if r["name"] == first and r["state"] == "Succeeded"], 120)  # fmt: skip
        steps = json.loads(results.read_text())["steps"]
        results.write_bytes(results.read_bytes()[:200])
        seen = wait_for("ResultsCorrupt", lambda: [r for r in status(kc, ns, "corrupt").get("runs", [])
                                                      if r["name"] == first and r.get("reason") == "ResultsCorrupt"
                                                      and r["state"] in ("Retrying", "Pending", "Running")], 60)  # fmt: skip
        wait_for(
            "Succeeded again",
            lambda: [
                r
                for r in status(kc, ns, "corrupt").get("runs", [])
                if r["name"] == first and r["state"] == "Succeeded" and not r.get("reason")
            ],
            120,
        )  # fmt: skip (reason cleared: issue 27)
        driver.hold.clear()
        st = wait_phase(kc, ns, "corrupt", ("Succeeded", "Failed", "Degraded"))
    assert st["phase"] == "Succeeded", st
    done = next(r for r in st["runs"] if r["name"] == first)
    assert done["attempts"] == 1 and done["steps"] == steps
    msg = seen[0]["message"]
    assert f"{results.as_uri()} (200 bytes) is not valid JSON" in msg and "ckpt/step_" in msg
    assert sorted((s.run, s.attempt) for s in driver.seen.values()) == sorted([(first, 1), (first, 1), (second, 1)])
    starts = sorted(int(p.name) for p in (results.parent / "starts").iterdir())
    assert starts == [0, steps]  # the second start was at the final checkpoint: evaluation only
    reasons = [e["reason"] for e in events(kc, ns, "corrupt")]
    assert reasons.count("RunResultsCorrupt") == 1 and "RunRetrying" not in reasons and "RunFailed" not in reasons
    ev = next(e for e in events(kc, ns, "corrupt") if e["reason"] == "RunResultsCorrupt")
    assert results.as_uri() in ev["message"] and "not valid JSON" in ev["message"]
    assert json.loads(results.read_text())["steps"] == steps
