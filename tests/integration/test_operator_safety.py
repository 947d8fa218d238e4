"""Issue 15 on the real test cluster, as a careless or hostile user would try it: specs the
cluster would refuse only after the jobs exist, numbers that overflow, sweeps without a budget,
images and Secrets a user should not be able to choose, an invalid sweep left alone for a while,
a trainer reporting NaN, finished sweeps polled forever, Secret values leaking. The operator is
`miniseries operator` as a process (tests/harness/operator_process.py), as in test_operator_cluster.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from tests.harness.cluster import Cluster
from tests.harness.operator_process import (
    PYTHONPATH,
    JobDriver,
    Operator,
    condition,
    custom,
    events,
    get_sweep,
    list_jobs,
    older_crd,
    sweep_doc,
)
from tests.harness.processes import wait_for
from tests.integration import test_operator_cluster as base

pytestmark = [pytest.mark.cluster, pytest.mark.safety]
# the operator tests' fixtures and helpers (a real `miniseries operator` process per test)
crds, start_operator, store_uri = base.crds, base.start_operator, base.store_uri
status, wait_phase = base.status, base.wait_phase

OPT_IN = "miniseries.dev/allow-sweeps"
FINISHED = "miniseries_operator_reconcile_duration_seconds_count"  # reconciles that ended


def batch_jobs(kc: Cluster, ns: str) -> list[dict[str, Any]]:
    return json.loads(kc.kubectl("get", "jobs", "-n", ns, "-o=json").stdout)["items"]  # type: ignore[no-any-return]


def refused(kc: Cluster, ns: str, name: str, reason: str) -> dict[str, Any]:
    """The sweep's Ready condition once it is False with `reason`."""
    return wait_for(  # type: ignore[no-any-return]
        f"{name}: Ready=False {reason}",
        lambda: (
            (c := condition(get_sweep(custom(kc), ns, name), "Ready")).get("reason") == reason
            and c.get("status") == "False"
            and c
        ),
        60,
    )


def offline_refusal(doc: dict[str, Any], tmp_path: Path) -> list[str]:
    """`miniseries plan` on the same document: its exit status must be 2; the problems it prints."""
    path = tmp_path / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = subprocess.run([sys.executable, "-m", "miniseries.cli", "plan", str(path)], capture_output=True, text=True,
                          env={"PYTHONPATH": PYTHONPATH, "PATH": ""})  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    return [line.strip() for line in proc.stderr.splitlines()[1:]]


