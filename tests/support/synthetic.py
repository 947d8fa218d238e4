"""A sweep whose runs obey a known law, written through the real results schema.

Used to check that the report's fits recover the law before real runs exist.
Only what a finished trainer writes is produced: results.json and loss_curve.jsonl.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from miniseries.api.spec import ScalingSweepSpec
from miniseries.contract import shapes
from miniseries.contract.layout import LOCAL_NAMESPACE, SweepLayout
from miniseries.contract.results import CoreResult, LossSummary, RunResults
from miniseries.contract.store import Store
from miniseries.plan.planner import make_plan
from miniseries.plan.run_shape import shape_for

LAW = {"E": 1.9, "A": 400.0, "B": 1200.0, "alpha": 0.33, "beta": 0.33}


def law_loss(n: float, d: float, law: dict[str, float] = LAW) -> float:
    return law["E"] + law["A"] / n ** law["alpha"] + law["B"] / d ** law["beta"]


def spec_from(obj: dict[str, Any]) -> ScalingSweepSpec:
    base: dict[str, Any] = {
        "model": {"aspectRatio": 32, "headDim": 32, "vocabSize": 2048, "sequenceLength": 256},
        "training": {
            "mode": "ratio",
            "tokensPerParam": 8,
            "totalBatchTokens": 8192,
            "deviceBatchSize": 32,
            "warmupSteps": 5,
        },
        "resources": {"gpusPerRun": 1, "nodeGpus": 1, "peakFlopsPerGpu": 2e11, "assumedMfu": 0.2},
        "cost": {"pricePerGpuHour": 1.0},
        "store": {"uri": "file:///tmp/unused"},
        "data": {"shardsUri": "file:///tmp/unused"},
    }
    for k, v in obj.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and k in base else v
    return ScalingSweepSpec.model_validate(base)


def write_sweep(
    store: Store,
    sweep: str,
    spec: ScalingSweepSpec,
    *,
    noise: float = 0.002,
    core: tuple[float, float] | None = (-1.2, 0.09),  # CORE = c0 + c1 * log10(C)
    skip: tuple[str, ...] = (),
    nan_loss: tuple[str, ...] = (),
    seed: int = 0,
    law: dict[str, float] = LAW,
) -> None:
    rng = np.random.default_rng(seed)
    layout = SweepLayout(LOCAL_NAMESPACE, sweep)  # the local runner's namespace: what `miniseries report` reads
    for run in make_plan(spec).runs:
        if run.name in skip:
            continue
        shape = shape_for(spec, run.depth)
        n, d = float(run.scaling_params), float(run.training_tokens)
        final = law_loss(n, d, law) * math.exp(rng.normal(0, noise))
        if run.name in nan_loss:
            final = float("nan")
        curve = []
        for step in range(1, run.steps + 1, max(1, run.steps // 60)):
            t = step * run.total_batch_tokens
            curve.append({"step": step, "tokens": t, "flops": t * shape.flops_per_token, "loss": law_loss(n, t, law)})
        rl = layout.run(run.name)
        store.write_bytes(rl.loss_curve, "\n".join(json.dumps(p) for p in curve).encode())
        core_result = None
        if core is not None:
            score = core[0] + core[1] * math.log10(run.flops) + rng.normal(0, 0.002)
            core_result = CoreResult(core=score, tasks=[], bundle_hash="synthetic")
        res = RunResults(
            sweep=sweep,
            run=run.name,
            depth=run.depth,
            budget_flops=run.budget_flops,
            shape={"n_layer": shape.n_layer, "n_embd": shape.n_embd, "n_head": shape.n_head},
            params=shape.param_counts(),
            target_tokens=run.target_tokens,
            tokens=run.training_tokens,
            steps=run.steps,
            total_batch_tokens=run.total_batch_tokens,
            flops_per_token=shape.flops_per_token,
            flops=run.flops,
            wall_seconds=10.0,
            gpu_seconds=10.0,
            world_size=1,
            device="cpu",
            mfu=0.1,
            tokens_per_second=0.1 * spec.resources.peak_flops_per_gpu / shape.flops_per_token,  # 10% MFU
            loss=LossSummary(first=10.0, final=final, min=final, points=len(curve)),
            val_bpb=final / math.log(2) / 4.0,
            core=core_result,
        )
        store.write_bytes(rl.results, res.to_json())


__all__ = ["LAW", "law_loss", "shapes", "spec_from", "write_sweep"]
