"""The trainer's command line: the contract with trainer_args, env overrides, and failing fast."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from miniseries.api.spec import Precision
from miniseries.api.sweepfile import load_sweep
from miniseries.contract.layout import SweepLayout
from miniseries.plan.planner import make_plan
from miniseries.plan.trainer_argv import trainer_flags
from tests.harness.binaries import REPO
from tests.harness.processes import free_port
from tests.support.tiny_training import Corpus, train_argv, trainer_env

pytest.importorskip("torch")
pytestmark = pytest.mark.torch


@pytest.mark.parametrize("example", ["tiny.yaml", "miniseries.yaml", "isoflop.yaml"])
def test_parser_accepts_exactly_what_trainer_flags_emits(example: str) -> None:
    from miniseries_trainer.train import build_parser

    sweep = load_sweep(REPO / "examples" / example)
    plan = make_plan(sweep.spec)
    parser = build_parser()
    for run in plan.runs:
        argv = trainer_flags(sweep.spec, SweepLayout("team-a", sweep.name), run)
        args = parser.parse_args(argv)
        assert args.depth == run.depth and args.run == run.name and args.sweep == sweep.name
        assert args.namespace == "team-a"
        assert args.total_batch_tokens == run.total_batch_tokens and args.steps == run.steps
        assert args.resume == "auto"
        assert args.budget_flops == (float(f"{run.budget_flops:g}") if run.budget_flops is not None else None)
    # every flag trainer_flags can emit is documented in --help
    help_text = parser.format_help()
    for flag in {a.split("=")[0] for a in argv} | {"--budget-flops", "--eval-bundle", "--core-max-per-task"}:
        assert flag in help_text


def test_core_settings_reach_the_trainer() -> None:
    """coreMaxPerTask and coreAllowPartial become the trainer's CORE flags (only with a bundle)."""
    from miniseries_trainer.train import build_parser

    sweep = load_sweep(REPO / "examples" / "tiny.yaml")
    run = make_plan(sweep.spec).runs[0]
    assert not any(a.startswith("--core") for a in trainer_flags(sweep.spec, SweepLayout("team-a", sweep.name), run))
    data = sweep.spec.data.model_copy(update={"eval_bundle_uri": "s3://bundles/core"})
    training = sweep.spec.training.model_copy(update={"core_allow_partial": True})
    spec = sweep.spec.model_copy(update={"data": data, "training": training})
    args = build_parser().parse_args(trainer_flags(spec, SweepLayout("team-a", sweep.name), run))
    assert (args.eval_bundle, args.core_max_per_task, args.core_allow_partial) == ("s3://bundles/core", 20, True)


def test_precision_reaches_the_trainer() -> None:
    """spec.training.precision becomes --precision (auto, the trainer's default, is left out)."""
    from miniseries_trainer.train import build_parser

    sweep = load_sweep(REPO / "examples" / "miniseries.yaml")
    run = make_plan(sweep.spec).runs[0]
    layout = SweepLayout("team-a", sweep.name)
    assert not any(a.startswith("--precision") for a in trainer_flags(sweep.spec, layout, run))
    assert build_parser().parse_args(trainer_flags(sweep.spec, layout, run)).precision == "auto"
    for precision in ("fp8", "bf16", "fp32"):
        training = sweep.spec.training.model_copy(update={"precision": Precision(precision)})
        spec = sweep.spec.model_copy(update={"training": training})
        assert build_parser().parse_args(trainer_flags(spec, layout, run)).precision == precision


def test_every_flag_settable_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from miniseries_trainer.train import build_parser

    monkeypatch.setenv("MINISERIES_DEPTH", "3")
    monkeypatch.setenv("MINISERIES_DEVICE_BATCH_SIZE", "5")
    monkeypatch.setenv("MINISERIES_DETERMINISTIC", "1")
    monkeypatch.setenv("MINISERIES_WARMDOWN_RATIO", "0.25")
    base = [
        "--sweep=s",
        "--run=r",
        "--target-tokens=10",
        "--total-batch-tokens=10",
        "--store=file:///x",
        "--data=file:///y",
        "--tokenizer=file:///z",
    ]
    args = build_parser().parse_args(base)
    assert (args.depth, args.device_batch_size, args.deterministic, args.warmdown_ratio) == (3, 5, True, 0.25)
    assert build_parser().parse_args([*base, "--depth=4"]).depth == 4  # the command line wins
    # every option names its env variable in --help, exactly once
    parser = build_parser()
    for action in parser._actions:
        flag = next((o for o in action.option_strings if o.startswith("--") and o != "--help"), None)
        if flag and not flag.startswith("--no-"):
            env = "MINISERIES_" + flag[2:].upper().replace("-", "_")
            assert (action.help or "").count(f"[env {env}]") == 1, (flag, action.help)


