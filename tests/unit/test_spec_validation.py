"""Every spec a user can get wrong fails with a message naming the field and what is allowed.

Each case is checked twice: through pydantic (what the operator and `miniseries
plan` use) and, for the single-field cases, through the CRD's OpenAPI schema
(what `kubectl apply` meets) evaluated here with a JSON-schema-style walk.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from miniseries.api.errors import SpecError
from miniseries.api.sweepfile import parse_sweep
from miniseries.plan.planner import make_plan

GOOD: dict[str, Any] = {
    "apiVersion": "miniseries.dev/v1alpha1",
    "kind": "ScalingSweep",
    "metadata": {"name": "ok"},
    "spec": {
        "depths": [4, 6],
        "model": {"aspectRatio": 64, "headDim": 64, "vocabSize": 4096, "sequenceLength": 512},
        "training": {"deviceBatchSize": 8},
        "resources": {"gpusPerRun": 1},
        "store": {"uri": "s3://bucket/sweeps"},
        "data": {"shardsUri": "file:///data/shards"},
    },
}


def with_(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(GOOD)
    node = doc
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    if value is DELETE:
        node.pop(keys[-1])
    else:
        node[keys[-1]] = value
    return doc


DELETE = object()

# (id, document, field named in the error, a fragment of what is allowed)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("depth-zero", with_("spec.depths", [0, 4]), "spec.depths[0]", "greater than or equal to 1"),
    ("depth-too-big", with_("spec.depths", [4, 65]), "spec.depths[1]", "less than or equal to 64"),
    ("depths-empty", with_("spec.depths", []), "spec", "must not be empty"),
    ("depths-duplicated", with_("spec.depths", [4, 6, 4]), "spec", "repeated: [4]"),
    ("depths-and-range", with_("spec.depthRange", {"min": 2, "max": 4}), "spec", "exactly one of depths"),
    ("no-depths", with_("spec.depths", DELETE), "spec", "exactly one of depths"),
    (
        "range-backwards",
        with_("spec.depths", DELETE) | {"spec": {**GOOD["spec"], "depths": None, "depthRange": {"min": 8, "max": 4}}},
        "spec.depthRange",
        "max (4) must be >= min (8)",
    ),
    ("ratio-zero", with_("spec.training.tokensPerParam", 0), "spec.training.tokensPerParam", "greater than 0"),
    ("ratio-negative", with_("spec.training.tokensPerParam", -8), "spec.training.tokensPerParam", "greater than 0"),
    ("unknown-mode", with_("spec.training.mode", "chinchilla"), "spec.training.mode", "'ratio', 'isoflop' or 'wsd'"),
    ("isoflop-without-budgets", with_("spec.training.mode", "isoflop"), "spec", "isoflopBudgets is required"),
    (
        "budgets-in-ratio-mode",
        with_("spec.training.isoflopBudgets", [1e18]),
        "spec",
        "only allowed when training.mode is isoflop",
    ),
    (
        "budget-negative",
        with_("spec.training", {"mode": "isoflop", "isoflopBudgets": [-1.0]}),
        "spec.training.isoflopBudgets[0]",
        "greater than 0",
    ),
    (
        "batch-not-divisible",
        with_("spec.training.totalBatchTokens", 5000),
        "spec.training.totalBatchTokens",
        "multiple of 4096",
    ),
    (
        "device-batch-zero",
        with_("spec.training.deviceBatchSize", 0),
        "spec.training.deviceBatchSize",
        "greater than or equal to 1",
    ),
    (
        "gpus-over-node",
        with_("spec.resources", {"gpusPerRun": 16, "nodeGpus": 8}),
        "spec.resources",
        "gpusPerRun (16) must be <= nodeGpus (8)",
    ),
    (
        "parallelism-zero",
        with_("spec.resources.parallelism", 0),
        "spec.resources.parallelism",
        "greater than or equal to 1",
    ),
    (
        "core-cap-below-shots",
        with_("spec.training.coreMaxPerTask", 5),
        "spec.training.coreMaxPerTask",
        "greater than or equal to 11",
    ),
    ("mfu-over-one", with_("spec.resources.assumedMfu", 1.5), "spec.resources.assumedMfu", "less than or equal to 1"),
    ("precision-fp16", with_("spec.training.precision", "fp16"), "spec.training.precision", "'bf16', 'fp32' or 'fp8'"),
    (
        "fp8-on-a100",
        {**GOOD, "spec": {**GOOD["spec"], "training": {"precision": "fp8"}, "resources": {"gpuType": "A100-80GB"}}},
        "spec",
        "training.precision fp8 needs FP8 tensor cores (compute capability >= 8.9",
    ),
    ("store-http", with_("spec.store.uri", "http://bucket/x"), "spec.store.uri", "s3://<bucket>/<prefix>"),
    ("store-relative-file", with_("spec.store.uri", "file://relative/x"), "spec.store.uri", "file:///<absolute path>"),
    ("store-bad-bucket", with_("spec.store.uri", "s3://B/x"), "spec.store.uri", "bucket: 3-63 lowercase"),
    ("store-missing", with_("spec.store", DELETE), "spec.store", "required field is missing"),
    ("data-uri-bad", with_("spec.data.shardsUri", "/data/shards"), "spec.data.shardsUri", "not a store URI"),
    ("typo-field", with_("spec.training.tokensPerParams", 8), "spec.training.tokensPerParams", "unknown field"),
    ("budget-exceeded", with_("spec.cost.budgetUsd", 0.01), "spec.cost.budgetUsd", "over the budget cap"),
    (
        "price-negative",
        with_("spec.cost.pricePerGpuHour", -1),
        "spec.cost.pricePerGpuHour",
        "greater than or equal to 0",
    ),
    ("head-dim-odd", with_("spec.model.headDim", 33), "spec.model.headDim", "multiple of 2"),
    ("vocab-tiny", with_("spec.model.vocabSize", 100), "spec.model.vocabSize", "greater than or equal to 256"),
    ("name-uppercase", with_("metadata.name", "MySweep"), "metadata", "DNS-1035"),
    ("name-too-long", with_("metadata.name", "a" * 60), "metadata", "at most 50 characters"),
    ("wrong-api-version", with_("apiVersion", "miniseries.dev/v1"), "apiVersion", "miniseries.dev/v1alpha1"),
    ("wrong-kind", with_("kind", "Sweep"), "kind", "'ScalingSweep'"),
    ("retry-negative", with_("spec.retryLimit", -1), "spec.retryLimit", "greater than or equal to 0"),
    ("deletion-policy", with_("spec.deletionPolicy", "Keep"), "spec.deletionPolicy", "'Retain' or 'Delete'"),
    ("zero-steps", with_("spec.training.tokensPerParam", 0.001), "spec.training.tokensPerParam", "less than one step"),
    # what the API server, the PyTorchJob schema or the kubelet would refuse after the jobs exist (grammar.py)
    ("cpu-words", with_("spec.resources.cpu", "lots"), "spec.resources.cpu", "'lots' is not a quantity"),
    ("memory-negative", with_("spec.resources.memory", "-1Gi"), "spec.resources.memory", "'-1Gi' is negative"),
    ("memory-bad-suffix", with_("spec.resources.memory", "1GB"), "spec.resources.memory", "'1GB' is not a quantity"),
    ("cpu-space", with_("spec.resources.cpu", "1 "), "spec.resources.cpu", "Ki, Mi, Gi"),
    ("memory-huge", with_("spec.resources.memory", "1e100"), "spec.resources.memory", "more than Kubernetes can hold"),
    (
        "image-shell",
        with_("spec.resources.image", "ghcr.io/x/y:1; touch /tmp/pwned $(id)"),
        "spec.resources.image",
        "no whitespace",
    ),
    ("image-non-ascii", with_("spec.resources.image", "gh\u0441r.io/x/y:1"), "spec.resources.image", "non-ASCII"),
    ("image-upper-repo", with_("spec.resources.image", "ghcr.io/Team/y:1"), "spec.resources.image", "lower-case"),
    ("image-long-tag", with_("spec.resources.image", "x.io/y:" + "t" * 129), "spec.resources.image", "128"),
    ("image-bad-digest", with_("spec.resources.image", "x.io/y@sha256:abc"), "spec.resources.image", "64"),
    (
        "node-selector-key",
        with_("spec.resources.nodeSelector", {"gpu type": "h100"}),
        "spec.resources.nodeSelector",
        "label key 'gpu type'",
    ),
    (
        "node-selector-value",
        with_("spec.resources.nodeSelector", {"gpu": "h100/sxm"}),
        "spec.resources.nodeSelector",
        "label value 'h100/sxm'",
    ),
    (
        "secret-name",
        with_("spec.store.credentialsSecret", "My_Secret"),
        "spec.store.credentialsSecret",
        "not a valid object name",
    ),
    # numbers whose products overflowed: every one bounded, so status stays writable JSON
    ("price-overflow", with_("spec.cost.pricePerGpuHour", 1e308), "spec.cost.pricePerGpuHour", "less than or equal"),
    ("price-nan", with_("spec.cost.pricePerGpuHour", float("nan")), "spec.cost.pricePerGpuHour", "got nan"),
    ("budget-huge", with_("spec.cost.budgetUsd", 1e300), "spec.cost.budgetUsd", "less than or equal to 1000000000"),
    (
        "peak-flops-tiny",
        with_("spec.resources.peakFlopsPerGpu", 1e-300),
        "spec.resources.peakFlopsPerGpu",
        "greater than or equal to 1000000000",
    ),
    ("mfu-tiny", with_("spec.resources.assumedMfu", 1e-300), "spec.resources.assumedMfu", "greater than or equal"),
    (
        "isoflop-beyond-int64",
        {
            **GOOD,
            "spec": {
                **GOOD["spec"],
                "training": {"mode": "isoflop", "isoflopBudgets": [1e27]},
                "cost": {"budgetUsd": 1e9},
            },
        },
        "spec.training.isoflopBudgets",
        "more than status can hold",
    ),
    # no budget: the operator's GPU-hour ceiling, which a sweep raises by setting budgetUsd
    (
        "ceiling-without-budget",
        {**GOOD, "spec": {**GOOD["spec"], "depths": None, "depthRange": {"min": 1, "max": 64}}},
        "spec.cost.budgetUsd",
        "GPU-hours this operator allows a sweep without a budget",
    ),
]


@pytest.mark.parametrize(("doc", "field", "allowed"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_spec_names_the_field(doc: dict[str, Any], field: str, allowed: str) -> None:
    with pytest.raises(SpecError) as e:
        make_plan(parse_sweep(doc).spec)
    assert field in e.value.fields, f"expected {field} in {e.value.fields}: {e.value}"
    assert allowed in str(e.value)


def test_good_spec_plans() -> None:
    plan = make_plan(parse_sweep(GOOD).spec)
    assert [r.depth for r in plan.runs] == [6, 4]


OFFLINE = [c for c in CASES[:3] + CASES if c[0] in ("depth-zero", "depth-too-big", "depths-empty", "cpu-words",
           "memory-negative", "image-shell", "image-non-ascii", "price-overflow", "ceiling-without-budget")]  # fmt: skip


@pytest.mark.parametrize(("doc", "field", "allowed"), [c[1:] for c in OFFLINE], ids=[c[0] for c in OFFLINE])
def test_cli_plan_reports_field_and_exit_2(tmp_path: Path, doc: dict[str, Any], field: str, allowed: str) -> None:
    f = tmp_path / "sweep.yaml"
    f.write_text(yaml.safe_dump(doc))
    r = subprocess.run([sys.executable, "-m", "miniseries.cli", "plan", str(f)], capture_output=True, text=True)
    assert r.returncode == 2
    assert field in r.stderr and allowed in r.stderr
