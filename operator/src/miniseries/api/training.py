"""The training part of a sweep's spec: the mode (ratio, isoFLOP, warmup-stable-decay), its horizon,
batch and schedule, and the forecast policy. Re-exported by api/spec.py, where the rest of the
code base names them."""

from __future__ import annotations

from enum import StrEnum
from itertools import pairwise
from typing import Annotated

from pydantic import ConfigDict, Field, field_validator, model_validator

from miniseries.api.wire import WireModel, cel_rules

#: Depths outside this range are either not a transformer worth fitting (d1) or
#: beyond what one 8-GPU node trains in a sweep (d64 is already ~10B params).
MIN_DEPTH, MAX_DEPTH = 1, 64
#: The largest isoFLOP budget a plan multiplies (every estimate stays finite; see api/spec.py).
MAX_ISOFLOP_BUDGET = 1e27


class Mode(StrEnum):
    ratio = "ratio"
    isoflop = "isoflop"
    wsd = "wsd"


#: Hägele et al. 2024 (arXiv 2405.18392). Its abstract: a constant LR with cooldowns "scales predictably and
#: reliably similar to cosine", so scaling experiments can use "fewer but reusable training runs"; the
#: (1-sqrt) shape and a cooldown of ~20% of the steps are from the paper's body (not its abstract).
WSD_DEFAULT_COOLDOWN_FRACTION = 0.2


class WsdSpec(WireModel):
    """Warmup-stable-decay: per depth one constant-LR trunk and one (1-sqrt) cooldown branch per budget."""

    # _twins's first check, at the API server (its second, and _increasing, walk unbounded lists)
    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                "has(self.twinDepth) == (has(self.twinBudgets) && size(self.twinBudgets) > 0)",
                "give both twinDepth and twinBudgets (or neither)",
                ".twinDepth",
            )
        ),
    )

    budgets: Annotated[
        list[Annotated[float, Field(gt=0, le=10000)]],
        Field(
            min_length=1,
            description="Token budgets in tokens per scaling parameter, strictly increasing, e.g. [4, 8, 16, 32]; "
            "each is one branch (one (N, D) point) per depth.",
        ),
    ]
    cooldown_fraction: Annotated[
        float,
        Field(
            gt=0,
            le=0.5,
            description="Fraction of each branch's steps spent in its (1-sqrt) cooldown, in (0, 0.5] (default 0.2, "
            "Hägele et al. 2024).",
        ),
    ] = WSD_DEFAULT_COOLDOWN_FRACTION
    twin_depth: Annotated[
        int | None,
        Field(
            ge=MIN_DEPTH,
            le=MAX_DEPTH,
            description="A depth of the sweep that also trains independent runs (from scratch, same batch and "
            "schedule, seed training.seed + 1) at twinBudgets, to validate its branches against.",
        ),
    ] = None
    twin_budgets: Annotated[
        list[float] | None,
        Field(description="Budgets (from budgets) of the independent twin runs at twinDepth."),
    ] = None

    @field_validator("budgets")
    @classmethod
    def _increasing(cls, v: list[float]) -> list[float]:
        for a, b in pairwise(v):
            if b <= a:
                raise ValueError(f"budgets must be strictly increasing, got {v} ({b:g} after {a:g})")
        return v

    @model_validator(mode="after")
    def _twins(self) -> WsdSpec:
        if (self.twin_depth is None) != (not self.twin_budgets):
            raise ValueError("give both twinDepth and twinBudgets (or neither)")
        for b in self.twin_budgets or []:
            if b not in self.budgets:
                raise ValueError(f"twinBudgets {self.twin_budgets} must be taken from budgets {self.budgets}")
        return self


class ForecastPolicy(StrEnum):
    none = "none"
    flag = "flag"
    stop = "stop"


class ForecastSpec(WireModel):
    """What to do with a run whose forecast lies off the sweep's trend (control/decide/forecast_status.py)."""

    policy: Annotated[
        ForecastPolicy,
        Field(
            description="none: forecast only. flag: a run whose forecast final val bpb lies off the trend of the "
            "sweep's finished runs by more than its interval and a margin allow gets a RunOffTrend Event and "
            "Degraded names it. stop: that run is also stopped and recorded Failed (reason OffTrend, no retry)."
        ),
    ] = ForecastPolicy.flag


class Precision(StrEnum):
    """What the trainer's matmuls compute in (its --precision; miniseries_trainer/precision.py)."""

    auto = "auto"  # bf16 autocast on GPUs, fp32 on CPU
    bf16 = "bf16"
    fp32 = "fp32"
    fp8 = "fp8"  # torchao float8 training (tensorwise) of the blocks' linears; Hopper/Ada GPUs only


