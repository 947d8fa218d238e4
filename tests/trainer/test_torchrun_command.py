"""The commands that start the trainer under torchrun pass its flags through torchrun's own parser intact."""

from __future__ import annotations

from pathlib import Path

import pytest

from miniseries.api.spec import ScalingSweepSpec
from miniseries.contract.layout import SweepLayout
from miniseries.control.backends.pytorchjob import pytorchjob
from miniseries.local.runner import LocalSweep, train_command
from miniseries.plan.planner import make_plan
from miniseries.plan.trainer_argv import TRAINER_MODULE, trainer_flags

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def spec(gpus: int, node_gpus: int, nodes: int) -> ScalingSweepSpec:
    return ScalingSweepSpec.model_validate({
        "depths": [4], "training": {"deviceBatchSize": 4},
        "resources": {"gpusPerRun": gpus, "nodeGpus": node_gpus, "nodes": nodes},
        "store": {"uri": "s3://bucket/sweeps"}, "data": {"shardsUri": "s3://bucket/data"},
    })  # fmt: skip


def torchrun_parse(argv: list[str]) -> tuple[str, list[str]]:
    from torch.distributed.run import get_args_parser

    args = get_args_parser().parse_args(argv)
    assert args.module
    return args.training_script, list(args.training_script_args)


@pytest.mark.parametrize(("gpus", "node_gpus", "nodes"), [(8, 8, 1), (16, 8, 2)])
def test_the_pods_torchrun_hands_every_flag_to_the_trainer(gpus: int, node_gpus: int, nodes: int) -> None:
    s = spec(gpus, node_gpus, nodes)
    (run,) = make_plan(s).runs
    c = pytorchjob(s, "mn", "uid", "ns", run)["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    command, args = c["containers"][0]["command"], c["containers"][0]["args"]
    assert command[0] == "torchrun" and "--run=d4" in args  # --run= is a prefix of torchrun's --run-path
    expected = trainer_flags(s, SweepLayout("ns", "mn"), run, sweep_uid="uid")
    assert torchrun_parse([*command[1:], *args]) == (TRAINER_MODULE, expected)


def test_the_local_runners_torchrun_hands_every_flag_to_the_trainer(tmp_path: Path) -> None:
    from miniseries.api.spec import ScalingSweep

    sweep = ScalingSweep.model_validate({"metadata": {"name": "mn"}, "spec": spec(2, 2, 1).wire()})
    ls = LocalSweep(sweep, tmp_path, device="cpu")
    run = ls.runs()[0]
    argv = train_command(ls, run, 9400)
    assert argv[1:3] == ["-m", "torch.distributed.run"]
    script, passed = torchrun_parse(argv[3:])
    assert script == ls.trainer_module and "--run=d4" in passed
