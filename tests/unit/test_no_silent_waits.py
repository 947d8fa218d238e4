"""Issue 27 item 4: no run waits without a reason (control/runs.decide_runs, pure).

A wsd branch whose trunk checkpoint has not been written yet says which checkpoint it waits for; one
whose trunk went past its start step with that checkpoint gone fails naming it (an Event, the sweep
Degraded), instead of staying Pending forever. And the general check: over generated states of a
sweep (jobs in every phase, store contents, previous statuses, slots), every run left Pending is
either launched now, launched already, queued behind a full set of slots, or says why.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from miniseries.api.spec import RunState, RunStatus, ScalingSweepStatus
from miniseries.api.sweepfile import parse_sweep
from miniseries.control.decide.observations import JobPhase, ObservedJob, RunObservation, TokenizerState
from miniseries.control.decide.runs import (
    TRUNK_CHECKPOINT_MISSING,
    WAITING_FOR_TRUNK,
    RunDecision,
    Slots,
    decide_runs,
    slots_held,
)
from miniseries.control.decide.sweep_status import sweep_status
from miniseries.plan.planner import make_plan
from tests.unit.test_wsd import doc

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def wsd_plan():  # type: ignore[no-untyped-def]
    d = doc()
    d["spec"].update(depths=[2], resources={"gpusPerRun": 1, "nodeGpus": 4})  # type: ignore[union-attr]
    spec = parse_sweep(d).spec
    plan = make_plan(spec)
    return spec, plan, {r.name: r for r in plan.runs}


def test_a_branch_waiting_for_its_trunk_says_for_which_checkpoint() -> None:
    spec, plan, by = wsd_plan()
    b2 = by["d2-b2"]
    running = ObservedJob("w-d2-trunk", "d2-trunk", 1, JobPhase.Running)
    dec = decide_runs(spec, "w", plan, [running], {}, [], TokenizerState.NotNeeded, NOW)
    st = {r.name: r for r in dec.runs}
    assert st["d2-b2"].state is RunState.Pending and st["d2-b2"].reason == WAITING_FOR_TRUNK
    assert f"d2-trunk's checkpoint at step {b2.start_step}" in (st["d2-b2"].message or "")
    assert not dec.events


def test_a_branch_whose_trunk_checkpoint_is_gone_fails_naming_it_once() -> None:
    """The issue's evidence: the trunk finished, its checkpoint at a branch's start step was deleted;
    the branch stayed Pending with 0 attempts, no message, no Event, the sweep AllHealthy."""
    from miniseries.contract.results import LossSummary, RunResults

    spec, plan, by = wsd_plan()
    b2, b4, b8 = by["d2-b2"], by["d2-b4"], by["d2-b8"]
    res = RunResults(sweep="w", run="d2-trunk", depth=2, shape={}, params={}, target_tokens=1, tokens=1, steps=1,
                     total_batch_tokens=1, flops_per_token=1, flops=1.0, wall_seconds=1.0, gpu_seconds=1.0,
                     world_size=1, device="cpu", loss=LossSummary())  # fmt: skip
    # b2's start checkpoint deleted; b4's and b8's are there
    store = {"d2-trunk": RunObservation(results=res, checkpoint_steps=(b4.start_step, b8.start_step))}
    dec = decide_runs(spec, "w", plan, [], store, [], TokenizerState.NotNeeded, NOW)
    st = {r.name: r for r in dec.runs}
    assert st["d2-b2"].state is RunState.Failed and st["d2-b2"].reason == TRUNK_CHECKPOINT_MISSING
    assert f"d2-trunk's checkpoint at step {b2.start_step}" in (st["d2-b2"].message or "")
    assert "delete d2-trunk's results and checkpoints" in (st["d2-b2"].message or "")
    assert [e.reason for e in dec.events if "d2-b2" in e.message] == ["RunFailed"]
    assert sorted(r.name for r, _ in dec.create) == ["d2-b4", "d2-b8"]  # the others carry on
    # the sweep says so: Degraded naming the branch
    status = sweep_status(ScalingSweepStatus(), dec.runs, suspended=False, tokenizer=TokenizerState.NotNeeded,
                          now=NOW, generation=1)  # fmt: skip
    degraded = next(c for c in status.conditions if c.type == "Degraded")
    assert degraded.status == "True" and "d2-b2" in degraded.message
    # decided again: still Failed, no second Event
    again = decide_runs(spec, "w", plan, [], store, dec.runs, TokenizerState.NotNeeded, NOW)
    assert {r.name: r for r in again.runs}["d2-b2"].state is RunState.Failed
    assert not [e for e in again.events if "d2-b2" in e.message]
    # a trunk still before the step (a later checkpoint not yet written) is waited for, not failed
    early = {"d2-trunk": RunObservation(checkpoint_steps=(b2.start_step - 1,))}
    st = {r.name: r for r in decide_runs(spec, "w", plan, [], early, [], TokenizerState.NotNeeded, NOW).runs}
    assert st["d2-b4"].state is RunState.Pending and st["d2-b4"].reason == WAITING_FOR_TRUNK


# ---------------------------------------------------------------- the general check

PHASES = [None, JobPhase.Created, JobPhase.Running, JobPhase.Suspended, JobPhase.Failed, JobPhase.Succeeded]
PREVIOUS = [None, RunState.Pending, RunState.Running, RunState.Retrying, RunState.Failed, RunState.Preempted]


def explained(dec: RunDecision, rs: RunStatus, full: bool) -> bool:
    """A Pending run is fine when it is launched now, was launched (its job or a recorded launch),
    waits behind full slots, or says why (reason and message)."""
    launched_now = rs.name in {r.name for r, _ in dec.create}
    return launched_now or bool(rs.job_name and rs.attempts) or full or bool(rs.reason and rs.message)


def test_no_pending_run_without_a_reason_over_generated_states() -> None:
    """Random states of a wsd sweep (a trunk and three branches) and of a ratio sweep: whatever the jobs,
    the store and the previous statuses, after decide_runs every Pending run is explained."""
    rng = random.Random(27)
    cases = 0
    for spec, plan, _ in (wsd_plan(),):
        names = [r.name for r in plan.runs]
        starts = sorted({r.start_step for r in plan.runs if r.start_step})
        for _ in range(3000):
            jobs, store, previous = [], {}, []
            for name in names:
                phase = rng.choice(PHASES)
                if phase is not None:
                    jobs.append(
                        ObservedJob(f"w-{name}", name, rng.randint(1, 3), phase, since=NOW - timedelta(hours=1))
                    )
                ckpts = tuple(s for s in starts if rng.random() < 0.5) if name.endswith("trunk") else ()
                if ckpts or rng.random() < 0.3:
                    store[name] = RunObservation(checkpoint_steps=ckpts, checkpoint_step=max(ckpts, default=None))
                prev = rng.choice(PREVIOUS)
                if prev is not None:
                    previous.append(RunStatus(name=name, depth=2, state=prev, attempts=rng.randint(0, 3),
                                              job_name=f"w-{name}" if rng.random() < 0.5 else None))  # fmt: skip
            slots = Slots(runs=rng.randint(1, 4), gpus=4)
            dec = decide_runs(spec, "w", plan, jobs, store, previous, TokenizerState.NotNeeded, NOW, slots)
            launching = [r for r in dec.runs if r.state is RunState.Pending and r.job_name]
            held, gpus = slots_held(plan, jobs, launching, frozenset(dec.delete))
            new_gpus = sum(r.gpus for r, _ in dec.create)
            full = held + len(dec.create) >= slots.runs or gpus + new_gpus + 1 > slots.gpus
            for rs in dec.runs:
                if rs.state is RunState.Pending:
                    assert explained(dec, rs, full), (rs, jobs, store, previous, slots)
            cases += 1
    assert cases == 3000
