"""The ScalingSweep API: pydantic models that are the single source of the CRD.

``miniseries crd`` renders these models into the CustomResourceDefinition in
``crds/``; the operator and ``miniseries plan`` validate specs with the same
models, so a spec that the API server accepts and one that the operator accepts
cannot drift apart. Field descriptions become ``kubectl explain`` text.

Wire names are camelCase (Kubernetes convention); Python names are snake_case.

This module holds the spec (what a user writes) and the resource around it; the status
models are in `status`, the camelCase base model in `wire`, the group/version/kind in
`resource`. All of them are re-exported here: `from miniseries.api.spec import X` names
any part of the API.
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from miniseries.api import grammar
from miniseries.api.resource import API_VERSION, GROUP, KIND, PLURAL, SHORT_NAMES, SINGULAR, VERSION
from miniseries.api.status import (
    Condition,
    FitStatus,
    PlannedRun,
    PlanStatus,
    RunForecast,
    RunState,
    RunStatus,
    ScalingSweepStatus,
    Totals,
)
from miniseries.api.trainer import TrainerSpec, TrainerSupports
from miniseries.api.training import (
    MAX_DEPTH,
    MAX_ISOFLOP_BUDGET,
    MIN_DEPTH,
    WSD_DEFAULT_COOLDOWN_FRACTION,
    ForecastPolicy,
    ForecastSpec,
    Mode,
    Precision,
    TrainingSpec,
    WsdSpec,
    gpu_type_lacks_fp8,
)
from miniseries.api.wire import WireModel, cel_rules, writable
from miniseries.contract.mfu import planned_mfu
from miniseries.contract.store import STORE_URI_RE, uri_problem
from miniseries.contract.store.uri import MAX_URI_LENGTH, dot_segment_rule

# Re-exported: `from miniseries.api.spec import X` is how the rest of the code base names the API.
__all__ = [
    "API_VERSION",
    "DEFAULT_TRAINING_RUNTIME",
    "GROUP",
    "KIND",
    "MAX_BUDGET_USD",
    "MAX_DEPTH",
    "MAX_ISOFLOP_BUDGET",
    "MAX_PRICE_PER_GPU_HOUR",
    "MAX_SWEEP_NAME",
    "MIN_DEPTH",
    "PLURAL",
    "SHORT_NAMES",
    "SINGULAR",
    "SWEEP_NAME_RE",
    "VERSION",
    "WSD_DEFAULT_COOLDOWN_FRACTION",
    "Backend",
    "Condition",
    "CostSpec",
    "DataSpec",
    "DeletionPolicy",
    "DepthRange",
    "FitStatus",
    "ForecastPolicy",
    "ForecastSpec",
    "Mode",
    "ModelSpec",
    "PlanStatus",
    "PlannedRun",
    "Precision",
    "ResourceSpec",
    "RunForecast",
    "RunState",
    "RunStatus",
    "ScalingSweep",
    "ScalingSweepSpec",
    "ScalingSweepStatus",
    "StoreSpec",
    "Totals",
    "TrainerSpec",
    "TrainerSupports",
    "TrainingSpec",
    "WireModel",
    "WsdSpec",
    "writable",
]

#: Kubernetes object names: the sweep name becomes part of `<sweep>-<run>` job names, which must be
#: DNS-1035 labels of at most 63 characters; run ids are at most 12 (plan/wsd_branches.py MAX_RUN_NAME).
#: Also the CRD's pattern for metadata.name (api/crd.py), so RE2-compatible; match with `fullmatch`.
MAX_SWEEP_NAME = 50
SWEEP_NAME_RE = re.compile(rf"^[a-z]([-a-z0-9]{{0,{MAX_SWEEP_NAME - 2}}}[a-z0-9])?$")
# Bounds on the numbers a plan multiplies: with them every estimate (FLOPs, hours, USD) stays
# finite, so status is always writable JSON (1e308 USD/GPU-hour once made every status patch fail).
MAX_PRICE_PER_GPU_HOUR = 10_000.0
MAX_BUDGET_USD = 1e9
#: A sweep's cluster: up to 64 nodes, and a run over up to 64 nodes of 8 GPUs.
MAX_NODES = 64
MAX_GPUS_PER_RUN = 512


#: What the API server checks of every store URI before the operator sees it (api/crd.py copies these
#: keys into the CRD): the same pattern, length and dot-segment test as `_check_store_uri`, which
#: stays for CRDs installed before these and for clients that skip the API server (`miniseries plan`).
STORE_URI_SCHEMA: dict[str, Any] = {
    "maxLength": MAX_URI_LENGTH,
    "pattern": STORE_URI_RE.pattern,
    "x-kubernetes-validations": [
        {
            "rule": dot_segment_rule(),
            # the value in the message: a CEL refusal otherwise shows only its type ("string")
            "messageExpression": f"{json.dumps(chr(39))} + self + "
            + json.dumps("' has a '.' or '..' path segment (also percent-encoded); allowed: the path without them"),
            "reason": "FieldValueInvalid",
        }
    ],
}


def _check_store_uri(value: str, what: str) -> str:
    if len(value) > MAX_URI_LENGTH:
        raise ValueError(f"{what} is {len(value)} characters long; allowed: at most {MAX_URI_LENGTH}")
    if not STORE_URI_RE.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a store URI; allowed: s3://<bucket>/<prefix> "
            "(bucket: 3-63 lowercase letters, digits, dots, hyphens) or file:///<absolute path>"
        )
    problem = uri_problem(value)
    if problem:
        raise ValueError(f"{what} {problem}")
    return value


class Backend(StrEnum):
    """What each run becomes on the cluster."""

    pytorchjob = "pytorchjob"  # a Kubeflow training-operator v1 PyTorchJob (kubeflow.org/v1)
    trainjob = "trainjob"  # a Kubeflow Trainer v2 TrainJob (trainer.kubeflow.org/v1alpha1) on a JobSet


#: The ClusterTrainingRuntime a TrainJob names unless spec.resources.trainingRuntime says otherwise:
#: the chart installs it (trainjob.runtime.install), Kubeflow's stock torch-distributed runtime
#: plus what the operator relies on (no blind pod restarts, the log tail in the termination message,
#: the named metrics port).
DEFAULT_TRAINING_RUNTIME = "miniseries-torch-distributed"


class DeletionPolicy(StrEnum):
    Retain = "Retain"
    Delete = "Delete"


class DepthRange(WireModel):
    """An inclusive range of depths, like Python's range but including `max`."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(("self.max >= self.min", "max must be >= min", ".max")),
    )

    min: Annotated[int, Field(ge=MIN_DEPTH, le=MAX_DEPTH, description="First depth.")]
    max: Annotated[int, Field(ge=MIN_DEPTH, le=MAX_DEPTH, description="Last depth (inclusive).")]
    step: Annotated[int, Field(ge=1, description="Step between depths.")] = 1

    @model_validator(mode="after")
    def _ordered(self) -> DepthRange:
        if self.max < self.min:
            raise ValueError(f"max ({self.max}) must be >= min ({self.min})")
        return self

    def depths(self) -> list[int]:
        return list(range(self.min, self.max + 1, self.step))


