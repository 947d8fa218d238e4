"""Issue 28 items 1, 5 and 6, the pure parts: one admission policy whoever starts the operator (the
chart's values, the CLI without flags and api/policy.py's defaults are the same), store roots
required, and the allow-lists for priority classes, training runtimes and GPUs at once."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from miniseries.api import policy as pol
from miniseries.api.policy import Policy
from miniseries.cli import serve

VALUES = Path(__file__).resolve().parents[2] / "charts" / "miniseries-operator" / "values.yaml"


def parse(*flags: str) -> Policy:
    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers())
    return serve.policy_from_args(parser.parse_args(["operator", *flags]))  # type: ignore[no-any-return]


def test_the_charts_defaults_are_the_operators_defaults() -> None:
    values = yaml.safe_load(VALUES.read_text())
    adm, store = values["admission"], values["store"]
    bare = parse()
    assert bare == Policy()  # no flags: the defaults of api/policy.py
    assert tuple(adm["allowedImagePrefixes"]) == bare.allowed_image_prefixes == pol.DEFAULT_ALLOWED_IMAGE_PREFIXES
    assert adm["secretOptInLabel"] == bare.secret_opt_in_label == pol.DEFAULT_SECRET_OPT_IN_LABEL
    assert adm["maxGpuHoursWithoutBudget"] == bare.max_gpu_hours_without_budget
    assert tuple(adm["allowedPriorityClasses"]) == bare.allowed_priority_classes == ()
    assert tuple(adm["allowedTrainingRuntimes"]) == bare.allowed_training_runtimes
    assert values["trainjob"]["runtime"]["name"] in bare.allowed_training_runtimes or ()
    assert (adm["maxSweepGpus"], adm["maxSweepGpusByNamespace"]) == (0, {}) and bare.max_sweep_gpus == ()
    assert (tuple(store["roots"]), store["allowAnyStore"]) == (bare.store_roots, bare.any_store) == ((), False)


def test_permissive_modes_are_explicit_flags() -> None:
    p = parse("--allow-any-image", "--allow-any-secret", "--allow-any-priority-class", "--allow-any-training-runtime",
              "--allow-any-store")  # fmt: skip
    assert p.allowed_image_prefixes == () and p.secret_opt_in_label == ""
    assert p.allowed_priority_classes is None and p.allowed_training_runtimes is None and p.any_store
    listed = parse("--allowed-image-prefix=registry.corp/ml", "--allowed-priority-class=low",
                   "--allowed-training-runtime=rt", "--max-sweep-gpus=16", "--max-sweep-gpus=team-a=4",
                   "--store-root=s3://shared/{namespace},file:///srv/ms")  # fmt: skip
    assert listed.allowed_image_prefixes == ("registry.corp/ml",)  # replaces the default, is not added to it
    assert listed.allowed_priority_classes == ("low",) and listed.allowed_training_runtimes == ("rt",)
    assert (listed.gpu_ceiling("team-a"), listed.gpu_ceiling("team-b")) == (4, 16)
    assert listed.store_roots == ("s3://shared/{namespace}", "file:///srv/ms")
    with pytest.raises(ValueError, match=r"store root 'file:///a/\.\./b'"):
        parse("--store-root=file:///a/../b")
    with pytest.raises(SystemExit):
        parse("--allow-any-image", "--allowed-image-prefix=ghcr.io/x")


def test_without_roots_every_store_is_refused_naming_the_chart_value() -> None:
    for uri in ("s3://team-b-private/x", "s3://shared", "file:///tmp/x"):
        problem = Policy().store_problem(uri, "team-a")
        assert problem is not None and repr(uri) in problem and "store.roots" in problem, problem
    assert "store.allowAnyStore" in (Policy().store_problem("s3://b/x", "team-a") or "")
    assert "operator's own filesystem" in (Policy().store_problem("file:///tmp/x", "team-a") or "")


def test_roots_with_a_namespace_keep_each_team_in_its_prefix() -> None:
    p = Policy(store_roots=("s3://shared/{namespace}",))
    assert p.store_problem("s3://shared/team-a", "team-a") is None
    assert p.store_problem("s3://shared/team-a/deeper", "team-a") is None
    for uri in ("s3://shared/team-b", "s3://shared/team-ab", "s3://team-b-private", "s3://shared/team-a/../team-b",
                "file:///tmp/x"):  # fmt: skip
        assert p.store_problem(uri, "team-a") is not None, uri


def test_the_single_tenant_opt_out_allows_any_bucket_but_never_the_operators_disk(tmp_path: Path) -> None:
    anything = Policy(any_store=True)
    assert anything.store_problem("s3://any-bucket/x", "team-a") is None
    assert anything.store_problem("s3://any-bucket/a/../b", "team-a") is not None  # '..' always refused
    assert "operator's own filesystem" in (anything.store_problem("file:///tmp/x", "team-a") or "")
    shared = Policy(any_store=True, store_roots=(tmp_path.as_uri(),))
    assert shared.store_problem((tmp_path / "team-a").as_uri(), "team-a") is None  # under a file root
    assert shared.store_problem("file:///etc", "team-a") is not None


def test_priority_classes_none_allowed_by_default() -> None:
    (problem,) = Policy().priority_class_problems("cluster-critical-admins-only")
    assert problem.field == "spec.resources.priorityClassName"
    assert "'cluster-critical-admins-only'" in problem.message and "allowed: none" in problem.message
    assert "admission.allowedPriorityClasses" in problem.message
    assert Policy().priority_class_problems(None) == []
    listed = Policy(allowed_priority_classes=("team-low",))
    assert listed.priority_class_problems("team-low") == []
    assert "allowed: 'team-low'" in listed.priority_class_problems("team-high")[0].message
    assert Policy(allowed_priority_classes=None).priority_class_problems("anything") == []


def test_training_runtimes_only_the_charts_by_default() -> None:
    assert Policy().training_runtime_problems("miniseries-torch-distributed") == []
    assert Policy().training_runtime_problems(None) == []  # not a TrainJob sweep
    (problem,) = Policy().training_runtime_problems("torch-distributed")
    assert problem.field == "spec.resources.trainingRuntime"
    assert "'torch-distributed'" in problem.message and "allowed: 'miniseries-torch-distributed'" in problem.message
    assert Policy(allowed_training_runtimes=None).training_runtime_problems("x") == []


def test_a_sweep_over_its_namespaces_gpu_ceiling_is_refused_naming_parallelism() -> None:
    p = Policy(max_sweep_gpus=(("*", 8), ("team-a", 16)))
    assert p.gpu_problems("team-b", 2, 4) == [] and p.gpu_problems("team-a", 4, 4) == []
    (over,) = p.gpu_problems("team-b", 3, 4)
    assert over.field == "spec.resources.parallelism"
    assert "12 GPUs at once (3 runs x gpusPerRun 4)" in over.message and "parallelism <= 2" in over.message
    assert "namespace 'team-b'" in over.message
    (alone,) = p.gpu_problems("team-b", 1, 16)
    assert alone.field == "spec.resources.gpusPerRun" and "gpusPerRun <= 8" in alone.message
    assert Policy().gpu_problems("team-a", 64, 8) == []  # no ceiling by default
    with pytest.raises(ValueError, match="must be >= 1"):
        Policy(max_sweep_gpus=(("team-a", 0),))


def test_the_operators_admission_checks_runtime_priority_and_gpus_of_a_sweep() -> None:
    """control/observe.admission applies every list to the sweep as planned (no Secret named: nothing read)."""
    from miniseries.api.spec import ScalingSweepSpec
    from miniseries.control.io.observe import admission

    def spec(**resources: object) -> ScalingSweepSpec:
        return ScalingSweepSpec.model_validate({"depths": [10, 12], "store": {"uri": "s3://bucket/x"},
                                                "data": {"shardsUri": "s3://bucket/d"}, "resources": resources})  # fmt: skip

    policy = Policy(max_sweep_gpus=(("team-a", 8),))
    assert admission(policy, spec(), "team-a", 2) is None  # 8 GPUs per run, one run at a time
    err = admission(policy, spec(backend="trainjob", trainingRuntime="torch-distributed"), "team-a", 2)
    assert err is not None and err.fields == ["spec.resources.trainingRuntime"]
    assert admission(policy, spec(backend="trainjob"), "team-a", 2) is None  # the default runtime: the chart's
    err = admission(policy, spec(queueName="q", priorityClassName="high", gpusPerRun=4), "team-a", 2)
    assert err is not None and err.fields == ["spec.resources.priorityClassName"]
    err = admission(policy, spec(gpusPerRun=4, nodeGpus=8, nodes=2), "team-a", 3)  # 3 planned runs x 4 GPUs
    assert err is not None and err.fields == ["spec.resources.parallelism"]
    assert admission(policy, spec(gpusPerRun=4, nodeGpus=8, nodes=2), "team-a", 2) is None  # only 2 runs planned


def test_a_custom_trainers_own_image_is_held_to_the_image_policy() -> None:
    """spec.trainer.image is what the run's pods pull: the admin's allowed prefixes apply to it as to
    spec.resources.image, and the refusal names spec.trainer.image (issue 31)."""
    from miniseries.api.spec import ScalingSweepSpec
    from miniseries.control.io.observe import admission

    def spec(image: str) -> ScalingSweepSpec:
        trainer = {"image": image, "command": ["python", "-m", "mine"], "contractVersion": 1}
        return ScalingSweepSpec.model_validate({"depths": [10], "store": {"uri": "s3://bucket/x"},
                                                "data": {"shardsUri": "s3://bucket/d"}, "trainer": trainer})  # fmt: skip

    policy = Policy()  # the chart's default prefix, ghcr.io/miniseries/trainer
    assert admission(policy, spec("ghcr.io/miniseries/trainer:0.1.0-nanochat"), "team-a", 1) is None
    err = admission(policy, spec("docker.io/evil/miner:1"), "team-a", 1)
    assert err is not None and err.fields == ["spec.trainer.image"]
    assert "'docker.io/evil/miner:1'" in str(err) and "admission.allowedImagePrefixes" in str(err)
