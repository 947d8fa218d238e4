"""wsd mode: refusals naming the field, the trunk/branch plan and its saving, the trainer flags, and the
launch of a branch only once its trunk's checkpoint is in the store (operator and local runner alike)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from miniseries.api.errors import SpecError, from_validation_error
from miniseries.api.spec import ScalingSweepSpec
from miniseries.api.sweepfile import load_sweep, parse_sweep
from miniseries.contract.layout import SweepLayout
from miniseries.contract.mfu import planned_mfu
from miniseries.contract.schedule import lr_multiplier, lr_multipliers
from miniseries.control.decide.runs import trunk_checkpoint_ready
from miniseries.local.runner import LocalSweep, decide_local
from miniseries.plan.planner import make_plan
from miniseries.plan.trainer_argv import trainer_flags
from miniseries_trainer.flags import build_parser

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def doc(**wsd: object) -> dict[str, object]:
    return {
        "apiVersion": "miniseries.dev/v1alpha1", "kind": "ScalingSweep", "metadata": {"name": "w"},
        "spec": {
            "depths": [1, 2],
            "model": {"aspectRatio": 16, "headDim": 16, "vocabSize": 1024, "sequenceLength": 128},
            "training": {"mode": "wsd", "wsd": {"budgets": [2, 4, 8], **wsd}, "totalBatchTokens": 2048,
                         "deviceBatchSize": 16, "warmupSteps": 5},
            "resources": {"gpusPerRun": 1, "nodeGpus": 1},
            "store": {"uri": "s3://somewhere/remote"},
            "data": {"shardsUri": "s3://somewhere/shards"},
        },
    }  # fmt: skip


def problems(d: dict[str, object]) -> list[str]:
    try:
        sweep = parse_sweep(d)
    except SpecError as e:
        return [str(p) for p in e.problems]
    except ValidationError as e:
        return [str(p) for p in from_validation_error(e, "spec").problems]
    try:
        make_plan(sweep.spec)
    except SpecError as e:
        return [str(p) for p in e.problems]
    return []


@pytest.mark.parametrize(
    ("wsd", "field", "words"),
    [
        ({"budgets": [2, 8, 4]}, "spec.training.wsd.budgets", "strictly increasing"),
        ({"budgets": [2, 2]}, "spec.training.wsd.budgets", "strictly increasing"),
        ({"cooldownFraction": 0}, "spec.training.wsd.cooldownFraction", "greater than 0"),
        ({"cooldownFraction": 0.6}, "spec.training.wsd.cooldownFraction", "0.5"),
        # d1 at 0.5 tokens/param: 4 steps, cooldown from step 3, before the 5 warmup steps end
        ({"budgets": [0.5, 4]}, "spec.training.wsd.budgets", "before the warmup ends"),
        ({"twinDepth": 3, "twinBudgets": [4]}, "twinDepth", "not one of the sweep's depths"),
        ({"twinDepth": 2, "twinBudgets": [5]}, "spec.training.wsd", "must be taken from budgets"),
    ],
)
def test_bad_wsd_input_is_refused_naming_the_field(wsd: dict[str, object], field: str, words: str) -> None:
    found = problems(doc(**wsd))
    assert any(field in p and words in p for p in found), found


def test_wsd_needs_its_block_and_only_in_wsd_mode() -> None:
    d = doc()
    d["spec"]["training"].pop("wsd")  # type: ignore[index]
    assert any("training.wsd" in p and "required" in p for p in problems(d))
    d = doc()
    d["spec"]["training"]["mode"] = "ratio"  # type: ignore[index]
    assert any("only allowed when training.mode is wsd" in p for p in problems(d))


def test_plan_has_a_trunk_and_a_branch_per_budget_at_each_cooldown_start() -> None:
    plan = make_plan(parse_sweep(doc()).spec)
    by = {r.name: r for r in plan.runs}
    assert sorted(by) == sorted(["d1-trunk", "d1-b2", "d1-b4", "d1-b8", "d2-trunk", "d2-b2", "d2-b4", "d2-b8"])
    for depth in (1, 2):
        trunk = by[f"d{depth}-trunk"]
        branches = [by[f"d{depth}-b{b}"] for b in (2, 4, 8)]
        assert trunk.role == "trunk" and trunk.cooldown_steps == 0
        for br, b in zip(branches, (2, 4, 8), strict=True):
            assert br.role == "branch" and br.trunk == trunk.name and br.wsd_budget == b
            assert br.total_batch_tokens == trunk.total_batch_tokens  # one batch per trunk
            assert br.start_step == br.steps - br.cooldown_steps
            assert br.cooldown_steps == max(1, round(0.2 * br.steps))
            assert br.training_tokens == br.steps * br.total_batch_tokens
            assert b * 0.9 < br.tokens_per_param <= b
            # a branch pays for its cooldown only
            assert br.flops == pytest.approx(br.cooldown_steps * br.total_batch_tokens * br.flops_per_token)
            # and starts no earlier than its trunk is estimated to reach its start step
            assert br.est_start_hours >= trunk.est_start_hours + trunk.est_hours * br.start_step / trunk.steps - 1e-12
        assert trunk.steps == branches[-1].start_step  # constant LR up to the largest budget's cooldown start
        assert trunk.keep_steps == [br.start_step for br in branches]
    branches = [r for r in plan.runs if r.role == "branch"]
    independent = sum(r.steps * r.total_batch_tokens * r.flops_per_token for r in branches)
    assert plan.independent_gpu_hours == pytest.approx(
        sum(
            r.steps * r.total_batch_tokens * r.flops_per_token / (989e12 * planned_mfu(r.depth)) / 3600
            for r in branches
        )
    )
    assert plan.total_flops < 0.75 * independent  # trunk (0.8 x 8) + cooldowns (0.2 x 14) = 9.2 vs 14 N-tokens


def test_twins_are_independent_runs_with_the_branch_schedule() -> None:
    plan = make_plan(parse_sweep(doc(twinDepth=2, twinBudgets=[2, 8])).spec)
    by = {r.name: r for r in plan.runs}
    for b in (2, 8):
        twin, branch = by[f"d2-i{b}"], by[f"d2-b{b}"]
        assert twin.role == "twin" and twin.trunk is None and twin.start_step is None
        assert (twin.steps, twin.cooldown_steps, twin.total_batch_tokens) == (
            branch.steps, branch.cooldown_steps, branch.total_batch_tokens)  # fmt: skip
        assert twin.flops == pytest.approx(twin.steps * twin.total_batch_tokens * twin.flops_per_token)
    # a twin draws its own weights: with the trunk's seed it would replay its branch bit for bit
    # (tests/trainer/test_wsd.py) and the comparison could only read 0
    parser, layout, spec = (
        build_parser(),
        SweepLayout("ns", "w"),
        parse_sweep(doc(twinDepth=2, twinBudgets=[2, 8])).spec,
    )
    seeds = {n: parser.parse_args(trainer_flags(spec, layout, by[n])).seed for n in ("d2-trunk", "d2-b2", "d2-i2")}
    assert seeds == {"d2-trunk": 42, "d2-b2": 42, "d2-i2": 43}
    twin_flags = parser.parse_args(trainer_flags(spec, layout, by["d2-i2"]))
    assert (twin_flags.warmdown_shape, twin_flags.warmdown_steps, twin_flags.init_from) == (
        "sqrt", by["d2-b2"].cooldown_steps, None)  # fmt: skip


def test_trainer_flags_give_each_role_its_schedule_and_start() -> None:
    sweep = parse_sweep(doc())
    plan = make_plan(sweep.spec)
    layout = SweepLayout("ns", "w")
    by = {r.name: r for r in plan.runs}
    parser = build_parser()
    trunk = parser.parse_args(trainer_flags(sweep.spec, layout, by["d2-trunk"]))
    assert (trunk.warmdown_shape, trunk.warmdown_steps, trunk.init_from) == ("sqrt", 0, None)
    assert list(trunk.keep_steps) == by["d2-trunk"].keep_steps
    br = by["d2-b4"]
    branch = parser.parse_args(trainer_flags(sweep.spec, layout, br))
    assert (branch.warmdown_shape, branch.warmdown_steps, branch.steps) == ("sqrt", br.cooldown_steps, br.steps)
    assert branch.init_from == f"s3://somewhere/remote/ns/w/d2-trunk/ckpt/step_{br.start_step:08d}/"
    ratio = parser.parse_args(trainer_flags(*_ratio_args()))
    assert (ratio.warmdown_shape, ratio.warmdown_steps, ratio.init_from, ratio.keep_steps) == ("linear", None, None, ())


def _ratio_args() -> tuple[ScalingSweepSpec, SweepLayout, object]:
    d = doc()
    d["spec"]["training"] = {"totalBatchTokens": 2048, "deviceBatchSize": 16}  # type: ignore[index]
    spec = parse_sweep(d).spec
    return spec, SweepLayout("ns", "w"), make_plan(spec).runs[0]


def test_the_sqrt_cooldown_and_the_linear_warmdown_share_one_definition() -> None:
    # the existing ratio schedule is unchanged
    assert lr_multipliers(10, 2, 0.4) == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.75, 0.5, 0.25]
    # (1-sqrt): 1 - sqrt(p), p = 0 at the cooldown's first step
    assert lr_multipliers(10, 2, 0.0, shape="sqrt", warmdown_steps=4) == pytest.approx(
        [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1 - 0.25**0.5, 1 - 0.5**0.5, 1 - 0.75**0.5])  # fmt: skip
    # a trunk (no cooldown) and the branch agree on every step before the branch's cooldown start
    trunk = lr_multipliers(16, 3, 0.0, shape="sqrt", warmdown_steps=0)
    assert trunk[3:] == [1.0] * 13
    assert [lr_multiplier(i, 20, 3, 0.0, shape="sqrt", warmdown_steps=4) for i in range(16)] == trunk


def local_wsd(tmp_path: Path) -> LocalSweep:
    ls = LocalSweep(parse_sweep(doc()), tmp_path / "store", eval_bundle=None)
    ls.store.write_bytes(ls.layout.tokenizer + "manifest.json", b"{}")
    return ls


def test_a_branch_starts_only_once_its_trunk_checkpoint_is_in_the_store(tmp_path: Path) -> None:
    ls = local_wsd(tmp_path)
    by = {r.name: r for r in ls.runs()}
    # the local order is smallest first, so branches come first, but none can start: d1's trunk is next
    assert [r.name for r, _ in decide_local(ls).create] == ["d1-trunk"]
    b2 = by["d1-b2"]
    ckpt = ls.layout.run("d1-trunk").checkpoint(b2.start_step) + "manifest.json"
    ls.store.write_bytes(ckpt, b"{}")  # the trunk is past d1-b2's start: it goes first (smallest)
    assert [r.name for r, _ in decide_local(ls).create] == ["d1-b2"]
    # a branch with a checkpoint of its own resumes from it, whatever its trunk holds
    ls.store.delete_prefix(ls.layout.run("d1-trunk").checkpoint(b2.start_step))
    ls.store.write_bytes(ls.layout.run("d1-b4").checkpoint(by["d1-b4"].start_step + 1) + "manifest.json", b"{}")
    assert [r.name for r, _ in decide_local(ls).create] == ["d1-b4"]


def test_wsd_examples_plan() -> None:
    tiny = make_plan(load_sweep(EXAMPLES / "tiny-wsd.yaml").spec)
    assert tiny.independent_gpu_hours and {r.role for r in tiny.runs} == {"trunk", "branch", "twin"}
    full = load_sweep(EXAMPLES / "wsd.yaml")
    plan = make_plan(full.spec)
    ratio = make_plan(load_sweep(EXAMPLES / "miniseries.yaml").spec)
    wsd_hours = sum(r.est_gpu_hours for r in plan.runs if r.role in ("trunk", "branch"))
    assert plan.independent_gpu_hours is not None and wsd_hours < 0.8 * plan.independent_gpu_hours
    assert plan.total_cost_usd < 3 * ratio.total_cost_usd  # several points per depth for a few ratio sweeps


def test_trunks_and_branches_survive_retries_and_preemption_decisions() -> None:
    """The operator's decisions (control/runs.decide_runs) for one depth's trunk and branches, with GPUs to
    spare: a branch whose trunk checkpoint is not there yet is not launched; a failed trunk is retried (its
    trainer resumes from its checkpoint, --resume=auto) and its branches launch as its checkpoints appear;
    a preempted branch is relaunched at once without spending a retry, on its own checkpoint even once the
    trunk's is gone (tests/trainer/test_wsd.py: the trainer then resumes from its own, not the trunk's).
    Through the real API server: tests/integration/test_operator_cluster.py."""
    from datetime import UTC, datetime, timedelta

    from miniseries.api.spec import RunState
    from miniseries.contract.preemption import PROGRESS_PREEMPTED
    from miniseries.contract.results import Progress
    from miniseries.control.decide.observations import JobPhase, ObservedJob, RunObservation, TokenizerState
    from miniseries.control.decide.runs import decide_runs

    d = doc()
    d["spec"].update(depths=[2], resources={"gpusPerRun": 1, "nodeGpus": 4})  # type: ignore[union-attr]
    spec = parse_sweep(d).spec
    plan = make_plan(spec)
    by = {r.name: r for r in plan.runs}
    trunk, b2, b4, b8 = by["d2-trunk"], by["d2-b2"], by["d2-b4"], by["d2-b8"]
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

    def decide(jobs: list[ObservedJob], store: dict[str, RunObservation], previous: list, at: datetime = now):  # type: ignore[no-untyped-def,type-arg]
        dec = decide_runs(spec, "w", plan, jobs, store, previous, TokenizerState.NotNeeded, at)
        return dec, {r.name: r for r in dec.runs}

    # the trunk runs, no checkpoint yet: nothing else starts, though three GPUs are free
    running = ObservedJob("w-d2-trunk", "d2-trunk", 1, JobPhase.Running)
    dec, st = decide([running], {}, [])
    assert dec.create == [] and st["d2-b2"].state is RunState.Pending
    # it crashed after its checkpoint at d2-b2's start: retried (backoff first), and d2-b2 launches now
    failed = ObservedJob("w-d2-trunk", "d2-trunk", 1, JobPhase.Failed, since=now, reason="ExitCode3")
    at_b2 = {"d2-trunk": RunObservation(checkpoint_step=b2.start_step, checkpoint_steps=(b2.start_step,))}
    dec, st = decide([failed], at_b2, list(st.values()))
    assert st["d2-trunk"].state is RunState.Retrying and st["d2-trunk"].attempts == 1
    assert dec.delete == ["w-d2-trunk"] and [(r.name, a) for r, a in dec.create] == [("d2-b2", 1)]
    # after the backoff the trunk's attempt 2 is created; it resumes (--resume=auto) from its checkpoint
    later = now + timedelta(hours=1)
    b2_running = ObservedJob("w-d2-b2", "d2-b2", 1, JobPhase.Running)
    dec, st = decide([b2_running], at_b2, list(st.values()), later)
    assert [(r.name, a) for r, a in dec.create] == [("d2-trunk", 2)]
    assert "--resume=auto" in trainer_flags(spec, SweepLayout("ns", "w"), trunk)
    # attempt 2 passes d2-b4's and d2-b8's starts: both launch, d2-b8 from the trunk's final checkpoint
    steps = (b2.start_step, b4.start_step, b8.start_step)
    past = {"d2-trunk": RunObservation(checkpoint_step=b8.start_step, checkpoint_steps=steps)}
    trunk2 = ObservedJob("w-d2-trunk", "d2-trunk", 2, JobPhase.Running)
    dec, st = decide([trunk2, b2_running], past, list(st.values()), later)
    assert sorted(r.name for r, _ in dec.create) == ["d2-b4", "d2-b8"]
    # d2-b4 is preempted after its own checkpoint (its trainer exited EXIT_PREEMPTED, progress.json says so)
    created = later + timedelta(minutes=1)
    b4_job = ObservedJob("w-d2-b4", "d2-b4", 1, JobPhase.Failed, since=created, created=created)
    others = [trunk2, b2_running, ObservedJob("w-d2-b8", "d2-b8", 1, JobPhase.Running)]
    own = b4.start_step + 3
    progress = Progress(sweep="w", run="d2-b4", depth=2, step=own, steps=b4.steps, tokens=0,
                        state=PROGRESS_PREEMPTED, updated_at=(created + timedelta(seconds=30)).timestamp())  # fmt: skip
    b4_obs = RunObservation(checkpoint_step=own, checkpoint_steps=(own,), progress=progress)
    dec, st = decide([*others, b4_job], {**past, "d2-b4": b4_obs}, list(st.values()), created)
    assert (st["d2-b4"].state, st["d2-b4"].attempts, st["d2-b4"].preemptions) == (RunState.Preempted, 1, 1)
    assert dec.delete == ["w-d2-b4"] and [e.reason for e in dec.events] == ["RunPreempted"]
    # its job gone, it is relaunched at once as the same attempt, on its own checkpoint: the trunk's at its
    # start has been pruned meanwhile and is not needed
    pruned = {"d2-trunk": RunObservation(checkpoint_steps=(b8.start_step,)), "d2-b4": b4_obs}
    dec, st = decide(others, pruned, list(st.values()), created + timedelta(seconds=1))
    assert [(r.name, a) for r, a in dec.create] == [("d2-b4", 1)] and st["d2-b4"].preemptions == 1
    # a branch that never ran does wait for its trunk's checkpoint
    assert not trunk_checkpoint_ready(b4, {"d2-trunk": RunObservation(checkpoint_steps=(b8.start_step,))})