class ModelSpec(WireModel):
    """The architecture dials; everything else is derived from depth (see shapes.py)."""

    aspect_ratio: Annotated[
        int, Field(ge=1, le=1024, description="Model width = depth x aspectRatio (rounded up to whole heads).")
    ] = 64
    head_dim: Annotated[int, Field(ge=8, le=512, multiple_of=2, description="Channels per attention head.")] = 128
    vocab_size: Annotated[
        int, Field(ge=256, le=1_048_576, description="BPE vocabulary size (256 byte tokens + merges + special tokens).")
    ] = 32768
    sequence_length: Annotated[int, Field(ge=16, le=131072, description="Training context length in tokens.")] = 2048


class ResourceSpec(WireModel):
    """Where and how the runs execute."""

    # _fits_node's two checks and those of the priorityClassName and trainingRuntime validators, at the API server
    # (a null field is absent to CEL's has(), as None is to them)
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "self.gpusPerRun <= self.nodeGpus || self.gpusPerRun % self.nodeGpus == 0",
                "gpusPerRun must be <= nodeGpus or a multiple of it: a run larger than one node spans whole nodes",
                ".gpusPerRun",
            ),
            (
                "(self.gpusPerRun > self.nodeGpus ? self.gpusPerRun / self.nodeGpus : 1) <= self.nodes",
                "gpusPerRun must be <= nodeGpus, or nodes at least gpusPerRun / nodeGpus (the nodes one run spans)",
                ".gpusPerRun",
            ),
            (
                "!has(self.priorityClassName) || has(self.queueName)",
                "priorityClassName (a Kueue WorkloadPriorityClass) needs queueName (a LocalQueue) too; allowed: both, "
                "queueName alone, or neither",
                ".priorityClassName",
            ),
            (
                "!has(self.trainingRuntime) || self.backend == 'trainjob'",
                "trainingRuntime names a Trainer v2 ClusterTrainingRuntime and needs backend: trainjob",
                ".trainingRuntime",
            ),
        ),
    )

    gpus_per_run: Annotated[
        int,
        Field(
            ge=1,
            le=MAX_GPUS_PER_RUN,
            description="GPUs per run: up to nodeGpus, one pod on one node (torchrun nproc-per-node); more is a "
            "multiple of nodeGpus, a run over gpusPerRun / nodeGpus whole nodes (a PyTorchJob Master + Workers).",
        ),
    ] = 8
    node_gpus: Annotated[int, Field(ge=1, le=64, description="GPUs on each node the sweep packs its runs onto.")] = 8
    nodes: Annotated[
        int,
        Field(
            ge=1,
            le=MAX_NODES,
            description="Nodes of nodeGpus GPUs the sweep may use at once: runs of up to nodeGpus GPUs are packed "
            "onto them, a run of more holds gpusPerRun / nodeGpus whole nodes.",
        ),
    ] = 1
    parallelism: Annotated[
        int | None,
        Field(ge=1, le=64, description="Most runs in flight at once; omit for as many as the nodes' GPUs hold."),
    ] = None
    gpu_type: Annotated[str, Field(description="GPU model, for labels and the cost estimate.")] = "H100"
    peak_flops_per_gpu: Annotated[
        float, Field(ge=1e9, le=1e18, description="Dense bf16 peak FLOP/s of one GPU (H100 SXM: 989e12).")
    ] = 989e12
    assumed_mfu: Annotated[
        float | None,
        Field(
            ge=0.001,
            le=1,
            description="Model FLOPs utilisation assumed for time and cost estimates, the same for every depth; "
            "omit for the per-depth table of miniseries.contract.mfu (nanochat's reported MFU on 8xH100: 41% at "
            "d12, 46% at d18, ~52% at d26; lower below d12).",
        ),
    ] = None
    image: Annotated[str, Field(description="Trainer container image.", json_schema_extra=grammar.IMAGE_SCHEMA)] = (
        "ghcr.io/miniseries/trainer:0.1.0"
    )
    image_pull_policy: Annotated[
        Literal["Always", "IfNotPresent", "Never"], Field(description="Image pull policy for trainer pods.")
    ] = "IfNotPresent"
    cpu: Annotated[
        str,
        Field(
            description="CPU request per trainer pod (a Kubernetes quantity: 16, 500m); each trainer process in it "
            "runs its share as OMP_NUM_THREADS, at least 1.",
            json_schema_extra=grammar.QUANTITY_SCHEMA,
        ),
    ] = "16"
    memory: Annotated[
        str,
        Field(
            description="Memory request per trainer pod (a Kubernetes quantity: 200Gi, 1.5e11).",
            json_schema_extra=grammar.QUANTITY_SCHEMA,
        ),
    ] = "200Gi"
    node_selector: Annotated[
        dict[str, str] | None,
        Field(
            description="Node selector for trainer pods.",
            json_schema_extra={"additionalProperties": {"type": "string", **grammar.LABEL_VALUE_SCHEMA}},
        ),
    ] = None
    queue_name: Annotated[
        str | None,
        Field(
            description="A Kueue LocalQueue in the sweep's namespace: every job is created suspended with the label "
            "kueue.x-k8s.io/queue-name and Kueue admits it by its quota (parallelism and nodeGpus stay an upper "
            "bound on the jobs the operator creates). Omit to start jobs directly.",
            json_schema_extra=grammar.DNS1123_LABEL_SCHEMA,
        ),
    ] = None
    priority_class_name: Annotated[
        str | None,
        Field(
            description="A Kueue WorkloadPriorityClass for the sweep's jobs (label kueue.x-k8s.io/priority-class); "
            "needs queueName.",
            json_schema_extra=grammar.DNS1123_SUBDOMAIN_LABEL_SCHEMA,
        ),
    ] = None
    backend: Annotated[
        Backend,
        Field(
            description="What each run becomes: pytorchjob (a Kubeflow training-operator v1 PyTorchJob) or trainjob "
            "(a Kubeflow Trainer v2 TrainJob on a JobSet, referencing trainingRuntime). The operator must serve it "
            "(its --backend flags, the chart's `backends` value)."
        ),
    ] = Backend.pytorchjob
    training_runtime: Annotated[
        str | None,
        Field(
            description="backend trainjob: the ClusterTrainingRuntime (a torch one) each TrainJob references; "
            f"default {DEFAULT_TRAINING_RUNTIME}, the one the chart installs.",
            json_schema_extra=grammar.DNS1123_SUBDOMAIN_SCHEMA,
        ),
    ] = None

    # What the API server and the kubelet check only after the jobs exist, checked here first
    # (grammar.py ports their rules): a refusal names the field before anything is created.
    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, v: str) -> str:
        grammar.check_request_quantity(v)
        return v

    @field_validator("image")
    @classmethod
    def _image(cls, v: str) -> str:
        grammar.check_image(v)
        return v

    @field_validator("node_selector")
    @classmethod
    def _labels(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        for key, value in (v or {}).items():
            grammar.check_label_key(key)
            grammar.check_label_value(value)
        return v

    @field_validator("queue_name")
    @classmethod
    def _queue_name(cls, v: str | None) -> str | None:
        if v is not None:
            grammar.check_dns1123_label(v)  # a LocalQueue name; also a valid label value
        return v

    @field_validator("priority_class_name")
    @classmethod
    def _priority_class_name(cls, v: str | None, info: Any) -> str | None:
        if v is None:
            return v
        grammar.check_dns1123_subdomain(v)
        grammar.check_label_value(v)  # it travels as a label value
        if "queue_name" in info.data and info.data["queue_name"] is None:  # validated first; absent if invalid
            raise ValueError(
                f"{v!r} is a Kueue WorkloadPriorityClass and needs resources.queueName (a LocalQueue) too; "
                "allowed: both, queueName alone, or neither"
            )
        return v

    @field_validator("training_runtime")
    @classmethod
    def _training_runtime(cls, v: str | None, info: Any) -> str | None:
        if v is None:
            return v
        grammar.check_dns1123_subdomain(v)  # an object name
        if info.data.get("backend", Backend.trainjob) is not Backend.trainjob:
            raise ValueError(
                f"{v!r} names a Trainer v2 ClusterTrainingRuntime and needs resources.backend: trainjob; "
                "allowed: trainingRuntime with backend trainjob, or no trainingRuntime"
            )
        return v

    @model_validator(mode="after")
    def _fits_node(self) -> ResourceSpec:
        g, n = self.gpus_per_run, self.node_gpus
        if g > n and g % n:
            raise ValueError(
                f"gpusPerRun ({g}) must be <= nodeGpus ({n}) or a multiple of it ({2 * n}, {3 * n}, ...): "
                "a run larger than one node spans whole nodes"
            )
        if self.nodes_per_run > self.nodes:
            raise ValueError(
                f"gpusPerRun ({g}) must be <= nodeGpus ({n}), or nodes ({self.nodes}) at least "
                f"{self.nodes_per_run}: a run of {g} GPUs spans {self.nodes_per_run} nodes of {n}"
            )
        return self

    def mfu_for(self, depth: int) -> float:
        """The MFU a plan assumes for a run at `depth`: assumedMfu when set, else the per-depth table."""
        return self.assumed_mfu if self.assumed_mfu is not None else planned_mfu(depth)

    @property
    def runtime_name(self) -> str:
        """The ClusterTrainingRuntime a TrainJob of this sweep references."""
        return self.training_runtime or DEFAULT_TRAINING_RUNTIME

    @property
    def nodes_per_run(self) -> int:
        """Nodes one run spans: 1, or gpusPerRun / nodeGpus whole nodes."""
        return max(1, self.gpus_per_run // self.node_gpus) if self.gpus_per_run > self.node_gpus else 1

    @property
    def gpus_per_node(self) -> int:
        """GPUs (trainer processes, torchrun nproc-per-node) in each of a run's pods."""
        return min(self.gpus_per_run, self.node_gpus)

    @property
    def max_runs_in_flight(self) -> int:
        """Runs the nodes hold at once, capped by parallelism."""
        if self.nodes_per_run > 1:
            fit = self.nodes // self.nodes_per_run
        else:
            fit = self.nodes * (self.node_gpus // self.gpus_per_run)
        return min(fit, self.parallelism) if self.parallelism else fit


class CostSpec(WireModel):
    price_per_gpu_hour: Annotated[float, Field(ge=0, le=MAX_PRICE_PER_GPU_HOUR, description="USD per GPU-hour.")] = 3.0
    budget_usd: Annotated[
        float | None,
        Field(
            gt=0,
            le=MAX_BUDGET_USD,
            description="Refuse a plan whose estimated cost exceeds this many USD. Without it, a plan may use at "
            "most the operator's GPU-hour ceiling for sweeps without a budget (1000 GPU-hours unless configured); "
            "setting it is how a sweep asks for more.",
        ),
    ] = None


class StoreSpec(WireModel):
    """Where checkpoints, results and the report are written."""

    uri: Annotated[
        str,
        Field(
            description="s3://bucket/prefix or file:///path (no '.' or '..' segments); the sweep writes under "
            "<uri>/<namespace>/<sweep name>/, which it claims with a store manifest.",
            json_schema_extra=STORE_URI_SCHEMA,
        ),
    ]
    credentials_secret: Annotated[
        str | None,
        Field(
            description="Secret with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and optionally AWS_ENDPOINT_URL, AWS_REGION.",
            json_schema_extra=grammar.DNS1123_SUBDOMAIN_SCHEMA,
        ),
    ] = None

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str) -> str:
        return _check_store_uri(v, "store uri")

    @field_validator("credentials_secret")
    @classmethod
    def _secret_name(cls, v: str | None) -> str | None:
        if v is not None:
            grammar.check_dns1123_subdomain(v)
        return v


class DataSpec(WireModel):
    """Training text, tokenizer and evaluation sources."""

    shards_uri: Annotated[
        str,
        Field(
            description="Parquet shards with a `text` column (s3:// or file://); the last shard is held out for validation.",
            json_schema_extra=STORE_URI_SCHEMA,
        ),
    ]
    tokenizer_uri: Annotated[
        str | None,
        Field(
            description="A trained tokenizer to use; omit to train one BPE per sweep from the shards.",
            json_schema_extra=STORE_URI_SCHEMA,
        ),
    ] = None
    eval_bundle_uri: Annotated[
        str | None,
        Field(
            description="CORE eval bundle (core.yaml, eval_meta_data.csv, eval_data/); omit to skip CORE.",
            json_schema_extra=STORE_URI_SCHEMA,
        ),
    ] = None
    tokenizer_train_chars: Annotated[
        int, Field(ge=1000, description="Characters of training text sampled to train the tokenizer.")
    ] = 2_000_000_000

    @field_validator("shards_uri", "tokenizer_uri", "eval_bundle_uri")
    @classmethod
    def _uris(cls, v: str | None, info: Any) -> str | None:
        return None if v is None else _check_store_uri(v, to_camel(info.field_name))


def mode_is_wsd(spec: ScalingSweepSpec) -> bool:
    return spec.training.mode is Mode.wsd


class ScalingSweepSpec(WireModel):
    """A family of GPT models, one per depth, each trained for its compute-optimal tokens."""

    # _depths's and _check_wsd's checks that need nothing but the spec, at the API server
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "has(self.depths) != has(self.depthRange)",
                "give exactly one of depths (a list) or depthRange (min/max/step)",
                ".depths",
            ),
            (
                "self.training.mode != 'isoflop' || (has(self.training.isoflopBudgets) && "
                "size(self.training.isoflopBudgets) > 0)",
                "training.isoflopBudgets is required when training.mode is isoflop",
                ".training.isoflopBudgets",
            ),
            (
                "self.training.mode != 'ratio' || !has(self.training.isoflopBudgets) || "
                "size(self.training.isoflopBudgets) == 0",
                "training.isoflopBudgets is only allowed when training.mode is isoflop",
                ".training.isoflopBudgets",
            ),
            (
                "(self.training.mode == 'wsd') == has(self.training.wsd)",
                "training.wsd (budgets, cooldownFraction) is required when training.mode is wsd, and only allowed then",
                ".training.wsd",
            ),
            (
                "!has(self.training.wsd) || !has(self.training.wsd.twinDepth) || (has(self.depths) ? "
                "self.training.wsd.twinDepth in self.depths : has(self.depthRange) && "
                "self.training.wsd.twinDepth >= self.depthRange.min && self.training.wsd.twinDepth <= self.depthRange.max "
                "&& (self.training.wsd.twinDepth - self.depthRange.min) % self.depthRange.step == 0)",
                "training.wsd.twinDepth must be one of the sweep's depths",
                ".training.wsd.twinDepth",
            ),
            (
                "!has(self.trainer) || self.training.mode != 'wsd' || "
                "(has(self.trainer.supports) && has(self.trainer.supports.initFrom) && self.trainer.supports.initFrom)",
                "training.mode wsd starts branches from their trunk's checkpoint (--init-from, contract clause C14): "
                "a custom trainer needs trainer.supports.initFrom: true; allowed: that, another mode, or the built-in trainer",
                ".trainer.supports.initFrom",
            ),
        ),
    )

    depths: Annotated[
        list[Annotated[int, Field(ge=MIN_DEPTH, le=MAX_DEPTH)]] | None,
        Field(
            description=f"Depths to train ({MIN_DEPTH}..{MAX_DEPTH}); give this or depthRange.",
            # _depths's "not empty" and "distinct" at the API server (more than 64 depths repeat one)
            json_schema_extra={
                "minItems": 1,
                "maxItems": MAX_DEPTH - MIN_DEPTH + 1,
                "x-kubernetes-list-type": "set",
            },
        ),
    ] = None
    depth_range: Annotated[
        DepthRange | None, Field(description="An inclusive range of depths; give this or depths.")
    ] = None
    model: Annotated[ModelSpec, Field(description="Architecture dials.")] = ModelSpec()
    training: Annotated[TrainingSpec, Field(description="Training horizon and batch.")] = TrainingSpec()
    resources: Annotated[ResourceSpec, Field(description="GPUs, packing and image.")] = ResourceSpec()
    cost: Annotated[CostSpec, Field(description="Price and budget cap.")] = CostSpec()
    store: Annotated[StoreSpec, Field(description="Artifact store.")]
    data: Annotated[DataSpec, Field(description="Data, tokenizer and eval sources.")]
    retry_limit: Annotated[
        int, Field(ge=0, le=20, description="Times a failed run is retried (from its newest checkpoint).")
    ] = 3
    suspend: Annotated[bool, Field(description="Suspend running jobs (they resume from checkpoints when unset).")] = (
        False
    )
    deletion_policy: Annotated[
        DeletionPolicy,
        Field(description="Retain keeps store artifacts when the sweep is deleted; Delete removes them."),
    ] = DeletionPolicy.Retain
    trainer: Annotated[
        TrainerSpec | None,
        Field(
            description="A custom trainer (image, command, args) speaking the trainer contract; omit for the built-in one."
        ),
    ] = None

    @model_validator(mode="after")
    def _depths(self) -> ScalingSweepSpec:
        if (self.depths is None) == (self.depth_range is None):
            raise ValueError("give exactly one of depths (a list) or depthRange (min/max/step)")
        depths = self.depth_list()
        if not depths:
            raise ValueError("depths must not be empty")
        if len(set(depths)) != len(depths):
            dupes = sorted({d for d in depths if depths.count(d) > 1})
            raise ValueError(f"depths must be distinct; repeated: {dupes}")
        if self.training.mode is Mode.isoflop and not self.training.isoflop_budgets:
            raise ValueError("training.isoflopBudgets is required when training.mode is isoflop")
        if self.training.mode is Mode.ratio and self.training.isoflop_budgets:
            raise ValueError("training.isoflopBudgets is only allowed when training.mode is isoflop")
        self._check_wsd(depths)
        if self.trainer is not None and mode_is_wsd(self) and not self.trainer.supports.init_from:
            raise ValueError(
                "trainer.supports.initFrom is false: training.mode wsd starts branches from their trunk's checkpoint "
                "(--init-from, contract clause C14); allowed: a trainer with supports.initFrom: true, another mode, "
                "or the built-in trainer"
            )
        if self.training.precision is Precision.fp8 and gpu_type_lacks_fp8(self.resources.gpu_type):
            raise ValueError(
                f"training.precision fp8 needs FP8 tensor cores (compute capability >= 8.9: H100, H200, L4, L40S); "
                f"resources.gpuType {self.resources.gpu_type!r} has none: use bf16 or auto"
            )
        return self

    def _check_wsd(self, depths: list[int]) -> None:
        wsd, mode = self.training.wsd, self.training.mode
        if mode is Mode.wsd and wsd is None:
            raise ValueError("training.wsd (budgets, cooldownFraction) is required when training.mode is wsd")
        if mode is not Mode.wsd and wsd is not None:
            raise ValueError(f"training.wsd is only allowed when training.mode is wsd, not {mode.value}")
        if wsd is not None and wsd.twin_depth is not None and wsd.twin_depth not in depths:
            raise ValueError(f"training.wsd.twinDepth {wsd.twin_depth} is not one of the sweep's depths {depths}")

    def depth_list(self) -> list[int]:
        if self.depths is not None:
            return list(self.depths)
        assert self.depth_range is not None
        return self.depth_range.depths()


