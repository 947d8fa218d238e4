"""The trainer kit (contract/trainer_kit.py): it reads exactly the flags the operator passes, writes the
contract's documents where the operator reads them, and nothing outside its run's prefix."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from miniseries.api.sweepfile import load_sweep
from miniseries.contract.exits import EXIT_FENCED
from miniseries.contract.layout import LOCAL_NAMESPACE, StoreManifest, SweepIdentity, SweepLayout, claim
from miniseries.contract.results import checkpoint_steps, read_progress, read_results
from miniseries.contract.store import LocalStore
from miniseries.contract.trainer_contract import CLAUSES
from miniseries.contract.trainer_kit import OutsideRunPrefix, TrainerRun, parse_run_args
from miniseries.plan.planner import make_plan
from miniseries.plan.trainer_argv import trainer_flags
from tests.unit.test_import_purity import loaded_after

ROOT = Path(__file__).resolve().parents[2]


def operator_argv(example: str, store_uri: str, uid: str | None = "uid-1") -> list[str]:
    sweep = load_sweep(ROOT / "examples" / example)
    spec = sweep.spec
    plan = make_plan(spec)
    run = plan.runs[-1]  # a wsd branch in tiny-wsd: --init-from and --keep-steps too
    return trainer_flags(spec, SweepLayout(LOCAL_NAMESPACE, sweep.name), run, store_uri=store_uri, sweep_uid=uid)


@pytest.mark.parametrize("example", ["tiny.yaml", "tiny-wsd.yaml", "tiny-isoflop.yaml"])
def test_the_kit_reads_every_flag_the_operator_passes(example: str) -> None:
    argv = operator_argv(example, "file:///tmp/store")
    args = parse_run_args(argv, env={})
    assert args.unknown == ()  # a flag the kit does not know would be one the contract forgot
    given = {a.split("=", 1)[0][2:].replace("-", "_"): a.split("=", 1)[1] for a in argv if "=" in a}
    for name, value in given.items():
        assert str(getattr(args, name)) == value or float(getattr(args, name)) == float(value), name


def test_missing_flags_are_named_and_new_ones_kept(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parse_run_args(["--sweep=s"], env={})
    assert e.value.code == 2
    assert "--run" in capsys.readouterr().err
    argv = [*operator_argv("tiny.yaml", "file:///tmp/store"), "--from-a-newer-operator=1"]
    assert parse_run_args(argv, env={}).unknown == ("--from-a-newer-operator=1",)


def test_env_defaults_only_outside_cluster_runs(capsys: pytest.CaptureFixture[str]) -> None:
    local = [a for a in operator_argv("tiny.yaml", "file:///tmp/store", uid=None) if not a.startswith("--seed")]
    assert parse_run_args(local, env={"MINISERIES_SEED": "7"}).seed == 7
    with pytest.raises(SystemExit):
        parse_run_args(operator_argv("tiny.yaml", "file:///tmp/store"), env={"MINISERIES_SEED": "7"})
    assert "MINISERIES_SEED" in capsys.readouterr().err


def kit_run(tmp_path: Path, *extra: str, uid: str = "uid-1") -> TrainerRun:
    store = LocalStore(tmp_path / "store")
    claim(store, SweepLayout(LOCAL_NAMESPACE, "tiny"), SweepIdentity(namespace=LOCAL_NAMESPACE, name="tiny", uid=uid),
          ["d1", "d2", "d3"])  # fmt: skip
    argv = [a for a in operator_argv("tiny.yaml", store.uri, uid) if not a.startswith("--checkpoint-every")]
    return TrainerRun(args=parse_run_args([*argv, "--checkpoint-every=2", *extra], env={}), store=store)


def test_checkpoints_results_and_progress_are_where_the_operator_reads_them(tmp_path: Path) -> None:
    run = kit_run(tmp_path)
    assert run.latest_checkpoint() is None and run.start is not None and run.start.kind == "fresh"
    for step in range(1, run.steps + 1):
        run.log(step, 5.0 - step / run.steps)
        if run.checkpoint_due(step):
            run.save_checkpoint(step, {"w.bin": bytes([step % 256])})
    assert run.finish() == 0
    res = read_results(run.store, run.layout)
    assert res is not None and res.steps == run.steps and res.sweep_uid == "uid-1"
    assert res.loss.final is not None and res.loss.points == run.steps
    assert read_progress(run.store, run.layout).state == "done"  # type: ignore[union-attr]
    kept = checkpoint_steps(run.store, run.layout, "uid-1")
    assert len(kept) == run.args.keep_checkpoints  # older ones pruned

    again = kit_run(tmp_path)
    ckpt = again.latest_checkpoint()
    assert ckpt is not None and ckpt.step == kept[-1] and ckpt.files == {"w.bin": bytes([kept[-1] % 256])}
    assert again.start is not None and (again.start.kind, again.start.step) == ("checkpoint", kept[-1])


def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path: Path) -> None:
    run = kit_run(tmp_path)
    run.save_checkpoint(2, {"w.bin": b"two"})
    run.save_checkpoint(4, {"w.bin": b"four"})
    (tmp_path / "store" / run.layout.checkpoint(4) / "w.bin").write_bytes(b"torn")
    ckpt = kit_run(tmp_path).latest_checkpoint()
    assert ckpt is not None and ckpt.step == 2


def test_another_sweeps_checkpoints_are_never_resumed(tmp_path: Path) -> None:
    old = kit_run(tmp_path, uid="old")
    old.save_checkpoint(2, {"w.bin": b"theirs"})
    # the sweep deleted and re-created under the same name while its trainer still wrote: a new uid owns the key
    layout = SweepLayout(LOCAL_NAMESPACE, "tiny")
    new = StoreManifest(owner=SweepIdentity(namespace=LOCAL_NAMESPACE, name="tiny", uid="new"), runs=["d1"])
    old.store.write_bytes(layout.manifest, new.to_json())
    run = TrainerRun(args=dataclasses.replace(old.args, sweep_uid="new"), store=old.store)
    assert run.latest_checkpoint() is None


def test_nothing_is_written_outside_the_run_prefix(tmp_path: Path) -> None:
    run = kit_run(tmp_path)
    for name in ("../d1/results.json", "../../other/x"):
        with pytest.raises(OutsideRunPrefix, match="C11"):
            run.write(name, b"x")
    run.write("train.log", b"ok")
    assert run.store.exists(run.layout.root + "train.log")


def test_results_are_not_written_once_the_sweep_is_gone(tmp_path: Path) -> None:
    run = kit_run(tmp_path)
    (tmp_path / "store" / "local" / "tiny" / "store-manifest.json").unlink()
    assert run.finish() == EXIT_FENCED
    assert not run.store.exists(run.layout.results)


def test_the_kit_loads_no_api_pydantic_kubernetes_or_torch() -> None:
    modules = ["miniseries.contract.trainer_kit", "miniseries.contract.trainer_contract"]
    forbidden = ["miniseries.api", "miniseries.control", "miniseries.plan", "miniseries.science", "pydantic",
                 "kopf", "kubernetes", "torch", "prometheus_client"]  # fmt: skip
    assert loaded_after(modules, forbidden) == []


def test_the_contract_page_lists_exactly_the_clauses() -> None:
    page = (ROOT / "docs" / "trainer-contract.md").read_text()
    rows = re.findall(r"^\| (C\d+) \| ([\w-]+) \| (required|optional) \|", page, flags=re.M)
    assert rows == [(c.id, c.title, c.level) for c in CLAUSES]
