"""A failed trainer that printed its secret key (issue 28 item 3): the kubelet copies the end of its log
into the pod's status (FallbackToLogsOnError), the operator copies that into the sweep's status, its
Events and its own log, and the secret reaches none of them.

Real API server, real operator process; the JobDriver fails the run's job (tests/harness/operator_process.py)
and this test writes the failed pod's status through `pods/status` as the kubelet would (the cluster's
node is kwok's, which runs no processes), with the log tail a leaking trainer leaves."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from miniseries.control.backends import manifests as jobs
from miniseries.control.backends.podsecurity import container_security_context, pod_security_context
from tests.harness.cluster import Cluster
from tests.harness.operator_process import JobDriver, Operator, SweepHistory, sweep_doc, write_terminated
from tests.harness.processes import wait_for
from tests.integration.test_operator_cluster import DEADLINE, crds, ended, start_operator, store_uri  # noqa: F401

pytestmark = [pytest.mark.cluster, pytest.mark.safety]

SECRET = "Lk3/planted+" + uuid.uuid4().hex + "Q"  # an AWS-style secret key, unique to this run
KEY_ID = "AKIA" + uuid.uuid4().hex[:16].upper()


def failed_pod(sweep: str, run: str) -> dict[str, object]:
    labels = {jobs.LABEL_SWEEP: sweep, jobs.LABEL_RUN: run, jobs.LABEL_ATTEMPT: "1", jobs.LABEL_COMPONENT: "trainer"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{sweep}-{run}-master-0", "labels": labels},
        "spec": {
            "containers": [{"name": "pytorch", "image": "trainer", "securityContext": container_security_context()}],
            "securityContext": pod_security_context(),
            "nodeSelector": {"miniseries.dev/no-such-node": "true"},  # never scheduled: its status is ours
        },
    }


def test_a_trainers_printed_secret_reaches_no_status_event_or_log(
    crds: Cluster,  # noqa: F811
    namespace: str,
    store_uri: str,  # noqa: F811
    start_operator: Callable[..., Operator],  # noqa: F811
    tmp_path: Path,
) -> None:
    kc, ns = crds, namespace
    kc.apply(failed_pod("leak", "d2"), "-n", ns)
    log = (
        "step 3/40 | loss 6.1\n"
        f"boto3 session: aws_access_key_id={KEY_ID} aws_secret_access_key={SECRET}\n"
        f"botocore.exceptions.ClientError: SignatureDoesNotMatch (key {KEY_ID})\n"
    )
    write_terminated(kc, ns, "leak-d2-master-0", 3, "Error", log)
    op = start_operator()
    history = SweepHistory(kc, ns, "leak")
    with history, JobDriver(kc, ns, fail={"d2": {1}}, fail_step=3, log_dir=tmp_path):
        kc.apply(sweep_doc("leak", store_uri, depths=[2]), "-n", ns)
        told = wait_for(
            "d2's failure with its log tail",
            lambda: history.first(
                lambda st: [
                    r["message"] for r in st.get("runs", []) if "last lines of its log" in (r.get("message") or "")
                ],
                ended,
            ),
            DEADLINE,
            op.proc,
        )
    assert "SignatureDoesNotMatch" in told[0] and "***" in told[0], told  # the tail is told, redacted
    statuses = json.dumps(history.statuses())
    events = kc.kubectl("get", "events", "-n", ns, "-o=json").stdout
    operator_log = op.log_path.read_text()
    for where, text in (("status", statuses), ("Events", events), ("the operator's log", operator_log)):
        assert SECRET not in text and KEY_ID not in text, f"the secret reached {where}"