def reconciles_by_sweep(op: Operator, metric: str = "miniseries_operator_reconciles_total") -> dict[str, float]:
    """Reconciles started per sweep (or, with the duration histogram's _count, finished)."""
    text = requests.get(f"http://127.0.0.1:{op.metrics_port}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(metric + "{"):
            labels, value = line.rsplit(" ", 1)
            sweep = labels.split('sweep="', 1)[1].split('"', 1)[0]
            out[sweep] = out.get(sweep, 0.0) + float(value)
    return out


def with_spec(name: str, store: str, **changes: Any) -> dict[str, Any]:
    """sweep_doc with dotted spec paths changed: with_spec("x", uri, **{"resources.cpu": "lots"})."""
    doc = sweep_doc(name, store, depths=[1])
    for path, value in changes.items():
        node = doc["spec"]
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return doc


# ---------------------------------------------------------------- validation at the edge

# (field, value): what the API server, the PyTorchJob schema or the kubelet refused only after
# the jobs existed (a 422 in the operator's log, a pod stuck in InvalidImageName)
AT_THE_EDGE: list[tuple[str, Any]] = [
    ("resources.cpu", "lots"),
    ("resources.memory", "-1Gi"),
    ("resources.cpu", "1e1.5"),
    ("resources.image", "ghcr.io/x/y:1; touch /tmp/pwned $(id)"),
    ("resources.image", "gнcr.io/miniseries/trainer:1"),
    ("resources.image", "ghcr.io/Miniseries/trainer"),
    ("resources.nodeSelector", {"gpu type": "h100"}),
    ("store.credentialsSecret", "S3_Creds"),
]


def test_what_the_cluster_would_refuse_is_refused_first_naming_the_field(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """Each bad value: Ready=False InvalidSpec whose message is exactly `miniseries plan`'s (the same
    code), one Warning event, and nothing created: no tokenizer Job, no PyTorchJob. Those a pattern
    can judge the API server refuses first, naming the field; the operator's check is for a CRD
    older than that (applied here) and for other clients."""
    kc, ns = crds, namespace
    start_operator()
    docs = {}
    for i, (path, value) in enumerate(AT_THE_EDGE):
        doc = with_spec(f"edge-{i}", store_uri, **{path: value})
        docs[doc["metadata"]["name"]] = (path, value, doc)
    by_api_server = []
    for path, value, doc in docs.values():
        dry = kc.kubectl("create", "--dry-run=server", "-n", ns, "-f", "-", stdin=yaml.safe_dump(doc), check=False)
        if dry.returncode:
            assert f"spec.{path}" in dry.stderr, dry.stderr
            by_api_server.append(value)
    assert by_api_server == ["lots", "S3_Creds"]  # 1e1.5 matches the quantity pattern; ParseQuantity refuses it
    with older_crd(kc):
        for _, _, doc in docs.values():
            kc.apply(doc, "-n", ns)
    for name, (path, value, doc) in docs.items():
        ready = refused(kc, ns, name, "InvalidSpec")
        field = f"spec.{path}"
        assert field in ready["message"] and repr(value if isinstance(value, str) else "gpu type") in ready["message"]
        assert "; ".join(offline_refusal(doc, tmp_path))[:1000] == ready["message"]  # the same code, the same words
        warnings = wait_for(f"{name}: the InvalidSpec event",
                            lambda n=name: [e for e in events(kc, ns, n) if e["reason"] == "InvalidSpec"], 30)  # fmt: skip
        assert len(warnings) == 1 and warnings[0]["message"] == ready["message"], warnings
    assert list_jobs(custom(kc), ns) == [] and batch_jobs(kc, ns) == []


def test_numbers_that_overflowed_are_bounded_and_a_sweep_without_budget_has_a_ceiling(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """pricePerGpuHour 1e308 made the cost infinite and every status patch invalid JSON: now the
    API server refuses it (the CRD's maximum) and `miniseries plan` too, naming the field. Depths
    1..64 with no budget planned millions of GPU-hours and created the d64 job: now the operator
    refuses the plan naming spec.cost.budgetUsd and the numbers, creates nothing, and setting a
    budget is what lets the sweep run."""
    kc, ns = crds, namespace
    start_operator(env={"MINISERIES_MAX_GPU_HOURS_WITHOUT_BUDGET": "1000"})
    pricey = with_spec("pricey", store_uri, **{"cost.pricePerGpuHour": 1e308})
    proc = kc.kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(pricey), check=False)
    assert proc.returncode != 0 and "spec.cost.pricePerGpuHour" in proc.stderr and "10000" in proc.stderr
    (problem,) = offline_refusal(pricey, tmp_path)
    assert problem.startswith("spec.cost.pricePerGpuHour: Input should be less than or equal to 10000, got 1e+308")

    huge = yaml.safe_load((base.REPO / "examples" / "miniseries.yaml").read_text())  # d10..d20, 8 GPUs a run
    huge["metadata"] = {"name": "huge"}
    huge["spec"]["depthRange"] = {"min": 1, "max": 64}
    huge["spec"]["cost"].pop("budgetUsd")
    huge["spec"]["store"] = {"uri": store_uri}
    huge["spec"]["data"] = {"shardsUri": f"{store_uri}/data"}
    huge["spec"]["resources"].update(cpu="1", memory="1Gi")
    kc.apply(huge, "-n", ns)
    ready = refused(kc, ns, "huge", "InvalidSpec")
    msg = ready["message"]
    assert msg.startswith("spec.cost.budgetUsd: not set, and the plan needs ") and "GPU-hours" in msg
    assert "over the 1,000 GPU-hours this operator allows a sweep without a budget" in msg
    assert [msg] == offline_refusal(huge, tmp_path)  # the same numbers offline
    needed = float(msg.split("(at least ")[1].split(")")[0].replace(",", ""))
    assert status(kc, ns, "huge")["phase"] == "Invalid" and list_jobs(custom(kc), ns) == [] == batch_jobs(kc, ns)
    # raising the budget explicitly is what lets it run: planned, then the tokenizer Job
    kc.kubectl("patch", "scalingsweep", "huge", "-n", ns, "--type=merge", "-p",
               json.dumps({"spec": {"cost": {"budgetUsd": needed * 1.01}}}))  # fmt: skip
    wait_for("huge planned", lambda: condition(get_sweep(custom(kc), ns, "huge"), "Ready").get("status") == "True", 60)
    plan = status(kc, ns, "huge")["plan"]
    assert len(plan["runs"]) == 64 and plan["totalGpuHours"] > 1000
    json.dumps(status(kc, ns, "huge"), allow_nan=False)
    wait_for("the tokenizer Job", lambda: batch_jobs(kc, ns), 30)


def test_an_unchanged_problem_is_one_event_with_a_count(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Callable[..., Operator]
) -> None:
    """An invalid sweep used to post the same Event on every poll (104 in 5 minutes). Now it is
    not polled at all, a restarted operator writes nothing for it, and a problem that comes back
    after a change raises the count of its one Event."""
    kc, ns = crds, namespace
    op = start_operator(poll_seconds=0.2)
    # negative requests: quantities to the CRD's pattern, refused by the operator alone
    kc.apply(with_spec("noisy", store_uri, **{"resources.cpu": "-1"}), "-n", ns)
    refused(kc, ns, "noisy", "InvalidSpec")
    before = get_sweep(custom(kc), ns, "noisy")
    # a held sweep next to it shows the poll running meanwhile
    with JobDriver(kc, ns, hold={"d1"}):
        kc.apply(sweep_doc("busy", store_uri, depths=[1]), "-n", ns)
        wait_for("d1 running", lambda: [r for r in status(kc, ns, "busy").get("runs", []) if r["state"] == "Running"],
                 60)  # fmt: skip
        base = reconciles_by_sweep(op)
        wait_for("20 more polls of busy", lambda: reconciles_by_sweep(op).get("busy", 0) >= base["busy"] + 20, 60)
        assert reconciles_by_sweep(op)["noisy"] == base["noisy"]  # the invalid one is not polled
        for i in range(2):  # restarts: one reconcile each (resume), and nothing written
            op.stop()
            op = start_operator(f"operator-{i}", poll_seconds=0.2)
            wait_for("noisy resumed", lambda o=op: reconciles_by_sweep(o, FINISHED).get("noisy", 0) >= 1, 60)
        after = get_sweep(custom(kc), ns, "noisy")
        assert after["status"] == before["status"]  # kopf may touch its annotations; status is ours
        patch = ["patch", "scalingsweep", "noisy", "-n", ns, "--type=merge", "-p"]
        kc.kubectl(*patch, '{"spec": {"resources": {"cpu": "-2"}}}')
        wait_for("the second problem", lambda: "'-2'" in condition(get_sweep(custom(kc), ns, "noisy"), "Ready")
                 .get("message", ""), 30)  # fmt: skip
        kc.kubectl(*patch, '{"spec": {"resources": {"cpu": "-1"}}}')
        wait_for("the first problem again", lambda: "'-1'" in condition(get_sweep(custom(kc), ns, "noisy"), "Ready")
                 .get("message", ""), 30)  # fmt: skip
    ev = wait_for("the first Event counted twice", lambda: [e for e in events(kc, ns, "noisy")
                  if e["reason"] == "InvalidSpec" and "'-1'" in e["message"] and e.get("count") == 2], 30)  # fmt: skip
    invalid = [e for e in events(kc, ns, "noisy") if e["reason"] == "InvalidSpec"]
    assert len(ev) == 1 and len(invalid) == 2, invalid  # '-1' (count 2) and '-2' (count 1)
    assert sorted(e["count"] for e in invalid) == [1, 2]


# ---------------------------------------------------------------- admission policy


def secret(kc: Cluster, ns: str, name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> None:
    """Created with `kubectl apply`, so its metadata also holds the last-applied annotation
    (with the data in it): whatever the operator reads of a Secret, it must not leak."""
    doc = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": labels or {}},
           "stringData": data}  # fmt: skip
    kc.kubectl("apply", "-n", ns, "-f", "-", stdin=yaml.safe_dump(doc))


def test_admission_policy_decides_which_images_and_secrets_a_sweep_may_use(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """As the chart configures it: allowed image prefixes and the Secret opt-in label. A sweep
    naming another image, an unlabelled or a missing Secret is refused before anything is created
    (Ready=False AdmissionDenied naming the field, one Warning event); labelling the Secret is
    enough for the waiting sweep to proceed."""
    kc, ns = crds, namespace
    op = start_operator(args=["--allowed-image-prefix=ghcr.io/miniseries/trainer",
                              "--allowed-image-prefix=registry.corp:5000/ml/"])  # the opt-in label: the default  # fmt: skip
    value = f"v-{uuid.uuid4().hex}"
    secret(kc, ns, "s3-plain", {"AWS_SECRET_ACCESS_KEY": value})
    kc.apply(with_spec("miner", store_uri, **{"resources.image": "docker.io/evil/miner:1"}), "-n", ns)
    kc.apply(with_spec("lookalike", store_uri, **{"resources.image": "ghcr.io/miniseries/trainer-x:1"}), "-n", ns)
    kc.apply(with_spec("nolabel", store_uri, **{"store.credentialsSecret": "s3-plain"}), "-n", ns)
    kc.apply(with_spec("nosecret", store_uri, **{"store.credentialsSecret": "s3-missing"}), "-n", ns)
    kc.apply(with_spec("allowed", store_uri, **{"resources.image": "registry.corp:5000/ml/trainer@sha256:" + "a" * 64}),
             "-n", ns)  # fmt: skip
    for name, field, words in [
        (
            "miner",
            "spec.resources.image",
            "'docker.io/evil/miner:1' (pulled as 'docker.io/evil/miner:1') is not allowed",
        ),
        ("lookalike", "spec.resources.image", "allowed image prefixes: 'ghcr.io/miniseries/trainer', "),
        ("nolabel", "spec.store.credentialsSecret", f'requires the label {OPT_IN}: "true" (it has no such label)'),
        ("nosecret", "spec.store.credentialsSecret", f"the Secret 's3-missing' does not exist in namespace '{ns}'"),
    ]:
        ready = refused(kc, ns, name, "AdmissionDenied")
        assert ready["message"].startswith(field) and words in ready["message"], ready
        (ev,) = wait_for(f"{name}: the AdmissionDenied event",
                         lambda n=name: [e for e in events(kc, ns, n) if e["reason"] == "AdmissionDenied"], 30)  # fmt: skip
        assert ev["type"] == "Warning" and ev["message"] == ready["message"]
    wait_for("the allowed sweep's tokenizer Job", lambda: [j for j in batch_jobs(kc, ns)
                                                           if j["metadata"]["name"] == "allowed-tokenizer"], 30)  # fmt: skip
    assert {j["metadata"]["name"] for j in batch_jobs(kc, ns)} == {"allowed-tokenizer"}
    # the namespace owner opts the Secret in: the refused sweep goes ahead on its own
    kc.kubectl("label", "secret", "s3-plain", "-n", ns, f"{OPT_IN}=true")
    wait_for("nolabel accepted", lambda: condition(get_sweep(custom(kc), ns, "nolabel"), "Ready").get("status") == "True",
             60)  # fmt: skip
    tok = wait_for("nolabel's tokenizer Job", lambda: [j for j in batch_jobs(kc, ns)
                                                       if j["metadata"]["name"] == "nolabel-tokenizer"], 30)  # fmt: skip
    env = tok[0]["spec"]["template"]["spec"]["containers"][0]["env"]  # the store's keys of it, one by one
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in env if "valueFrom" in e} == {"s3-plain"}  # and HOME
    assert list_jobs(custom(kc), ns) == []  # nothing else was created for the refused sweeps
    log = op.log_path.read_text()
    assert value not in log and base64.b64encode(value.encode()).decode() not in log


# ---------------------------------------------------------------- what held, kept holding


#: FAKE_TRAINER_LEAK_ENV=AWS_SECRET_ACCESS_KEY here makes the trainer write the value to the store:
#: the test below then fails ("... in store"), as it must for a trainer that leaks it.
LEAK: dict[str, str] = {}


def test_no_secret_value_reaches_status_events_logs_job_specs_or_the_store(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """A sweep that names an opted-in Secret runs to the end, its tokenizer and runs created and
    finished; the Secret's values (and their base64) appear nowhere the operator writes."""
    kc, ns = crds, namespace
    op = start_operator()  # the default policy: Secrets need the opt-in label
    values = {"AWS_ACCESS_KEY_ID": f"AKIA{uuid.uuid4().hex[:16].upper()}", "AWS_SECRET_ACCESS_KEY": uuid.uuid4().hex}
    secret(kc, ns, "creds", values, {OPT_IN: "true"})
    doc = sweep_doc("quiet", store_uri, depths=[1, 2])
    doc["spec"]["store"]["credentialsSecret"] = "creds"
    # The JobDriver gives each trainer its container's envFrom, resolved from the API server as the
    # kubelet does; the fake trainer records a digest of each credential, never the value.
    digests = {"FAKE_TRAINER_ENV_DIGESTS": ",".join(values)}
    with JobDriver(kc, ns, {**digests, **LEAK}, log_dir=tmp_path):
        kc.apply(doc, "-n", ns)
        st = wait_phase(kc, ns, "quiet", ("Succeeded", "Failed", "Degraded"))
    assert st["phase"] == "Succeeded", st
    root = Path(store_uri.removeprefix("file://")) / ns / "quiet"
    for run in ("d1", "d2"):  # the Secret did reach each trainer: the store half below can fail
        seen = json.loads((root / run / "env-digests.json").read_text())
        assert seen == {k: hashlib.sha256(v.encode()).hexdigest() for k, v in values.items()}, (run, seen)
    api = custom(kc)
    written = {
        "status": json.dumps(get_sweep(api, ns, "quiet")),
        "events": kc.kubectl("get", "events", "-n", ns, "-o=json").stdout,
        "operator log": op.log_path.read_text(),
        "pytorchjobs": json.dumps(list_jobs(api, ns)),
        "jobs": json.dumps(batch_jobs(kc, ns)),
        "store": "\n".join(
            p.read_bytes().decode(errors="replace")
            for p in Path(store_uri.removeprefix("file://")).rglob("*")
            if p.is_file()
        ),
    }
    assert '"creds"' in written["pytorchjobs"] and '"creds"' in written["jobs"]  # the name, via secretKeyRef
    for v in values.values():
        for where, text in written.items():
            assert v not in text and base64.b64encode(v.encode()).decode() not in text, f"{v} in {where}"


def test_a_nan_loss_and_an_infinite_cost_from_a_trainer_do_not_stop_status(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """A trainer reporting NaN loss and infinite elapsed time (plain json.dumps writes the NaN and
    Infinity tokens): every status patch used to be refused as invalid JSON. Now those numbers
    are left out, the rest of status moves on, and the operator log says which were left out."""
    kc, ns = crds, namespace
    op = start_operator()
    with JobDriver(kc, ns, {"FAKE_TRAINER_NONFINITE": "1"}, step_seconds=0.05, log_dir=tmp_path):
        kc.apply(sweep_doc("nan", store_uri, depths=[2]), "-n", ns)
        run = wait_for("a step in status", lambda: [r for r in status(kc, ns, "nan").get("runs", [])
                                                    if r.get("step", 0) > 0 and r["state"] == "Running"], 60)  # fmt: skip
        st = wait_phase(kc, ns, "nan", ("Succeeded", "Failed", "Degraded"))
    assert "loss" not in run[0] and "gpuSeconds" not in run[0] and "costUsd" not in run[0], run
    assert st["phase"] == "Succeeded"
    json.dumps(st, allow_nan=False)
    assert "non-finite numbers left out" in op.log_path.read_text()


def test_finished_sweeps_are_not_polled(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Callable[..., Operator], tmp_path: Path
) -> None:
    """Once Succeeded a sweep is neither reconciled by the timer nor written, while a sweep in flight
    next to it is polled every interval."""
    kc, ns = crds, namespace
    op = start_operator(poll_seconds=0.2)
    with JobDriver(kc, ns, hold={"d2"}, log_dir=tmp_path):
        kc.apply(sweep_doc("done", store_uri, depths=[1]), "-n", ns)
        wait_phase(kc, ns, "done", ("Succeeded",))
        kc.apply(sweep_doc("going", store_uri, depths=[2]), "-n", ns)
        wait_for("d2 running", lambda: [r for r in status(kc, ns, "going").get("runs", []) if r["state"] == "Running"],
                 60)  # fmt: skip
        rv = get_sweep(custom(kc), ns, "done")["metadata"]["resourceVersion"]
        going_rv = get_sweep(custom(kc), ns, "going")["metadata"]["resourceVersion"]
        base = reconciles_by_sweep(op)
        wait_for("20 polls of the running sweep",
                 lambda: reconciles_by_sweep(op).get("going", 0) >= base["going"] + 20, 60)  # fmt: skip
        after = reconciles_by_sweep(op)
    assert after["done"] == base["done"], (base, after)
    assert get_sweep(custom(kc), ns, "done")["metadata"]["resourceVersion"] == rv
    # a held run with no news: polled, but nothing written either
    assert get_sweep(custom(kc), ns, "going")["metadata"]["resourceVersion"] == going_rv


def test_a_job_the_api_server_refuses_is_said_on_the_sweep(
    crds: Cluster, namespace: str, store_uri: str, start_operator: Callable[..., Operator]
) -> None:
    """Whatever the spec checks miss (here a ValidatingAdmissionPolicy of the cluster's admin that
    refuses Jobs in this namespace) reaches the sweep: a JobRejected Warning event naming the Job
    and the server's reason, counted while it repeats; once the policy goes, the Job is created."""
    kc, ns = crds, namespace
    name = f"deny-jobs-{ns}"[:63]
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [{"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE"],
                                   "resources": ["jobs"]}],
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            },
            "validations": [{"expression": "false", "message": "jobs are frozen in this namespace", "reason": "Invalid"}],
        },
    }  # fmt: skip
    binding = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
               "metadata": {"name": name}, "spec": {"policyName": name, "validationActions": ["Deny"]}}  # fmt: skip
    kc.apply(policy)
    kc.apply(binding)
    try:
        probe = ["create", "job", "probe", "--image=busybox", "-n", ns, "--dry-run=server"]
        wait_for("the policy in force", lambda: kc.kubectl(*probe, check=False).returncode != 0, 60)
        start_operator()
        kc.apply(sweep_doc("frozen", store_uri, depths=[1]), "-n", ns)
        ev = wait_for("a JobRejected event", lambda: [e for e in events(kc, ns, "frozen")
                                                      if e["reason"] == "JobRejected"], 60)  # fmt: skip
        assert ev[0]["type"] == "Warning" and ev[0]["message"].startswith("the API server refused Job frozen-tokenizer")
        assert "jobs are frozen in this namespace" in ev[0]["message"]
        wait_for("the refusal counted", lambda: any(e["reason"] == "JobRejected" and e.get("count", 1) >= 2
                                                    for e in events(kc, ns, "frozen")), 60)  # fmt: skip
        assert len([e for e in events(kc, ns, "frozen") if e["reason"] == "JobRejected"]) == 1
    finally:
        kc.kubectl("delete", "validatingadmissionpolicybinding", name, "--ignore-not-found", check=False)
        kc.kubectl("delete", "validatingadmissionpolicy", name, "--ignore-not-found", check=False)
    wait_for("the tokenizer Job once the policy is gone", lambda: batch_jobs(kc, ns), 60)
