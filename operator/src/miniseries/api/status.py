"""The ScalingSweep's status: what the operator (and the local runner) report back.

`status.plan` is written before anything runs; `status.runs` and `status.totals` follow the
runs; `status.fit` holds the report's headline numbers. Conditions follow the Kubernetes
convention (metav1.Condition).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from miniseries.api.wire import WireModel


class Condition(WireModel):
    """A Kubernetes-convention condition (metav1.Condition)."""

    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str
    message: str = ""
    last_transition_time: str
    observed_generation: int | None = None


class RunState(StrEnum):
    Pending = "Pending"
    Running = "Running"
    Succeeded = "Succeeded"
    Failed = "Failed"
    Retrying = "Retrying"
    Suspended = "Suspended"
    # Under Kueue (spec.resources.queueName): the job waits for quota, is admitted and about to
    # start, or was evicted by a higher priority and waits to be admitted again (no attempt spent).
    Queued = "Queued"
    Admitted = "Admitted"
    #: Stopped from outside (the trainer exited EXIT_PREEMPTED after checkpointing on SIGTERM, or its
    #: job was suspended by someone else, e.g. Kueue): resumes from its checkpoint, no retry spent.
    Preempted = "Preempted"


class PlannedRun(WireModel):
    """One run of the plan: a depth (and, in isoflop mode, a budget)."""

    name: Annotated[str, Field(description="Run id, e.g. d12 or d12-f1e18.")]
    depth: int
    budget_flops: float | None = None
    n_layer: int
    n_embd: int
    n_head: int
    total_params: int
    embedding_params: int
    scaling_params: int
    target_tokens: int
    training_tokens: int
    tokens_per_param: float
    total_batch_tokens: int
    grad_accum_steps: int
    steps: int
    flops_per_token: int
    flops: float
    gpus: int
    gpu_slots: list[int]
    nodes: Annotated[int, Field(description="Nodes the run spans: 1, or gpusPerRun / nodeGpus whole nodes.")] = 1
    wave: int
    assumed_mfu: Annotated[
        float | None,
        Field(description="MFU behind estHours: resources.assumedMfu, or the per-depth table (contract/mfu.py)."),
    ] = None
    est_start_hours: float
    est_hours: float
    est_gpu_hours: float
    est_cost_usd: float
    # wsd mode (spec.training.wsd): a trunk, or a branch that cools down from the trunk's checkpoint
    role: Annotated[str | None, Field(description="wsd mode: trunk, branch or twin (an independent run).")] = None
    wsd_budget: Annotated[float | None, Field(description="wsd mode: the budget in tokens per scaling parameter.")] = (
        None
    )
    trunk: Annotated[str | None, Field(description="wsd mode: the trunk run a branch starts from.")] = None
    start_step: Annotated[
        int | None, Field(description="wsd mode: the trunk step a branch starts from (its cooldown start).")
    ] = None
    cooldown_steps: Annotated[int | None, Field(description="wsd mode: steps of (1-sqrt) cooldown at the end.")] = None
    keep_steps: Annotated[
        list[int] | None, Field(description="wsd mode: trunk steps checkpointed and kept for the branches.")
    ] = None


class PlanStatus(WireModel):
    runs: list[PlannedRun]
    scaling_params_convention: str
    total_flops: float
    total_gpu_hours: float
    total_cost_usd: float
    est_wall_hours: float
    max_runs_in_flight: int
    independent_gpu_hours: Annotated[
        float | None,
        Field(description="wsd mode: GPU-hours of the same (N, D) points trained as independent runs."),
    ] = None
    independent_cost_usd: Annotated[
        float | None, Field(description="wsd mode: cost of the same (N, D) points trained as independent runs.")
    ] = None

    nodes: Annotated[int, Field(description="Nodes the plan packs its runs onto (spec.resources.nodes).")] = 1
    # A sweep holds whole nodes (plan/node_use.py): totalCostUsd counts them, not only the runs' GPUs.
    node_gpu_hours: Annotated[
        float | None,
        Field(
            description="GPU-hours of whole nodes, each from its first run's start to its last run's end: what "
            "the sweep holds, and what totalCostUsd counts (totalGpuHours: what its runs use)."
        ),
    ] = None
    idle_gpu_hours: Annotated[float | None, Field(description="nodeGpuHours that no run uses.")] = None
    used_gpu_cost_usd: Annotated[
        float | None, Field(description="The cost of totalGpuHours alone (the runs' own GPUs).")
    ] = None
    idle_gpus_per_node: Annotated[
        list[int] | None, Field(description="Per node: the GPUs no run uses at the node's fullest moment.")
    ] = None
    idle_gpus: Annotated[
        str | None, Field(description="Why GPUs of a node idle, and the packing that would use them (none: unset).")
    ] = None


class RunForecast(WireModel):
    """Where a run in flight is heading: its final training loss and val bpb forecast from its
    loss curve so far (the annealing law of science/forecast.py), with 95% intervals, or why
    there is no number yet (`refused`). Compared with the sweep's trend (a power law of its
    finished runs' val bpb, else loss, over FLOPs) when it has one."""

    at_step: Annotated[int, Field(description="The last step of the loss curve the forecast saw.")]
    val_bpb: Annotated[float | None, Field(description="Forecast final validation bits per byte.")] = None
    val_bpb_low: float | None = None
    val_bpb_high: float | None = None
    final_loss: Annotated[float | None, Field(description="Forecast final training loss (nats/token).")] = None
    final_loss_low: float | None = None
    final_loss_high: float | None = None
    method: Annotated[
        str | None, Field(description="prior (exponents from finished runs), prior+own-C, or own (no finished run).")
    ] = None
    refused: Annotated[str | None, Field(description="Why there is no forecast yet (too few steps, ...).")] = None
    trend: Annotated[
        float | None,
        Field(description="The sweep's trend at this run's FLOPs (val bpb, else loss: see `metric`)."),
    ] = None
    metric: Annotated[str | None, Field(description="What the trend compares: valBpb or finalLoss.")] = None
    deviation: Annotated[float | None, Field(description="(forecast - trend) / trend.")] = None
    allowed: Annotated[
        float | None, Field(description="The largest |deviation| not flagged: the interval's half-width plus margins.")
    ] = None
    off_trend: Annotated[
        bool,
        Field(
            description="The forecast lies off the sweep's trend by more than allowed, or the loss curve has a "
            "non-finite loss (`refused` names the step)."
        ),
    ] = False


