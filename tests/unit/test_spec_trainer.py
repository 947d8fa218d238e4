"""spec.trainer (issue 31): a custom trainer's validation (each refusal names its field), its `$(variable)`
templates rendered per run, and the manifests both backends build from it. The CRD side is judged by the
real API server in tests/integration/test_crd_api_server.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from miniseries.api.errors import from_validation_error
from miniseries.api.spec import ScalingSweepSpec
from miniseries.api.sweepfile import load_sweep
from miniseries.api.trainer import ARG_PATTERN, render, templates
from miniseries.contract.layout import SweepLayout
from miniseries.contract.trainer_contract import FLAG_OF_VARIABLE, TEMPLATE_VARIABLES
from miniseries.control.backends.pytorchjob import pytorchjob
from miniseries.control.backends.trainjob import trainjob
from miniseries.control.decide.spec_changes import refused_changes
from miniseries.plan.planner import make_plan
from miniseries.plan.trainer_argv import custom_trainer_args, template_values, trainer_flags

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DOC = Path(__file__).resolve().parents[2] / "docs" / "trainer-contract.md"
GOOD: dict[str, Any] = {"command": ["python", "-m", "my.train"], "contractVersion": 1}


def spec_with(trainer: dict[str, Any] | None, example: str = "miniseries.yaml") -> ScalingSweepSpec:
    doc = load_sweep(EXAMPLES / example).spec.wire()
    if trainer is not None:
        doc["trainer"] = trainer
    return ScalingSweepSpec.model_validate(doc)


def refusal(trainer: dict[str, Any], example: str = "miniseries.yaml") -> tuple[str, str]:
    with pytest.raises(ValidationError) as e:
        spec_with(trainer, example)
    (problem,) = from_validation_error(e.value, "spec").problems
    return problem.field, problem.message


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"args": ["--depth=$(model.depht)"]}, "spec.trainer.args[0]", "unknown variable $(model.depht)"),
        ({"args": ["a", "b", "c", "--x=$(run.steps"]}, "spec.trainer.args[3]", "unclosed '$('"),
        ({"command": "python -m my.train"}, "spec.trainer.command", "valid list"),
        ({"command": []}, "spec.trainer.command", "at least 1"),
        ({"command": ["$(run.name)"]}, "spec.trainer.command", "templates in args only"),
        ({"contractVersion": 2}, "spec.trainer.contractVersion", "allowed: 1"),
        ({"contractVersion": None}, "spec.trainer.contractVersion", "integer"),
        ({"image": "Not An Image"}, "spec.trainer.image", "allowed"),
        ({"command": ["sh", "-c"], "args": ["train --depth=$(model.depth)"]}, "spec.trainer.args", "sh -c"),
        ({"command": ["/bin/bash"], "args": ["-ec", "x $(run.name)"]}, "spec.trainer.args", "bash -ec"),
        ({"command": ["env", "A=1", "python3", "-c"], "args": ["$(store.uri)"]}, "spec.trainer.args", "python3 -c"),
        ({"passFlags": "sometimes"}, "spec.trainer.passFlags", "boolean"),
        ({"supports": {"initFrom": True, "resume": True}}, "spec.trainer.supports.resume", "unknown field"),
    ],
)
def test_each_bad_trainer_is_refused_naming_its_field(change: dict[str, Any], field: str, words: str) -> None:
    got_field, message = refusal({**GOOD, **change})
    assert got_field == field
    assert words in message, message


def test_every_refused_template_says_what_is_allowed() -> None:
    for bad in ("$(nope.x)", "$(run.steps", "$()"):
        with pytest.raises(ValueError, match=r"allowed: \$\(variable\) with one of run\.namespace"):
            templates(bad)


def test_wsd_needs_init_from_support() -> None:
    field, message = refusal(GOOD, "tiny-wsd.yaml")
    assert field == "spec"
    assert message.startswith("trainer.supports.initFrom is false") and "C14" in message
    assert spec_with({**GOOD, "supports": {"initFrom": True}}, "tiny-wsd.yaml").trainer is not None


def test_shells_may_run_without_templates_and_programs_may_take_them() -> None:
    assert spec_with({**GOOD, "command": ["sh", "-c", 'exec train "$@"', "sh"]}).trainer is not None
    assert spec_with({**GOOD, "command": ["sh", "train.sh"], "args": ["$(model.depth)"]}).trainer is not None
    assert spec_with({**GOOD, "command": ["sh", "-c", "x"], "args": ["$$(literal)"]}).trainer is not None


def test_no_trainer_leaves_the_spec_as_it_was() -> None:
    spec = spec_with(None)
    assert spec.trainer is None and "trainer" not in spec.wire()


def test_templates_and_the_crd_pattern_agree() -> None:
    cases = ["plain", "$$", "$$(run.steps)", "a$b", "$", "x$", "$(run.steps)", "--d=$(model.depth)/$(store.uri)",
             "$(nope)", "$(run.steps", "$(", "$()", "$(model.depth))"]  # fmt: skip
    for arg in cases:
        try:
            templates(arg)
            ok = True
        except ValueError:
            ok = False
        assert ok == bool(re.fullmatch(ARG_PATTERN, arg)), arg


def test_render_fills_each_variable_and_unescapes() -> None:
    values = {"model.depth": "12", "store.uri": "s3://b/p", "run.initFrom": ""}
    assert render("--d=$(model.depth)", values) == "--d=12"
    assert render("$(store.uri)/x$$(model.depth)$", values) == "s3://b/p/x$(model.depth)$"
    assert render("[$(run.initFrom)]", values) == "[]"


def test_every_variable_is_a_flag_of_the_contract_and_in_its_page() -> None:
    name, spec = "mini", spec_with(None, "tiny-wsd.yaml")
    flags = {f[2:].partition("=")[0] for run in make_plan(spec).runs for f in trainer_flags(spec, SweepLayout("ns", name), run, sweep_uid="u")}  # fmt: skip
    assert set(FLAG_OF_VARIABLE.values()) - flags <= {"budget-flops", "eval-bundle", "core-max-per-task",
                                                      "core-allow-partial", "precision"}  # fmt: skip
    page = DOC.read_text()
    for var, _ in TEMPLATE_VARIABLES:
        assert f"$({var})" in page, var


def test_variables_are_substituted_per_run() -> None:
    spec = spec_with({**GOOD, "args": ["--layers", "$(model.depth)", "--out=$(store.uri)/$(run.name)", "--steps=$(run.steps)"],
                      "passFlags": False})  # fmt: skip
    layout = SweepLayout("team", "mini")
    seen = set()
    for run in make_plan(spec).runs:
        flags = trainer_flags(spec, layout, run)
        assert spec.trainer is not None
        args = custom_trainer_args(spec.trainer, flags)
        assert args == ["--layers", str(run.depth), f"--out={spec.store.uri}/{run.name}", f"--steps={run.steps}"]
        seen.add(args[1])
    assert len(seen) == len(make_plan(spec).runs)


def test_pass_flags_appends_the_standard_flags() -> None:
    spec = spec_with({**GOOD, "args": ["--from-template=$(run.seed)"]})
    run, layout = make_plan(spec).runs[0], SweepLayout("team", "mini")
    flags = trainer_flags(spec, layout, run)
    assert spec.trainer is not None
    assert custom_trainer_args(spec.trainer, flags) == [f"--from-template={template_values(flags)['run.seed']}", *flags]
    assert template_values(flags)["run.initFrom"] == ""  # a flag this run does not get


CUSTOM = {"image": "ghcr.io/me/trainer:1", "command": ["python", "-m", "my.train"], "contractVersion": 1,
          "args": ["--depth", "$(model.depth)", "--cost=$$5"]}  # fmt: skip


def test_both_backends_run_the_custom_trainer() -> None:
    spec = spec_with(CUSTOM)
    run = make_plan(spec).runs[0]
    built_in = spec_with(None)
    flags = trainer_flags(spec, SweepLayout("team", "mini"), run, sweep_uid="uid-1")
    want_args = ["--depth", str(run.depth), "--cost=$$5", *flags]  # `$$`: the kubelet's own $(VAR) sees a literal $
    pj = pytorchjob(spec, "mini", "uid-1", "team", run)
    (container,) = pj["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
    assert (container["image"], container["command"], container["args"]) == (
        CUSTOM["image"],
        CUSTOM["command"],
        want_args,
    )
    tj = trainjob(spec, "mini", "uid-1", "team", run)["spec"]["trainer"]
    assert (tj["image"], tj["command"], tj["args"]) == (CUSTOM["image"], CUSTOM["command"], want_args)
    # everything else of the pod is the built-in trainer's
    pj0 = pytorchjob(built_in, "mini", "uid-1", "team", run)
    (c0,) = pj0["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
    assert {k: v for k, v in container.items() if k not in ("image", "command", "args")} == {
        k: v for k, v in c0.items() if k not in ("image", "command", "args")
    }


def test_a_custom_trainer_without_an_image_uses_the_sweeps() -> None:
    spec = spec_with({**GOOD, "passFlags": False})
    run = make_plan(spec).runs[0]
    tj = trainjob(spec, "mini", "uid-1", "team", run)["spec"]["trainer"]
    assert (tj["image"], tj["command"], tj["args"]) == (spec.resources.image, GOOD["command"], [])


def test_the_trainer_is_frozen_once_runs_started_but_its_image_is_not() -> None:
    built_in, custom = spec_with(None), spec_with(CUSTOM)
    why = refused_changes(built_in, custom, {"d10"}, {"d10"})
    assert (
        "spec.trainer.contractVersion changed from None to 1 after runs started (d10); create a new sweep instead"
        in why
    )
    assert all(w.startswith("spec.trainer.") for w in why) and not any("image" in w for w in why)
    assert refused_changes(custom, spec_with({**CUSTOM, "image": "ghcr.io/me/trainer:2"}), {"d10"}, {"d10"}) == []
    assert refused_changes(custom, spec_with({**CUSTOM, "args": []}), {"d10"}, {"d10"})
    assert refused_changes(built_in, custom, set(), {"d10"}) == []
