"""Issue 27 item 3 (pure decisions): a store that refuses a run's credentials is not a training failure.

The evidence: with the credentials Secret changed to a wrong key, attempts 2-4 failed on
`HeadBucket: Forbidden` within 50 s and the run went Failed, while the sweep showed StoreReachable=True;
fixing the Secret did not revive the run; runs that later succeeded kept the old failure reason.
"""

from __future__ import annotations

from datetime import timedelta

from miniseries.api.spec import RunState
from miniseries.contract.exits import EXIT_STORE_DENIED, STORE_DENIED_MARKER
from miniseries.control.decide.observations import JobPhase, ObservedJob, RunObservation
from miniseries.control.decide.pod_troubles import PodTrouble
from miniseries.control.decide.reconcile import decide
from miniseries.control.decide.runs import STORE_ACCESS_DENIED
from tests.unit.test_decide_sweep import NOW, observations, results, spec

REFUSED = "store s3://bucket/team: An error occurred (403) when calling the HeadBucket operation: Forbidden"
LOG = f"loading...\n{STORE_DENIED_MARKER} {REFUSED}"


def failed(run: str, attempt: int) -> ObservedJob:
    return ObservedJob(f"s-{run}", run, attempt, JobPhase.Failed, since=NOW, reason="ExitCode77")


def test_a_refused_store_spends_no_retry_names_the_secret_and_the_operation_and_is_tried_again() -> None:
    s = spec(depths=[4], retryLimit=1, store={"uri": "s3://bucket/team", "credentialsSecret": "team-s3"})
    trouble = PodTrouble("s-d4-master-0", "Error", "", exit_code=EXIT_STORE_DENIED, log_tail=LOG)
    previous = None
    for attempt_seen in range(1, 5):  # more refusals than retryLimit allows failures
        d = decide(observations(s, previous, jobs=[failed("d4", 1)], pods={"d4": trouble},
                                now=NOW + timedelta(minutes=attempt_seen)))  # fmt: skip
        (r,) = d.status.runs
        assert r.state is RunState.Retrying and r.reason == STORE_ACCESS_DENIED, r
        assert r.attempts == 1  # no retry spent
        previous = d.status
    assert "the Secret 'team-s3' (spec.store.credentialsSecret)" in (r.message or "")
    assert "HeadBucket operation: Forbidden" in (r.message or "")
    conds = {c.type: c for c in d.status.conditions}
    assert conds["StoreReachable"].status == "False" and conds["StoreReachable"].reason == "RunsDenied"
    assert "d4" in conds["StoreReachable"].message and "team-s3" in conds["StoreReachable"].message
    # the job is deleted and, after the wait, the same attempt is created again (no job left: a candidate)
    gone = decide(observations(s, previous, now=NOW + timedelta(hours=1)))
    assert [(run.name, a) for run, a in gone.actions.create] == [("d4", 1)]
    # fixed: it trains and succeeds, and the earlier reason and message are cleared
    done = decide(observations(s, gone.status, store={"d4": RunObservation(results=results("d4"))}))
    (r,) = done.status.runs
    assert r.state is RunState.Succeeded and r.reason is None and r.message is None
    assert {c.type: c.status for c in done.status.conditions}["StoreReachable"] == "True"


def test_several_ranks_under_torchrun_exit_1_and_the_marker_in_the_log_says_it() -> None:
    s = spec(depths=[4], retryLimit=0)
    trouble = PodTrouble("s-d4-master-0", "Error", "", exit_code=1, log_tail=LOG)
    (r,) = decide(observations(s, jobs=[failed("d4", 1)], pods={"d4": trouble})).status.runs
    assert r.state is RunState.Retrying and r.reason == STORE_ACCESS_DENIED
    # an ordinary crash is still a failure
    crash = PodTrouble("s-d4-master-0", "Error", "", exit_code=1, log_tail="RuntimeError: CUDA error")
    (r,) = decide(observations(s, jobs=[failed("d4", 1)], pods={"d4": crash})).status.runs
    assert r.state is RunState.Failed
