"""What the operator reads from the sweep's pods (control/decide/pod_troubles.py): the kubelet's and the
scheduler's own words, in the shapes the API server returns them."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from miniseries.api.spec import RunState
from miniseries.control.decide.observations import JobPhase, ObservedJob
from miniseries.control.decide.pod_troubles import TOKENIZER, log_tail, trouble_of, troubles_by_run
from miniseries.control.decide.reconcile import decide
from tests.unit.test_decide_sweep import NOW, observations, spec

IMAGE = "ghcr.io/miniseries/trainer:no-such-tag"
PULL_MESSAGE = (
    f'failed to pull and unpack image "{IMAGE}": failed to resolve reference "{IMAGE}": '
    "dial tcp: lookup ghcr.io: no such host"
)


def pod(name: str, run: str | None = "d12", attempt: int = 1, *, component: str = "trainer",
        container: dict[str, Any] | None = None, conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    labels = {"miniseries.dev/sweep": "s", "miniseries.dev/component": component,
              "miniseries.dev/attempt": str(attempt)}  # fmt: skip
    if run:
        labels["miniseries.dev/run"] = run
    status: dict[str, Any] = {"phase": "Pending", "conditions": conditions or []}
    if container is not None:
        status["containerStatuses"] = [{"name": "pytorch", "image": IMAGE, **container}]
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "pytorch", "image": IMAGE}]}, "status": status}  # fmt: skip


def test_an_unpullable_image_names_the_image_and_the_kubelets_reason() -> None:
    t = trouble_of(pod("s-d12-master-0", container={"state": {"waiting": {"reason": "ErrImagePull",
                                                                           "message": PULL_MESSAGE}}}))  # fmt: skip
    assert t is not None and t.waiting and t.reason == "ErrImagePull" and t.image == IMAGE
    assert t.summary().startswith(f"image {IMAGE!r} cannot be pulled (ErrImagePull): failed to pull")
    assert "no such host" in t.summary()


def test_a_container_being_created_or_running_is_no_trouble() -> None:
    assert trouble_of(pod("p", container={"state": {"waiting": {"reason": "ContainerCreating"}}})) is None
    assert trouble_of(pod("p", container={"state": {"running": {"startedAt": "2026-11-29T18:00:00Z"}}})) is None
    assert trouble_of(pod("p", container={"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}})) is None
    assert trouble_of(pod("p")) is None  # not scheduled yet, nothing said


def test_a_failed_container_brings_the_tail_of_its_log() -> None:
    log = "\n".join(f"step {i}" for i in range(100)) + "\nStoreError: --data s3://b/none/ has 0 parquet shard(s)\n"
    t = trouble_of(pod("p", container={"state": {"terminated": {"exitCode": 1, "reason": "Error", "message": log}}}))
    assert t is not None and not t.waiting and t.exit_code == 1
    assert t.log_tail is not None and t.log_tail.splitlines()[-1].startswith("StoreError: --data")
    assert len(t.log_tail.splitlines()) == 8
    assert "container exited with code 1 (Error) in pod p" in t.summary()
    assert t.summary().endswith("has 0 parquet shard(s)")


def test_oom_killed_says_so_even_without_a_log() -> None:
    t = trouble_of(pod("p", container={"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}))
    assert t is not None and t.reason == "OOMKilled" and t.log_tail is None
    assert t.summary() == (
        "container exited with code 137 (OOMKilled) in pod p: the node ran out of memory (the container had no "
        "memory limit)"
    )


def test_oom_killed_names_the_memory_limit_and_where_it_came_from() -> None:
    """Issue 27 item 6: the limit that killed it came from a namespace LimitRange (the operator sets none)."""
    oom = {"state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}
    p = pod("p", container=oom)
    p["spec"]["containers"][0]["resources"] = {"limits": {"memory": "512Mi"}, "requests": {"memory": "256Mi"}}
    t = trouble_of(p)
    assert t is not None and "memory limit 512Mi, set by the container's spec" in t.summary()
    p["metadata"]["annotations"] = {"kubernetes.io/limit-ranger": "LimitRanger plugin set: memory limit for "
                                    "container pytorch"}  # fmt: skip
    t = trouble_of(p)
    assert t is not None and "memory limit 512Mi, set by the namespace's LimitRange default" in t.summary()


def test_crash_loop_keeps_the_previous_attempts_log_tail() -> None:
    t = trouble_of(pod("p", container={
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
        "lastState": {"terminated": {"exitCode": 2, "message": "usage: train\ntrain: error: bad flag"}}}))  # fmt: skip
    assert t is not None and t.waiting and t.reason == "CrashLoopBackOff"
    assert t.log_tail == "usage: train\ntrain: error: bad flag"


def test_unschedulable_pod_carries_the_schedulers_message() -> None:
    cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}  # fmt: skip
    t = trouble_of(pod("p", conditions=[cond]))
    assert t is not None and t.reason == "Unschedulable" and "Insufficient nvidia.com/gpu" in t.summary()


def test_troubles_are_keyed_by_run_and_only_the_newest_attempt_counts() -> None:
    failed = {"state": {"terminated": {"exitCode": 1, "reason": "Error", "message": "boom"}}}
    pulling = {"state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}
    pods = [
        pod("s-d12-a1", "d12", 1, container=failed),  # an old attempt, being deleted
        pod("s-d12-a2", "d12", 2, container={"state": {"running": {}}}),
        pod("s-d14-a1", "d14", 1, container=pulling),
        pod("s-tok", None, 1, component="tokenizer", container=failed),
        pod("stray", None, 1, component="other", container=failed),
    ]
    troubles = troubles_by_run(pods)
    assert set(troubles) == {"d14", TOKENIZER}
    assert troubles["d14"].reason == "ImagePullBackOff"


def test_log_tail_is_bounded() -> None:
    assert log_tail(None) is None and log_tail("  \n") is None
    long = "x" * 5000
    tail = log_tail(long)
    assert tail is not None and len(tail) == 800 and tail.startswith("…")


# ---- what decide makes of them: a run condition, an Event, Degraded


def _decide_with(pods: dict[str, Any], phase: JobPhase, retry_limit: int = 3) -> tuple[Any, Any]:
    s = spec(retryLimit=retry_limit)
    first = decide(observations(s))
    jobs = [ObservedJob(name=f"s-{r.name}", run=r.name, attempt=1, phase=phase,
                        message="PyTorchJob s-d8 is failed because 1 Master replica(s) failed." if phase is
                        JobPhase.Failed else "") for r, _ in first.actions.create]  # fmt: skip
    obs = observations(s, first.status, jobs=jobs, now=NOW + timedelta(seconds=30))
    return first, decide(replace(obs, pods={k: trouble_of(v) for k, v in pods.items()}))


def test_an_unpullable_image_is_a_run_reason_an_event_and_degraded() -> None:
    pulling = pod("s-d8-master-0", "d8", container={"state": {"waiting": {"reason": "ErrImagePull",
                                                                           "message": PULL_MESSAGE}}})  # fmt: skip
    _, d = _decide_with({"d8": pulling}, JobPhase.Created)
    run = next(r for r in d.status.runs if r.name == "d8")
    assert run.state is RunState.Pending and run.reason == "ErrImagePull" and IMAGE in (run.message or "")
    assert [(e.reason, e.type) for e in d.actions.events] == [("ErrImagePull", "Warning")]
    assert IMAGE in d.actions.events[0].message and d.actions.events[0].message.startswith("d8: image")
    degraded = next(c for c in d.status.conditions if c.type == "Degraded")
    assert (degraded.status, degraded.reason) == ("True", "ErrImagePull") and IMAGE in degraded.message
    assert not d.actions.delete  # the job stays: pushing the image lets it start
    # the same trouble on the next poll: no new Event; once the image is there, the reason goes
    again = decide(replace(observations(spec(retryLimit=3), d.status, jobs=[], now=NOW + timedelta(seconds=40)),
                           jobs=[ObservedJob("s-d8", "d8", 1, JobPhase.Created)],
                           pods={"d8": trouble_of(pulling)}))  # fmt: skip
    assert [e for e in again.actions.events if e.reason == "ErrImagePull"] == []
    running = decide(replace(observations(spec(retryLimit=3), again.status, now=NOW + timedelta(seconds=50)),
                             jobs=[ObservedJob("s-d8", "d8", 1, JobPhase.Running)]))  # fmt: skip
    run = next(r for r in running.status.runs if r.name == "d8")
    assert run.reason is None and run.message is None and run.state is RunState.Running
    degraded = next(c for c in running.status.conditions if c.type == "Degraded")
    assert degraded.status == "False"


def test_a_failed_container_puts_its_exit_code_and_log_tail_in_the_failure() -> None:
    log = "Traceback (most recent call last):\n  ...\nStoreError: --data s3://b/none/ has 0 parquet shard(s)"
    failed = pod("s-d8-master-0", "d8", container={"state": {"terminated": {"exitCode": 1, "reason": "Error",
                                                                             "message": log}}})  # fmt: skip
    _, d = _decide_with({"d8": failed}, JobPhase.Failed, retry_limit=0)
    run = next(r for r in d.status.runs if r.name == "d8")
    assert run.state is RunState.Failed and run.message is not None
    assert run.message.startswith("PyTorchJob s-d8 is failed because 1 Master replica(s) failed.; container exited")
    assert run.message.endswith("has 0 parquet shard(s)")
    (event,) = [e for e in d.actions.events if e.reason == "RunFailed" and e.message.startswith("d8 ")]
    assert "exited with code 1" in event.message and "0 parquet shard(s)" in event.message
