"""The plan: per-run horizons, packing onto GPUs, time and cost."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miniseries.api.errors import SpecError
from miniseries.api.spec import ScalingSweepSpec
from miniseries.api.sweepfile import load_sweep
from miniseries.plan.planner import make_plan
from miniseries.plan.run_shape import run_name

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def spec(**over: object) -> ScalingSweepSpec:
    base: dict[str, object] = {
        "depths": [10, 12],
        "store": {"uri": "s3://bucket/sweeps"},
        "data": {"shardsUri": "s3://bucket/data"},
    }
    base.update(over)
    return ScalingSweepSpec.model_validate(base)


def test_miniseries_example_costs_about_100_dollars() -> None:
    sweep = load_sweep(EXAMPLES / "miniseries.yaml")
    plan = make_plan(sweep.spec)
    assert [r.name for r in plan.runs] == [f"d{d}" for d in range(20, 9, -1)]  # longest first
    # The seed: 11 models on 8xH100 in ~3.5 hours for ~$85 (at $3/GPU-hour, 39-48% MFU by depth).
    assert 60 < plan.total_cost_usd < 150
    assert 2.5 < plan.est_wall_hours < 6
    assert plan.total_cost_usd == pytest.approx(plan.total_gpu_hours * 3.0)
    for r in plan.runs:
        assert 7.9 < r.tokens_per_param <= 8.0  # whole steps only, never past the target
        assert r.training_tokens == r.steps * r.total_batch_tokens
        assert r.gpu_slots == list(range(8))


def test_d12_run_by_hand() -> None:
    plan = make_plan(spec(depths=[12]))
    (r,) = plan.runs
    assert (r.steps, r.total_batch_tokens, r.grad_accum_steps) == (1680, 2**19, 1)
    # 880_803_840 tokens x 887_095_296 FLOPs/token
    assert r.flops == pytest.approx(880_803_840 * 887_095_296)
    # hours = FLOPs / (8 GPUs x 989e12 x 0.41) / 3600: nanochat's d12 MFU (contract/mfu.py)
    assert r.assumed_mfu == 0.41
    assert r.est_hours == pytest.approx(r.flops / (8 * 989e12 * 0.41) / 3600)
    assert r.est_cost_usd == pytest.approx(r.est_hours * 8 * 3.0)


def test_mfu_is_per_depth_unless_the_spec_sets_one() -> None:
    """Without resources.assumedMfu each depth plans at the table's MFU (higher for larger models);
    with it, every depth plans at that one number."""
    from miniseries.contract.mfu import MIN_PLANNED_MFU, PLANNED_MFU, MfuAnchor, planned_mfu

    table = make_plan(spec(depths=[4, 10, 12, 15, 18, 20, 26, 32])).runs
    mfu = {r.depth: r.assumed_mfu for r in table}
    assert (mfu[12], mfu[18], mfu[26], mfu[32]) == (0.41, 0.46, 0.52, 0.52)  # anchors, then held
    assert mfu[15] == pytest.approx((0.41 + 0.46) / 2)  # interpolated
    assert mfu[10] == pytest.approx(0.41 - 2 * (0.46 - 0.41) / 6)  # extrapolated below d12
    assert mfu[4] == pytest.approx(max(MIN_PLANNED_MFU, 0.41 - 8 * (0.46 - 0.41) / 6))
    assert [mfu[d] for d in sorted(mfu)] == sorted(mfu.values())  # never lower for a larger model
    assert all(a.source for a in PLANNED_MFU) and planned_mfu(1) >= MIN_PLANNED_MFU
    steep = (MfuAnchor(12, 0.30, "a"), MfuAnchor(13, 0.50, "b"))
    assert planned_mfu(1, steep) == MIN_PLANNED_MFU  # the extrapolation's floor
    for r in table:
        assert r.est_hours == pytest.approx(r.flops / (8 * 989e12 * mfu[r.depth]) / 3600)
    fixed = make_plan(spec(depths=[10, 20], resources={"assumedMfu": 0.3})).runs
    assert {r.assumed_mfu for r in fixed} == {0.3}
    for r in fixed:
        assert r.est_hours == pytest.approx(r.flops / (8 * 989e12 * 0.3) / 3600)


def test_packing_respects_gpus_and_parallelism() -> None:
    plan = make_plan(spec(depths=[4, 5, 6, 7, 8, 9, 10], resources={"gpusPerRun": 2, "parallelism": 3}))
    events = []
    for r in plan.runs:
        events.append((r.est_start_hours, 1, r))
        events.append((r.est_start_hours + r.est_hours, 0, r))
    in_flight: list[object] = []
    for _, kind, r in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == 0:
            in_flight.remove(r)
        else:
            in_flight.append(r)
            used = [g for x in in_flight for g in x.gpu_slots]  # type: ignore[attr-defined]
            assert len(in_flight) <= 3
            assert len(used) == len(set(used)) <= 8
    assert plan.max_runs_in_flight == 3


def test_isoflop_runs_spend_their_budget() -> None:
    plan = make_plan(
        spec(depths=[8, 10], training={"mode": "isoflop", "isoflopBudgets": [1e18, 2e18], "deviceBatchSize": 16})
    )
    assert sorted(r.name for r in plan.runs) == ["d10-f1e18", "d10-f2e18", "d8-f1e18", "d8-f2e18"]
    for r in plan.runs:
        assert r.budget_flops is not None
        # whole steps: at most one batch short of the budget
        assert r.budget_flops - r.total_batch_tokens * r.flops_per_token <= r.flops <= r.budget_flops * 1.0001


def test_budget_cap_names_both_numbers() -> None:
    with pytest.raises(SpecError) as e:
        make_plan(spec(cost={"budgetUsd": 1.0}))
    assert e.value.fields == ["spec.cost.budgetUsd"]
    assert "$1.00" in str(e.value) and "over the budget cap" in str(e.value)


def test_run_names() -> None:
    assert run_name(12) == "d12"
    assert run_name(12, 1e18) == "d12-f1e18"
    assert run_name(12, 2.15e18) == "d12-f2p15e18"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(1, 24), min_size=1, max_size=8, unique=True),
    st.sampled_from([1, 2, 4, 8]),
    st.integers(1, 8),
)
def test_any_plan_packs_within_the_node(depths: list[int], gpus: int, parallelism: int) -> None:
    plan = make_plan(
        spec(depths=depths, resources={"gpusPerRun": gpus, "parallelism": parallelism}, training={"deviceBatchSize": 4})
    )
    assert len(plan.runs) == len(depths)
    for a in plan.runs:
        overlapping = [b for b in plan.runs if b.est_start_hours <= a.est_start_hours < b.est_start_hours + b.est_hours]
        assert len(overlapping) <= min(parallelism, 8 // gpus)
        assert sum(b.gpus for b in overlapping) <= 8
