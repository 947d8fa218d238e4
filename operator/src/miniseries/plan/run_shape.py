"""One run's shape, batch, hours and status fields from the spec: shared by every mode's planner
(`planner` for ratio and isoFLOP sweeps, `wsd_branches` for WSD trunks and branches), so neither
imports the other.
"""

from __future__ import annotations

from typing import Any

from miniseries.api.errors import SpecError
from miniseries.api.spec import ScalingSweepSpec
from miniseries.contract import shapes


def run_name(depth: int, budget_flops: float | None = None) -> str:
    """Run id used in job names and store paths: d12, or d12-f1e18 in isoflop mode."""
    if budget_flops is None:
        return f"d{depth}"
    mantissa, exponent = f"{budget_flops:.2e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".").replace(".", "p")
    return f"d{depth}-f{mantissa}e{int(exponent)}"


def shape_for(spec: ScalingSweepSpec, depth: int) -> shapes.ModelShape:
    m = spec.model
    return shapes.model_shape(
        depth,
        aspect_ratio=m.aspect_ratio,
        head_dim=m.head_dim,
        vocab_size=m.vocab_size,
        sequence_len=m.sequence_length,
    )


def reference_tokens(spec: ScalingSweepSpec) -> int:
    """The compute-optimal horizon of the d12 reference model, anchor of the batch rule."""
    return shapes.tokens_for_ratio(shape_for(spec, shapes.REFERENCE_DEPTH), spec.training.tokens_per_param)


def batch_tokens(spec: ScalingSweepSpec, target_tokens: int) -> int:
    t, r = spec.training, spec.resources
    micro = shapes.micro_batch_tokens(t.device_batch_size, spec.model.sequence_length, r.gpus_per_run)
    if t.total_batch_tokens is None:
        wanted = shapes.auto_total_batch_tokens(target_tokens, reference_tokens(spec))
        return shapes.fit_batch_to_micro_batch(wanted, micro)
    if t.total_batch_tokens % micro:
        raise SpecError.one(
            "spec.training.totalBatchTokens",
            f"{t.total_batch_tokens} is not a multiple of one micro-batch: deviceBatchSize "
            f"{t.device_batch_size} x sequenceLength {spec.model.sequence_length} x gpusPerRun "
            f"{r.gpus_per_run} = {micro} tokens; use a multiple of {micro} or omit it for automatic",
        )
    return t.total_batch_tokens


def run_hours(spec: ScalingSweepSpec, flops: float, depth: int, gpus: int) -> float:
    """Wall hours of `flops` training FLOPs of a depth-`depth` model on `gpus` GPUs, at the depth's MFU."""
    r = spec.resources
    return flops / (gpus * r.peak_flops_per_gpu * r.mfu_for(depth)) / 3600.0


def run_shape_fields(d: Any) -> dict[str, Any]:
    """A planned run's fields that its draft's shape and horizon fix (`d`: a draft of any mode with
    name, depth, shape, horizon and flops), the same for every mode's planner."""
    s, h = d.shape, d.horizon
    return {
        "name": d.name,
        "depth": d.depth,
        "n_layer": s.n_layer,
        "n_embd": s.n_embd,
        "n_head": s.n_head,
        "total_params": s.total_params,
        "embedding_params": s.embedding_params,
        "scaling_params": s.scaling_params,
        "target_tokens": h.target_tokens,
        "training_tokens": h.training_tokens,
        "tokens_per_param": h.training_tokens / s.scaling_params,
        "total_batch_tokens": h.total_batch_tokens,
        "grad_accum_steps": h.grad_accum_steps,
        "steps": h.steps,
        "flops_per_token": s.flops_per_token,
        "flops": d.flops,
    }


def assumed_mfu_fields(spec: ScalingSweepSpec, depth: int) -> dict[str, Any]:
    """The MFU behind a planned run's hours, for status.plan."""
    return {"assumed_mfu": spec.resources.mfu_for(depth)}
