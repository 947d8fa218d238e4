"""Issue 28 item 10: the plan tells the truth about a node. Idle GPUs per node (in the plan, its
status and a condition, with the packing that would use them), the cost of whole nodes for as
long as the sweep holds them, and a warmup longer than a run refused naming the run and the field."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from miniseries.api.errors import SpecError
from miniseries.api.spec import ScalingSweepSpec, ScalingSweepStatus
from miniseries.api.sweepfile import load_sweep
from miniseries.control.decide.sweep_status import idle_gpus_condition
from miniseries.plan.planner import make_plan

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "miniseries.yaml"


def example(**resources: object) -> ScalingSweepSpec:
    """examples/miniseries.yaml (d10-d20 on one 8xH100 node) with other resources and no budget cap."""
    spec = load_sweep(EXAMPLE).spec
    return spec.model_copy(update={
        "resources": spec.resources.model_copy(update=resources),
        "cost": spec.cost.model_copy(update={"budget_usd": None}),
    })  # fmt: skip


def test_three_gpus_per_run_on_an_8_gpu_node_costs_the_whole_node() -> None:
    """The issue's case: gpusPerRun 3 packs 2 runs side by side and leaves 2 GPUs idle for the whole
    sweep; the runs use 27.8 GPU-hours ($83.40) but the node is held 4.66 h ($111.95 at $3)."""
    plan = make_plan(example(gpus_per_run=3, parallelism=2))
    assert plan.total_gpu_hours == pytest.approx(27.8, abs=0.05)
    assert plan.used_gpu_cost_usd == pytest.approx(83.40, abs=0.01)
    assert plan.est_wall_hours == pytest.approx(4.66, abs=0.01)
    assert plan.node_gpu_hours == pytest.approx(8 * plan.est_wall_hours)  # one node, from 0 to the last run's end
    assert plan.total_cost_usd == pytest.approx(plan.node_gpu_hours * 3.0) == pytest.approx(111.95, abs=0.01)
    assert plan.idle_gpu_hours == pytest.approx(plan.node_gpu_hours - plan.total_gpu_hours)
    assert plan.idle_gpus_per_node == [2]
    assert plan.idle_gpus is not None
    assert "gpusPerRun 3 packs 2 runs onto each node of 8 GPUs and leaves 2" in plan.idle_gpus
    assert "gpusPerRun 4 (2 runs per node) or 2 (4 runs per node)" in plan.idle_gpus


def test_a_plan_that_fills_its_node_costs_what_its_runs_use() -> None:
    plan = make_plan(example())  # 8 GPUs per run, one after another
    assert plan.idle_gpus_per_node == [0] and plan.idle_gpus is None and plan.idle_gpu_hours == 0
    assert plan.total_cost_usd == plan.used_gpu_cost_usd == pytest.approx(plan.total_gpu_hours * 3.0)
    four = make_plan(example(gpus_per_run=4, parallelism=2))
    assert four.idle_gpus_per_node == [0]
    # the last run alone leaves half the node idle while it finishes: counted in the cost, not a packing problem
    assert four.total_cost_usd >= four.used_gpu_cost_usd and four.idle_gpus is None


def test_parallelism_below_what_the_node_holds_is_named() -> None:
    plan = make_plan(example(gpus_per_run=1, parallelism=2))
    assert plan.idle_gpus_per_node == [6]
    assert plan.idle_gpus is not None and plan.idle_gpus.startswith("parallelism 2 runs at most 2 of the 8 GPUs")
    assert "parallelism 8 would use them" in plan.idle_gpus
    assert plan.total_cost_usd == pytest.approx(8 * plan.est_wall_hours * 3.0)


def test_a_node_no_run_can_use_is_idle_and_not_rented() -> None:
    plan = make_plan(example(gpus_per_run=16, nodes=3, parallelism=None))  # runs of 2 whole nodes on 3 nodes
    assert plan.idle_gpus_per_node == [0, 0, 8]
    assert plan.idle_gpus is not None and "1 of the 3 nodes never get a run" in plan.idle_gpus
    assert plan.node_gpu_hours == pytest.approx(plan.total_gpu_hours)  # nodes 0 and 1 busy throughout


def test_the_condition_says_idle_gpus_per_node_cost_and_packing() -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    idle = ScalingSweepStatus(plan=make_plan(example(gpus_per_run=3, parallelism=2)))
    (c,) = idle_gpus_condition(idle, now, 1)
    assert (c.type, c.status, c.reason) == ("IdleGpus", "True", "IdleGpusPerNode")
    assert c.message.startswith("idle GPUs per node (n0: 2), 9.5 GPU-hours idle of 37.3 held")
    assert "$111.95 counts whole nodes; the runs' own GPUs: $83.40" in c.message and "gpusPerRun 4" in c.message
    (full,) = idle_gpus_condition(ScalingSweepStatus(plan=make_plan(example())), now, 1)
    assert (full.status, full.reason) == ("False", "NodesFullyUsed")


def test_a_warmup_longer_than_a_run_is_refused_naming_the_runs() -> None:
    spec = example()
    spec = spec.model_copy(update={"training": spec.training.model_copy(update={"warmup_steps": 100_000})})
    with pytest.raises(SpecError) as e:
        make_plan(spec)
    assert e.value.fields == ["spec.training.warmupSteps"]
    msg = str(e.value)
    assert "100,000 is longer than runs d10 (1,070 steps)" in msg, msg
    assert "peak at 1% of its target" in msg and "allowed: at most 1,070" in msg
    ok = spec.model_copy(update={"training": spec.training.model_copy(update={"warmup_steps": 1_070})})
    make_plan(ok)  # as long as the shortest run: the peak is reached at its last step
