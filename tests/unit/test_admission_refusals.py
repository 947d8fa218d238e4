"""A job whose pods admission refuses (PodSecurity in a restricted namespace, a quota): only an Event
on the job says so; the sweep is Degraded with the admission's words, not Pending and AllHealthy
(issue 28 item 2). The Events in the shapes the API server returns them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from miniseries.api.spec import RunState
from miniseries.control.decide.observations import JobPhase, ObservedJob
from miniseries.control.decide.pod_troubles import TOKENIZER, admission_refusals
from miniseries.control.decide.reconcile import decide
from tests.unit.test_decide_sweep import NOW, observations, spec

pytestmark = pytest.mark.safety

FORBIDDEN = (
    'Error creating: pods "s-d8-master-0" is forbidden: violates PodSecurity "restricted:latest": '
    'allowPrivilegeEscalation != false (container "pytorch" must set securityContext.allowPrivilegeEscalation=false)'
)
CREATED = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def event(kind: str, name: str, reason: str, message: str = FORBIDDEN, at: datetime = CREATED) -> dict[str, Any]:
    return {"involvedObject": {"kind": kind, "name": name, "namespace": "ns"}, "reason": reason, "type": "Warning",
            "message": message, "lastTimestamp": at.isoformat().replace("+00:00", "Z")}  # fmt: skip


def test_refusals_of_each_kind_of_job_are_keyed_by_run() -> None:
    events = [
        event("PyTorchJob", "s-d8", "FailedCreatePod", at=CREATED + timedelta(seconds=5)),
        event("Job", "s-d10-node-0", "FailedCreate", at=CREATED + timedelta(seconds=5)),  # a TrainJob's JobSet's Job
        event("Job", "miniseries-tokenizer-s", "FailedCreate"),
        event("PyTorchJob", "other-d8", "FailedCreatePod"),  # another sweep's
        event("PyTorchJob", "s-d8", "BackOff"),  # not admission
    ]
    jobs = {"d8": ("s-d8", CREATED), "d10": ("s-d10", CREATED), TOKENIZER: ("miniseries-tokenizer-s", None)}
    got = admission_refusals(events, jobs, with_pods=set())
    assert set(got) == {"d8", "d10", TOKENIZER}
    assert got["d8"].waiting and got["d8"].reason == "FailedCreatePod"
    assert got["d8"].summary().startswith("the pods of PyTorchJob s-d8 are refused (FailedCreatePod): Error creating")
    assert 'violates PodSecurity "restricted:latest"' in got["d10"].summary()


def test_an_earlier_attempts_refusal_or_a_run_with_pods_is_not_one() -> None:
    events = [event("PyTorchJob", "s-d8", "FailedCreatePod", at=CREATED - timedelta(minutes=5))]
    assert admission_refusals(events, {"d8": ("s-d8", CREATED)}, with_pods=set()) == {}
    events = [event("PyTorchJob", "s-d8", "FailedCreatePod", at=CREATED + timedelta(minutes=5))]
    assert admission_refusals(events, {"d8": ("s-d8", CREATED)}, with_pods={"d8"}) == {}


def test_a_refused_run_is_degraded_with_the_admission_message_and_clears_when_admitted() -> None:
    s = spec(retryLimit=3)
    first = decide(observations(s))
    jobs = [ObservedJob(name=f"s-{r.name}", run=r.name, attempt=1, phase=JobPhase.Created)
            for r, _ in first.actions.create]  # fmt: skip
    refused = admission_refusals([event("PyTorchJob", "s-d8", "FailedCreatePod")], {"d8": ("s-d8", None)}, set())
    d = decide(replace(observations(s, first.status, jobs=jobs, now=NOW + timedelta(seconds=30)), pods=refused))
    run = next(r for r in d.status.runs if r.name == "d8")
    assert run.state is RunState.Pending and run.reason == "FailedCreatePod"
    assert 'violates PodSecurity "restricted:latest"' in (run.message or "")
    degraded = next(c for c in d.status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "FailedCreatePod"), degraded
    assert "PodSecurity" in degraded.message
    assert [(e.reason, e.type) for e in d.actions.events] == [("FailedCreatePod", "Warning")]
    # admitted after all (the namespace's policy changed): the reason goes, Degraded with it
    running = decide(replace(observations(s, d.status, now=NOW + timedelta(seconds=60)),
                             jobs=[replace(j, phase=JobPhase.Running) for j in jobs]))  # fmt: skip
    run = next(r for r in running.status.runs if r.name == "d8")
    assert run.reason is None and run.state is RunState.Running
    assert next(c for c in running.status.conditions if c.type == "Degraded").status == "False"