#: GPU models (resources.gpuType, matched as a prefix, case-insensitive) without FP8 tensor cores
#: (compute capability below 8.9): a spec asking fp8 on them is refused before anything runs. The
#: trainer checks the real device's capability again at start.
GPU_TYPES_WITHOUT_FP8 = ("A100", "A10", "A30", "A40", "A16", "A2", "V100", "T4", "P100", "P40", "P4", "K80")


def gpu_type_lacks_fp8(gpu_type: str) -> bool:
    name = gpu_type.upper().removeprefix("NVIDIA").strip(" -_")
    return any(name == t or (name.startswith(t) and not name[len(t)].isdigit()) for t in GPU_TYPES_WITHOUT_FP8)


class TrainingSpec(WireModel):
    """How long each depth trains and how its batches are formed."""

    mode: Annotated[
        Mode,
        Field(
            description="ratio: tokens = tokensPerParam x scaling params; isoflop: each depth at each FLOP budget; "
            "wsd: per depth one constant-LR trunk and a cooldown branch per tokens-per-param budget (training.wsd)."
        ),
    ] = Mode.ratio
    tokens_per_param: Annotated[
        float,
        Field(
            gt=0,
            le=10000,
            description="Tokens per scaling parameter in ratio mode (8 is nanochat's Muon compute-optimum; Chinchilla's is 20). Also sets the d12 reference horizon for the automatic batch size.",
        ),
    ] = 8.0
    isoflop_budgets: Annotated[
        list[Annotated[float, Field(gt=0, le=MAX_ISOFLOP_BUDGET)]] | None,
        Field(description="FLOP budgets for isoflop mode, e.g. [1e18, 2.15e18, 4.64e18, 1e19]."),
    ] = None
    total_batch_tokens: Annotated[
        int | None,
        Field(
            ge=1,
            le=2**40,
            description="Tokens per optimizer step; omit for automatic (2^19 at d12, scaled as D^0.383, nanochat's rule).",
        ),
    ] = None
    device_batch_size: Annotated[
        int,
        Field(
            ge=1,
            le=4096,
            description="Sequences per GPU per forward/backward; gradient accumulation makes up the rest.",
        ),
    ] = 32
    warmup_steps: Annotated[int, Field(ge=0, description="Linear learning-rate warmup steps.")] = 40
    warmdown_ratio: Annotated[
        float,
        Field(ge=0, le=1, description="Fraction of steps at the end over which the learning rate decays linearly."),
    ] = 0.4
    checkpoint_every: Annotated[
        int, Field(ge=1, description="Save a checkpoint every N optimizer steps (and always at the end).")
    ] = 500
    keep_checkpoints: Annotated[int, Field(ge=1, le=100, description="Newest checkpoints kept per run.")] = 2
    eval_tokens: Annotated[
        int, Field(ge=0, description="Held-out tokens for validation bits-per-byte at the end of a run.")
    ] = 10_485_760
    core_max_per_task: Annotated[
        int | None,
        Field(
            ge=11,  # few-shot examples are drawn from the capped set, and CORE has 10-shot tasks
            description="Cap on CORE examples per task (omit for all); at least 11, as CORE's 10-shot tasks draw "
            "their shots from the capped examples.",
        ),
    ] = None
    core_allow_partial: Annotated[
        bool,
        Field(
            description="Score an eval bundle that lacks some of CORE's 22 tasks; the result is labeled partial "
            "and never shown as CORE. Without it a partial bundle fails the run before training starts."
        ),
    ] = False
    seed: Annotated[int, Field(ge=0, description="Random seed shared by every run.")] = 42
    precision: Annotated[
        Precision,
        Field(
            description="Matmul precision: auto (bf16 autocast on GPUs), bf16, fp32, or fp8 (torchao float8 "
            "training, Hopper/Ada GPUs only, compute capability >= 8.9; off by default: nanochat measured 1.17x "
            "tokens/s at d26 but only ~5% at equal capability, and a slowdown at d12)."
        ),
    ] = Precision.auto
    wsd: Annotated[
        WsdSpec | None, Field(description="Budgets and cooldown of wsd mode (required there, refused elsewhere).")
    ] = None
    forecast: Annotated[
        ForecastSpec, Field(description="Forecasts of runs in flight (may change while runs train).")
    ] = ForecastSpec()

    @field_validator("isoflop_budgets")
    @classmethod
    def _budgets_distinct(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"budgets must be distinct, got {v}")
        return v