@pytest.mark.parametrize(
    "bad,message",
    [
        (["--depth=0"], "--depth must be >= 1, got 0"),
        (["--warmdown-ratio=1.5"], "--warmdown-ratio must be in [0, 1], got 1.5"),
        (["--device=tpu"], "invalid choice: 'tpu'"),
        (["--seq-len=abc"], "--seq-len must be an integer, got 'abc'"),
    ],
)
def test_bad_flags_fail_with_a_clear_message(
    bad: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from miniseries_trainer.train import main

    argv = [
        a
        for a in train_argv(Corpus("file:///d", "file:///t", tmp_path), tmp_path)
        if a.split("=")[0] not in {b.split("=")[0] for b in bad}
    ]
    with pytest.raises(SystemExit) as e:
        main([*argv, *bad])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_batch_not_multiple_of_micro_batch_is_rejected(
    corpus: Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from miniseries_trainer.train import main

    with pytest.raises(SystemExit):
        main(train_argv(corpus, tmp_path, total_batch_tokens=1000))
    err = capsys.readouterr().err
    assert "not a multiple of one micro-batch" in err and "--total-batch-tokens" in err


def test_missing_tokenizer_and_missing_shards_are_named(
    corpus: Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from miniseries_trainer.train import main

    with pytest.raises(SystemExit):
        main(train_argv(corpus, tmp_path, tokenizer=(tmp_path / "nope").as_uri()))
    assert "no tokenizer at" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        main(train_argv(corpus, tmp_path, data=(tmp_path / "empty").as_uri()))
    assert "has 0 parquet shard(s)" in capsys.readouterr().err


def test_unreachable_s3_store_fails_fast(corpus: Corpus, tmp_path: Path) -> None:
    port = free_port()  # a loopback port nobody listens on
    env = trainer_env() | {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_REGION": "us-east-1",
    }
    # An hour's outage budget: a trainer that spent it at the start (instead of the short start-up
    # budget, STARTUP_STORE_SECONDS) would run into the timeout. The bound is generous because the
    # wall time includes starting python and torch, which takes over a minute on a loaded machine.
    argv = train_argv(corpus, tmp_path, store="s3://bucket/prefix", store_outage_seconds=3600)
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "miniseries_trainer.train", *argv], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 2, proc.stderr
    assert "s3://bucket/prefix" in proc.stderr and f"127.0.0.1:{port}" in proc.stderr
    assert time.time() - t0 < 300


def test_dockerfile_entrypoint_is_the_cli() -> None:
    text = (REPO / "trainer_image/Dockerfile").read_text()
    entry = next(line for line in text.splitlines() if line.startswith("ENTRYPOINT"))
    assert '"miniseries-train"' in entry
    pyproject = (REPO / "trainer_image/pyproject.toml").read_text()
    assert 'miniseries-train = "miniseries_trainer.train:main"' in pyproject
    assert "USER " in text and "USER root" not in text
    # the image's default flags, if any, are flags the CLI knows
    from miniseries_trainer.train import build_parser

    known = {o for a in build_parser()._actions for o in a.option_strings}
    for line in text.splitlines():
        if line.startswith("CMD"):
            for token in line.replace("[", " ").replace("]", " ").replace(",", " ").split():
                flag = token.strip('"').split("=")[0]
                if flag.startswith("--"):
                    assert flag in known


def test_a_cluster_run_refuses_flags_from_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 27 item 7: a MINISERIES_MATRIX_LR key in the credentials Secret changed the learning rate with
    no spec change. With --sweep-uid (the operator's runs) every flag comes from the plan: an override in
    the environment stops the run naming the variable (exit 2). The local runner (no uid) keeps them."""
    from miniseries_trainer.flags import build_parser, refuse_env_overrides

    argv = ["--sweep=s", "--run=d1", "--depth=1", "--target-tokens=100", "--total-batch-tokens=64", "--store=file:///s", "--data=file:///d",
            "--tokenizer=file:///t"]  # fmt: skip
    monkeypatch.setenv("MINISERIES_MATRIX_LR", "1e30")
    parser = build_parser()
    local = parser.parse_args(argv)
    assert local.matrix_lr == 1e30
    refuse_env_overrides(parser, local)  # no uid: the documented local override still works
    cluster = parser.parse_args([*argv, "--sweep-uid=u-1"])
    with pytest.raises(SystemExit) as e:
        refuse_env_overrides(parser, cluster)
    assert e.value.code == 2
    monkeypatch.delenv("MINISERIES_MATRIX_LR")
    refuse_env_overrides(build_parser(), build_parser().parse_args([*argv, "--sweep-uid=u-1"]))


def test_results_record_every_hyperparameter_the_run_was_trained_with() -> None:
    from miniseries_trainer.flags import build_parser
    from miniseries_trainer.outputs import hyperparameters

    args = build_parser().parse_args(["--sweep=s", "--run=d1", "--depth=3", "--target-tokens=100", "--total-batch-tokens=64", "--store=file:///s",
                                      "--data=file:///d", "--tokenizer=file:///t", "--matrix-lr=0.01"])  # fmt: skip
    hp = hyperparameters(args)
    for name in ("matrix_lr", "embedding_lr", "unembedding_lr", "weight_decay", "warmup_steps", "warmdown_ratio",
                 "total_batch_tokens", "device_batch_size", "seq_len", "seed", "depth", "precision"):  # fmt: skip
        assert name in hp, name
    assert hp["matrix_lr"] == 0.01
    assert "store" not in hp and "sweep_uid" not in hp  # where it ran, not how it trained
    json.dumps(hp)  # results.json must hold it as it is


def test_a_store_that_refuses_the_trainer_exits_store_denied_naming_the_operation(
    corpus: Corpus, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 27 item 3: a refused store is EXIT_STORE_DENIED with the marker line the operator reads (a
    permission on a file:// store here, as a 403 on S3), not exit 2 or 1: no retry is spent on it."""
    from miniseries.contract.exits import EXIT_STORE_DENIED, STORE_DENIED_MARKER
    from miniseries_trainer.train import main

    with pytest.raises(SystemExit) as e:
        main(train_argv(corpus, Path("/sys/miniseries-refused")))  # sysfs: EPERM even for root
    assert e.value.code == EXIT_STORE_DENIED
    err = capsys.readouterr().err
    assert STORE_DENIED_MARKER in err and "check failed" in err
