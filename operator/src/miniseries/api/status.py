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
    est_start_hours: float
    est_hours: float
    est_gpu_hours: float
    est_cost_usd: float


class PlanStatus(WireModel):
    runs: list[PlannedRun]
    scaling_params_convention: str
    total_flops: float
    total_gpu_hours: float
    total_cost_usd: float
    est_wall_hours: float
    max_runs_in_flight: int
    nodes: Annotated[int, Field(description="Nodes the plan packs its runs onto (spec.resources.nodes).")] = 1


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
    reason: Annotated[str | None, Field(description="Why the run last failed (job condition reason).")] = None
    retry_at: Annotated[
        str | None, Field(description="RFC 3339 time before which a failed run is not retried (backoff).")
    ] = None


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
    fit: FitStatus | None = None
    report_uri: str | None = None