class ScalingSweep(WireModel):
    """The whole resource, as read from a YAML file or the API server."""

    model_config = ConfigDict(extra="ignore")  # metadata fields we do not model (uid, managedFields, ...)

    api_version: Annotated[str, Field(alias="apiVersion")] = API_VERSION
    kind: str = KIND
    metadata: dict[str, Any] = {}  # noqa: RUF012 (a pydantic field: each instance gets a copy)
    spec: ScalingSweepSpec
    status: ScalingSweepStatus | None = None

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, v: str) -> str:
        if v != API_VERSION:
            raise ValueError(f"apiVersion must be {API_VERSION!r}, got {v!r}")
        return v

    @field_validator("kind")
    @classmethod
    def _kind(cls, v: str) -> str:
        if v != KIND:
            raise ValueError(f"kind must be {KIND!r}, got {v!r}")
        return v

    @field_validator("metadata")
    @classmethod
    def _name(cls, v: dict[str, Any]) -> dict[str, Any]:
        name = v.get("name")
        if not isinstance(name, str) or not SWEEP_NAME_RE.fullmatch(name):
            raise ValueError(
                f"metadata.name {name!r} must be a DNS-1035 label of at most {MAX_SWEEP_NAME} characters "
                "(lowercase letters, digits, '-', starting with a letter), so that job names "
                "<name>-d<depth> stay valid"
            )
        return v

    @property
    def name(self) -> str:
        return str(self.metadata["name"])
