"""What a plan does with the nodes it holds: the GPUs it leaves idle, and what the nodes cost.

A run holds `gpusPerRun` GPUs, but a sweep holds whole nodes: `gpusPerRun: 3` on 8-GPU nodes
packs 2 runs per node and 2 GPUs of each node idle while the sweep runs, and nobody else is
scheduled onto a node a training sweep has rented. So the plan's cost counts every GPU of each
node from the first run that starts on it until the last one there ends (the node's span), not
only the GPUs the runs use; and it says how many GPUs idle on each node at its fullest moment,
why, and the packing that would use them.

Pure: planned runs (their GPU slots, start and hours) in, numbers and one sentence out.
"""

from __future__ import annotations

from dataclasses import dataclass

from miniseries.api.spec import PlannedRun, ScalingSweepSpec


@dataclass(frozen=True)
class NodeUse:
    #: GPU-hours of the nodes the runs use, each for its whole span: what the sweep rents.
    held_gpu_hours: float
    #: Of those, the GPU-hours no run uses.
    idle_gpu_hours: float
    #: Per node (of spec.resources.nodes): its GPUs no run uses at the node's fullest moment.
    idle_gpus_per_node: list[int]
    #: Why GPUs idle and the packing that would use them; None when none idles.
    note: str | None


def _spans_and_peaks(runs: list[PlannedRun], node_gpus: int, nodes: int) -> tuple[list[float], list[int]]:
    """Per node: hours from its first run's start to its last run's end, and the most GPUs in use at once."""
    first: list[float | None] = [None] * nodes
    last = [0.0] * nodes
    changes: list[list[tuple[float, int]]] = [[] for _ in range(nodes)]  # (time, GPUs +/-)
    for r in runs:
        end = r.est_start_hours + r.est_hours
        per_node: dict[int, int] = {}
        for slot in r.gpu_slots:
            per_node[slot // node_gpus] = per_node.get(slot // node_gpus, 0) + 1
        for k, gpus in per_node.items():
            start = first[k]
            first[k] = r.est_start_hours if start is None else min(start, r.est_start_hours)
            last[k] = max(last[k], end)
            changes[k] += [(r.est_start_hours, gpus), (end, -gpus)]
    spans = [last[k] - s if (s := first[k]) is not None else 0.0 for k in range(nodes)]
    peaks = []
    for events in changes:
        used = peak = 0
        for _, delta in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at the same time
            used += delta
            peak = max(peak, used)
        peaks.append(peak)
    return spans, peaks


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _why(spec: ScalingSweepSpec, runs: list[PlannedRun], idle: list[int]) -> str:
    r = spec.resources
    g, n, k = r.gpus_per_run, r.node_gpus, r.nodes
    most = max(idle)
    fit = k * (n // g) if g <= n else k // r.nodes_per_run
    if r.parallelism is not None and r.parallelism < fit and len(runs) > r.parallelism:
        return (
            f"parallelism {r.parallelism} runs at most {r.parallelism * g} of the {k * n} GPUs at once and leaves "
            f"up to {most} GPUs of a node idle while the sweep holds it; parallelism {min(fit, len(runs))} would "
            "use them" + (f" (or gpusPerRun {n // r.parallelism})" if k == 1 and n % r.parallelism == 0 else "")
        )
    if g < n and n % g:
        lower = max(d for d in _divisors(n) if d < g)
        upper = min(d for d in _divisors(n) if d > g)
        return (
            f"gpusPerRun {g} packs {n // g} runs onto each node of {n} GPUs and leaves {n % g} of its GPUs idle "
            f"while the sweep holds it; gpusPerRun {upper} ({n // upper} runs per node) or {lower} "
            f"({n // lower} runs per node) would use them all"
        )
    if g > n and k % r.nodes_per_run:
        return (
            f"runs of {g} GPUs span {r.nodes_per_run} whole nodes, so {k % r.nodes_per_run} of the {k} nodes never "
            f"get a run; nodes {k - k % r.nodes_per_run} would leave none idle"
        )
    return (
        f"the sweep has {len(runs)} runs of {g} GPUs for {k * n} GPUs ({k} x {n}), so up to {most} GPUs of a node "
        f"idle; more runs (depths), a larger gpusPerRun or a smaller nodeGpus would use them"
    )


def node_use(spec: ScalingSweepSpec, runs: list[PlannedRun]) -> NodeUse:
    r = spec.resources
    spans, peaks = _spans_and_peaks(runs, r.node_gpus, r.nodes)
    held = sum(spans) * r.node_gpus
    used = sum(run.est_gpu_hours for run in runs)
    if held - used <= 1e-9 * max(used, 1.0):  # the same hours summed in another order: no idle hour
        held = used
    idle = [r.node_gpus - p for p in peaks]
    return NodeUse(
        held_gpu_hours=held,
        idle_gpu_hours=held - used,
        idle_gpus_per_node=idle,
        note=_why(spec, runs, idle) if any(idle) else None,
    )
