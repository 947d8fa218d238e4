"""Every pod the operator creates passes kube-apiserver's own PodSecurity admission in a namespace
enforcing `restricted` (issue 28 item 2): the pod templates of a PyTorchJob (its Workers copy its Master's), of a
TrainJob (the chart's runtime with the operator's patch applied) and of the tokenizer Job, each
created as a Pod with a server-side dry run, so the admission chain judges it and nothing runs.
A template stripped of its security settings is refused by the same server: the check can fail.
And pods refused by admission anyway turn the sweep Degraded with the admission's words."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from miniseries.control.backends import manifests as jobs
from miniseries.control.backends.pytorchjob import pytorchjob
from miniseries.control.backends.trainjob import trainjob
from miniseries.plan.planner import make_plan
from tests.harness.cluster import Cluster
from tests.harness.operator_process import Operator, custom, get_sweep, sweep_doc
from tests.harness.processes import wait_for
from tests.integration.test_operator_cluster import DEADLINE, crds, start_operator, store_uri  # noqa: F401
from tests.unit.test_jobs import example
from tests.unit.test_trainjob import example as trainjob_example
from tests.unit.test_trainjob import pod_patch

pytestmark = [pytest.mark.cluster, pytest.mark.safety]


def dry_run(cluster: Cluster, namespace: str, name: str, template: dict[str, Any]) -> Any:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **template.get("metadata", {})},
           "spec": template["spec"]}  # fmt: skip
    return cluster.kubectl("create", "--dry-run=server", "-n", namespace, "-f", "-", stdin=json.dumps(pod), check=False)


def trainjob_pod(job: dict[str, Any]) -> dict[str, Any]:
    """The pod the Trainer makes of the chart's runtime (templates/trainingruntime.yaml) and this job:
    the runtime's fields, the patch's pod fields and container fields, the trainer's image/command/env."""
    patch = pod_patch(job)["spec"]
    trainer = job["spec"]["trainer"]
    (node_patch,) = patch["containers"]
    container = {"name": "node", "image": trainer["image"], "command": trainer["command"], "args": trainer["args"],
                 "env": trainer["env"], "terminationMessagePolicy": "FallbackToLogsOnError",
                 "securityContext": node_patch["securityContext"], "volumeMounts": node_patch["volumeMounts"]}  # fmt: skip
    spec = {"restartPolicy": "Never", "automountServiceAccountToken": False, "containers": [container],
            **{k: v for k, v in patch.items() if k != "containers"}}  # fmt: skip
    return {"spec": spec}


def templates() -> dict[str, dict[str, Any]]:
    """A PyTorchJob's Workers are deep copies of its Master's template (pytorchjob.replica_specs)."""
    name, spec = example()
    spec.store.credentials_secret = "store-creds"
    run = make_plan(spec).runs[0]
    tj_name, tj_spec = trainjob_example()
    return {
        "pytorchjob-master": pytorchjob(spec, name, "uid", "ns", run)["spec"]["pytorchReplicaSpecs"]["Master"][
            "template"
        ],
        "tokenizer": jobs.tokenizer_job(spec, name, "uid", "ns")["spec"]["template"],
        "trainjob-node": trainjob_pod(trainjob(tj_spec, tj_name, "uid", "ns", make_plan(tj_spec).runs[0])),
    }


@pytest.mark.parametrize("kind", ["pytorchjob-master", "tokenizer", "trainjob-node"])
def test_the_operators_pods_are_admitted_as_restricted(cluster: Cluster, namespace: str, kind: str) -> None:
    template = templates()[kind]
    done = dry_run(cluster, namespace, f"{kind}-probe", template)
    assert done.returncode == 0, done.stderr
    # the control: the same pod without its security settings is refused by the same admission
    bare = copy.deepcopy(template)
    bare["spec"].pop("securityContext")
    for c in bare["spec"]["containers"]:
        c.pop("securityContext")
    refused = dry_run(cluster, namespace, f"{kind}-bare", bare)
    assert refused.returncode != 0 and 'violates PodSecurity "restricted:latest"' in refused.stderr, refused.stderr


def test_pods_refused_by_admission_make_the_sweep_degraded_with_its_words(
    crds: Cluster,  # noqa: F811
    namespace: str,
    store_uri: str,  # noqa: F811
    start_operator: Callable[..., Operator],  # noqa: F811
) -> None:
    """The tokenizer Job's pods are refused by admission (here a ResourceQuota of no pods; a stricter
    PodSecurity level or a policy engine alike): the Job controller's FailedCreate Event is all that
    says so, and the sweep is Degraded with its message, not Pending and AllHealthy."""
    kc, ns = crds, namespace
    kc.apply({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-pods"},
              "spec": {"hard": {"pods": "0"}}}, "-n", ns)  # fmt: skip
    op = start_operator()
    kc.apply(sweep_doc("refused", store_uri, depths=[2]), "-n", ns)

    def degraded() -> dict[str, Any] | None:
        conds = (get_sweep(custom(kc), ns, "refused").get("status") or {}).get("conditions") or []
        return next((c for c in conds if c["type"] == "Degraded" and c["status"] == "True"), None)

    cond = wait_for("the sweep Degraded by the refusal", degraded, DEADLINE, op.proc)
    assert cond["reason"] == "FailedCreate", cond
    assert "exceeded quota" in cond["message"] and "refused-tokenizer" in cond["message"], cond
