"""Runs over several nodes, and sweeps over several nodes: the plan's arithmetic, the refusals, the
PyTorchJob (Master + Workers) and the launch decisions. Pure functions, no cluster."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from miniseries.api.errors import SpecError
from miniseries.api.spec import PlanStatus, ScalingSweepSpec
from miniseries.api.sweepfile import parse_sweep
from miniseries.contract.layout import SweepLayout
from miniseries.control.backends import manifests as jobs
from miniseries.control.backends.pytorchjob import pytorchjob
from miniseries.control.decide import runs
from miniseries.control.decide.observations import JobPhase, ObservedJob, TokenizerState
from miniseries.plan.planner import make_plan
from miniseries.plan.trainer_argv import trainer_flags

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def spec(depths: list[int] | None = None, **resources: Any) -> ScalingSweepSpec:
    return ScalingSweepSpec.model_validate(
        {
            "depths": depths or [10, 12],
            "training": {"deviceBatchSize": 4},
            "resources": resources,
            "store": {"uri": "s3://bucket/sweeps"},
            "data": {"shardsUri": "s3://bucket/data", "tokenizerUri": "s3://bucket/tok"},
            "cost": {"budgetUsd": 1e6},
        }
    )


def sweep_doc(**resources: Any) -> dict[str, Any]:
    return {"apiVersion": "miniseries.dev/v1alpha1", "kind": "ScalingSweep", "metadata": {"name": "mn"},
            "spec": spec(**resources).wire()}  # fmt: skip


def node_of(slot: int, node_gpus: int) -> int:
    return slot // node_gpus


def in_flight_at(plan: PlanStatus, t: float) -> list[Any]:
    return [r for r in plan.runs if r.est_start_hours <= t < r.est_start_hours + r.est_hours]


# ---------------------------------------------------------------- spec arithmetic and refusals


@pytest.mark.parametrize(
    ("gpus", "node_gpus", "nodes", "per_run", "per_pod", "in_flight"),
    [
        (8, 8, 1, 1, 8, 1),
        (4, 8, 1, 1, 4, 2),
        (3, 8, 2, 1, 3, 4),  # two runs of 3 fit a node of 8, on each of 2 nodes
        (16, 8, 2, 2, 8, 1),
        (16, 8, 5, 2, 8, 2),  # the fifth node idles: a run holds two whole nodes
        (64, 8, 8, 8, 8, 1),
        (2, 1, 2, 2, 1, 1),
    ],
)
def test_nodes_per_run_and_runs_the_nodes_hold(
    gpus: int, node_gpus: int, nodes: int, per_run: int, per_pod: int, in_flight: int
) -> None:
    r = spec(gpusPerRun=gpus, nodeGpus=node_gpus, nodes=nodes).resources
    assert (r.nodes_per_run, r.gpus_per_node, r.max_runs_in_flight) == (per_run, per_pod, in_flight)


def test_parallelism_still_caps_runs_over_many_nodes() -> None:
    assert spec(gpusPerRun=1, nodeGpus=8, nodes=4, parallelism=5).resources.max_runs_in_flight == 5


@pytest.mark.parametrize(
    ("resources", "allowed"),
    [
        (
            {"gpusPerRun": 12, "nodeGpus": 8, "nodes": 2},
            "gpusPerRun (12) must be <= nodeGpus (8) or a multiple of it (16, 24, ...)",
        ),
        ({"gpusPerRun": 12, "nodeGpus": 8}, "gpusPerRun (12) must be <= nodeGpus (8) or a multiple of it"),
        ({"gpusPerRun": 16, "nodeGpus": 8}, "or nodes (1) at least 2: a run of 16 GPUs spans 2 nodes of 8"),
        ({"gpusPerRun": 32, "nodeGpus": 8, "nodes": 3}, "or nodes (3) at least 4"),
    ],
    ids=["12-on-8", "12-on-8-one-node", "16-on-one-8-gpu-node", "32-on-three-8-gpu-nodes"],
)
def test_impossible_splits_are_refused_naming_the_fields(resources: dict[str, Any], allowed: str) -> None:
    doc = sweep_doc()
    doc["spec"]["resources"] = resources
    with pytest.raises(SpecError) as e:
        make_plan(parse_sweep(doc).spec)
    assert e.value.fields == ["spec.resources"]
    assert allowed in str(e.value)


@pytest.mark.parametrize(("nodes", "allowed"), [(0, "greater than or equal to 1"), (65, "less than or equal to 64")])
def test_nodes_out_of_range(nodes: int, allowed: str) -> None:
    doc = sweep_doc()
    doc["spec"]["resources"]["nodes"] = nodes
    with pytest.raises(SpecError) as e:
        parse_sweep(doc)
    assert e.value.fields == ["spec.resources.nodes"] and allowed in str(e.value)


def test_the_crd_carries_nodes_and_its_bounds() -> None:
    from miniseries.api.crd import crd

    props = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    nodes = props["resources"]["properties"]["nodes"]
    assert (nodes["default"], nodes["minimum"], nodes["maximum"]) == (1, 1, 64)
    assert "whole nodes" in nodes["description"]


# ---------------------------------------------------------------- the plan


def test_a_run_over_two_nodes_holds_both_and_costs_all_its_gpus() -> None:
    one = make_plan(spec([12], gpusPerRun=8, nodeGpus=8))
    two = make_plan(spec([12], gpusPerRun=16, nodeGpus=8, nodes=2))
    (a,), (b,) = one.runs, two.runs
    assert (a.nodes, b.nodes) == (1, 2)
    assert b.gpus == 16 and b.gpu_slots == list(range(16))
    # the same FLOPs on twice the GPUs: half the hours, the same GPU-hours and cost
    assert b.flops == pytest.approx(a.flops * b.training_tokens / a.training_tokens)
    assert b.est_hours == pytest.approx(b.flops / (16 * 989e12 * 0.41) / 3600)  # d12's planned MFU
    assert b.est_gpu_hours == pytest.approx(b.est_hours * 16)
    assert b.est_cost_usd == pytest.approx(b.est_gpu_hours * 3.0)
    assert two.nodes == 2 and two.max_runs_in_flight == 1


def test_more_nodes_run_more_at_once_for_the_same_gpu_hours() -> None:
    depths = [4, 6, 8, 10, 12, 14]
    plans = {n: make_plan(spec(depths, gpusPerRun=16, nodeGpus=8, nodes=n)) for n in (2, 4, 6)}
    assert [plans[n].max_runs_in_flight for n in (2, 4, 6)] == [1, 2, 3]
    assert plans[2].total_gpu_hours == pytest.approx(plans[6].total_gpu_hours)
    assert plans[2].est_wall_hours > plans[4].est_wall_hours >= plans[6].est_wall_hours
    for n, plan in plans.items():  # never faster than all the nodes busy, never slower than the longest run allows
        assert plan.est_wall_hours >= plan.total_gpu_hours / (n * 8) - 1e-12
        assert plan.est_wall_hours >= max(r.est_hours for r in plan.runs)
    # one node at a time: the wall time is the sum of the runs
    assert plans[2].est_wall_hours == pytest.approx(sum(r.est_hours for r in plans[2].runs))
    first = [r for r in plans[4].runs if r.est_start_hours == 0]
    assert sorted(sorted({node_of(s, 8) for s in r.gpu_slots}) for r in first) == [[0, 1], [2, 3]]


def test_small_runs_spread_over_the_nodes() -> None:
    plan = make_plan(spec([4, 5, 6, 7, 8, 9], gpusPerRun=4, nodeGpus=8, nodes=2))
    first = [r for r in plan.runs if r.est_start_hours == 0]
    assert len(first) == 4 == plan.max_runs_in_flight
    assert sorted(r.gpu_slots for r in first) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    assert all(r.nodes == 1 for r in plan.runs)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(1, 20), min_size=1, max_size=8, unique=True),
    st.sampled_from([(1, 8), (2, 8), (3, 8), (8, 8), (16, 8), (24, 8), (4, 4), (8, 4)]),
    st.integers(1, 6),
    st.integers(1, 8),
)
def test_any_plan_packs_within_its_nodes(
    depths: list[int], shape: tuple[int, int], nodes: int, parallelism: int
) -> None:
    gpus, node_gpus = shape
    per_run = max(1, gpus // node_gpus)
    if per_run > nodes:
        return  # refused: tested above
    plan = make_plan(spec(depths, gpusPerRun=gpus, nodeGpus=node_gpus, nodes=nodes, parallelism=parallelism))
    assert len(plan.runs) == len(depths)
    for r in plan.runs:
        held = {node_of(s, node_gpus) for s in r.gpu_slots}
        assert len(r.gpu_slots) == len(set(r.gpu_slots)) == r.gpus == gpus
        assert all(0 <= s < nodes * node_gpus for s in r.gpu_slots)
        assert len(held) == r.nodes == per_run  # one node, or whole nodes
        if per_run > 1:
            assert sorted(r.gpu_slots) == [k * node_gpus + g for k in sorted(held) for g in range(node_gpus)]
    for a in plan.runs:
        now = in_flight_at(plan, a.est_start_hours)
        assert len(now) <= min(parallelism, plan.max_runs_in_flight)
        used = [s for r in now for s in r.gpu_slots]
        assert len(used) == len(set(used)) <= nodes * node_gpus  # no GPU held twice, no node overfull


def test_plan_table_shows_nodes_per_run_and_where(tmp_path: Path) -> None:
    f = tmp_path / "mn.yaml"
    f.write_text(yaml.safe_dump(sweep_doc(gpusPerRun=16, nodeGpus=8, nodes=4)))
    r = subprocess.run([sys.executable, "-m", "miniseries.cli", "plan", str(f)], capture_output=True, text=True,
                       cwd=ROOT)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "4 nodes of 8xH100, 16 GPUs/run over 2 nodes, 2 in flight at most" in r.stdout
    header = next(line for line in r.stdout.splitlines() if line.lstrip().startswith("run"))
    assert "nodes" in header.split()
    rows = [line.split() for line in r.stdout.splitlines() if line.lstrip().startswith("d1")]
    col = header.split().index("nodes")
    assert [row[col] for row in rows] == ["2", "2"]
    assert sorted(row[col + 1] for row in rows) == ["n0,n1", "n2,n3"]


# ---------------------------------------------------------------- the PyTorchJob


def test_a_run_over_three_nodes_is_a_master_and_two_workers() -> None:
    s = spec([12], gpusPerRun=24, nodeGpus=8, nodes=3)
    (run,) = make_plan(s).runs
    job = pytorchjob(s, "mn", "uid", "ns", run)
    assert job["spec"]["nprocPerNode"] == "8"
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert list(replicas) == ["Master", "Worker"]
    assert (replicas["Master"]["replicas"], replicas["Worker"]["replicas"]) == (1, 2)
    master, worker = replicas["Master"]["template"], replicas["Worker"]["template"]
    assert master == worker and master is not worker  # the same pod, rendered twice
    for r in replicas.values():
        assert r["restartPolicy"] == "Never"
    (c,) = master["spec"]["containers"]
    assert c["name"] == "pytorch"
    # eight ranks per pod: torchrun, which reads PET_NNODES/PET_NODE_RANK/PET_NPROC_PER_NODE/PET_MASTER_*
    assert c["command"][0] == "torchrun" and c["command"][-3:] == ["-m", "--", "miniseries_trainer.train"]
    assert c["args"] == trainer_flags(s, SweepLayout("ns", "mn"), run, sweep_uid="uid")
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    assert c["resources"]["requests"]["nvidia.com/gpu"] == "8"
    assert master["metadata"]["labels"][jobs.LABEL_RUN] == run.name
    assert job["spec"]["runPolicy"]["backoffLimit"] == 0


def test_one_gpu_pods_run_the_trainer_itself() -> None:
    """One process per pod: the training-operator's RANK and WORLD_SIZE are the trainer's own."""
    s = spec([4], gpusPerRun=2, nodeGpus=1, nodes=2)
    (run,) = make_plan(s).runs
    job = pytorchjob(s, "mn", "uid", "ns", run)
    replicas = job["spec"]["pytorchReplicaSpecs"]
    assert {k: v["replicas"] for k, v in replicas.items()} == {"Master": 1, "Worker": 1}
    assert job["spec"]["nprocPerNode"] == "1"
    for r in replicas.values():
        assert r["template"]["spec"]["containers"][0]["command"] == ["python", "-m", "miniseries_trainer.train"]


def test_a_single_node_run_keeps_one_replica() -> None:
    for gpus, command in ((1, "python"), (4, "torchrun")):
        s = spec([4], gpusPerRun=gpus, nodeGpus=8, nodes=2)
        (run,) = make_plan(s).runs
        job = pytorchjob(s, "mn", "uid", "ns", run)
        assert list(job["spec"]["pytorchReplicaSpecs"]) == ["Master"]
        assert job["spec"]["nprocPerNode"] == str(gpus)
        assert (
            job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["command"][0] == command
        )


# ---------------------------------------------------------------- launches


def decide(s: ScalingSweepSpec, jobs_: list[ObservedJob]) -> runs.RunDecision:
    return runs.decide_runs(s, "s", make_plan(s), jobs_, {}, [], TokenizerState.NotNeeded, NOW)


def test_launches_fill_whole_nodes() -> None:
    s = spec([4, 6, 8, 10, 12], gpusPerRun=16, nodeGpus=8, nodes=5)
    assert runs.Slots.of(s) == runs.Slots(runs=2, gpus=40)
    d = decide(s, [])
    assert [r.name for r, _ in d.create] == ["d12", "d10"]  # two runs of two nodes; the fifth node cannot hold a third
    running = [ObservedJob(name=f"s-{r}", run=r, attempt=1, phase=JobPhase.Running) for r in ("d12", "d10")]
    assert runs.slots_held(make_plan(s), running, []) == (2, 32)
    assert decide(s, running).create == []
    # one run of two nodes in flight: the other two free nodes take the next run
    assert [r.name for r, _ in decide(s, running[:1]).create] == ["d10"]


def test_runs_of_one_node_spread_over_the_nodes() -> None:
    s = spec([4, 6, 8, 10, 12], gpusPerRun=8, nodeGpus=8, nodes=3)
    assert runs.Slots.of(s) == runs.Slots(runs=3, gpus=24)
    assert [r.name for r, _ in decide(s, []).create] == ["d12", "d10", "d8"]