class RunStatus(WireModel):
    name: str
    depth: int
    budget_flops: float | None = None
    state: RunState = RunState.Pending
    job_name: str | None = None
    attempts: int = 0
    step: int = 0
    steps: int = 0
    tokens: int = 0
    loss: float | None = None
    val_bpb: float | None = None
    core: float | None = None
    gpu_seconds: float = 0.0
    cost_usd: float = 0.0
    checkpoint_uri: str | None = None
    results_uri: str | None = None
    message: str | None = None
    reason: Annotated[
        str | None,
        Field(description="Why the run last failed (job condition reason), or why Kueue holds it (workload reason)."),
    ] = None
    retry_at: Annotated[
        str | None, Field(description="RFC 3339 time before which a failed run is not retried (backoff).")
    ] = None
    forecast: Annotated[
        RunForecast | None, Field(description="The run's forecast final loss and val bpb (while it trains).")
    ] = None
    preemptions: Annotated[
        int,
        Field(
            description="Times the run was preempted (checkpointed and stopped from outside); not counted "
            "against retryLimit."
        ),
    ] = 0


class FitStatus(WireModel):
    """Headline numbers of the scaling-law fit (the full fit is in the report)."""

    params_exponent: float | None = Field(default=None, description="a in N_opt ~ C^a.")
    tokens_exponent: float | None = Field(default=None, description="b in D_opt ~ C^b.")
    tokens_per_param: float | None = None
    loss_exponent: float | None = None
    curves_cross: bool | None = None
    partial: bool = False
    runs_fitted: int = 0
    message: str | None = None
    rollout: Annotated[
        dict[str, float] | None,
        Field(
            description="Each law refitted without the largest-compute run(s), its error predicting them (loss "
            "laws relative, core in CORE points; extrapolation: the compute factor it implies). See the report."
        ),
    ] = None


class Totals(WireModel):
    runs: int = 0
    runs_done: int = 0
    runs_failed: int = 0
    tokens: int = 0
    gpu_hours: float = 0.0
    cost_usd: float = 0.0


class ScalingSweepStatus(WireModel):
    phase: str = "Pending"
    observed_generation: int | None = None
    conditions: list[Condition] = []  # noqa: RUF012 (a pydantic field: each instance gets a copy)
    plan: PlanStatus | None = None
    runs: list[RunStatus] = []  # noqa: RUF012 (a pydantic field)
    totals: Totals = Totals()
    progress: Annotated[str | None, Field(description="Runs done / total, for the printer column.")] = None
    cost: Annotated[str | None, Field(description="Cost so far in USD, for the printer column.")] = None
    plan_summary: Annotated[
        str | None, Field(description="Planned cost and wall time of the sweep, for the printer column.")
    ] = None
    best_core: float | None = None
    forecast_summary: Annotated[
        str | None,
        Field(
            description="The largest unfinished run's forecast val bpb and how many runs are off trend, "
            "for the printer column."
        ),
    ] = None
    fit: FitStatus | None = None
    report_uri: str | None = None
