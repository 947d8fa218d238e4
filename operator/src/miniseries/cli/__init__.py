"""`miniseries`: the command line of the control plane (no torch is imported here).

    miniseries plan SWEEP.yaml [--output table|json]   the plan, offline
    miniseries crd                                       the CRD YAML from api/spec.py

Other commands (run, status, report, fit, data, operator) register themselves
through `COMMANDS` from their own modules, so this file stays a router.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence

from miniseries.api.errors import SpecError
from miniseries.api.spec import PlannedRun, PlanStatus, ScalingSweep
from miniseries.api.sweepfile import load_sweep
from miniseries.cli import fmt
from miniseries.plan.planner import make_plan

# optional modules are skipped so that the router never depends on them.
COMMAND_MODULES = [
    "miniseries.cli.local_commands",
    "miniseries.cli.science_commands",
    "miniseries.cli.data_command",
    "miniseries.cli.serve",
    "miniseries.cli.store_command",
    "miniseries.cli.forecast_command",
    "miniseries.cli.trainer_command",
]


def slots_text(slots: list[int], node_gpus: int, nodes: int) -> str:
    """A run's GPUs: `0-7` on a one-node sweep; `n1:0-3` (node 1, its GPUs 0-3) or `n0,n2` (whole nodes)
    when the sweep has several."""
    if nodes <= 1:
        return f"{slots[0]}-{slots[-1]}"
    held = sorted({s // node_gpus for s in slots})
    if len(held) > 1:
        return ",".join(f"n{k}" for k in held)
    return f"n{held[0]}:{slots[0] % node_gpus}-{slots[-1] % node_gpus}"


#: The plan table's columns (a wsd sweep adds `role` and `from` after `run`: _plan_headers).
PLAN_COLUMNS = ["layers", "width", "heads", "params", "embed", "scaling", "tokens", "tok/param", "batch",
                "accum", "steps", "FLOPs", "GPUs", "nodes", "slots", "MFU", "start h", "hours", "GPU-h", "USD"]  # fmt: skip


def _plan_headers(wsd: bool) -> list[str]:
    return ["run", *(["role", "from"] if wsd else []), *PLAN_COLUMNS]


def _plan_row(r: PlannedRun, wsd: bool, node_gpus: int, nodes: int) -> list[str]:
    """One planned run's cells, in _plan_headers' order."""
    return [
        r.name,
        *([r.role or "", f"{r.trunk}@{r.start_step}" if r.trunk else ""] if wsd else []),
        str(r.n_layer),
        str(r.n_embd),
        str(r.n_head),
        fmt.si(r.total_params),
        fmt.si(r.embedding_params),
        fmt.si(r.scaling_params),
        fmt.si(r.training_tokens),
        f"{r.tokens_per_param:.2f}",
        fmt.si(r.total_batch_tokens),
        str(r.grad_accum_steps),
        f"{r.steps:,}",
        fmt.sci(r.flops),
        str(r.gpus),
        str(r.nodes),
        slots_text(r.gpu_slots, node_gpus, nodes),
        f"{r.assumed_mfu:.0%}" if r.assumed_mfu is not None else "",
        f"{r.est_start_hours:.2f}",
        f"{r.est_hours:.2f}",
        f"{r.est_gpu_hours:.1f}",
        f"{r.est_cost_usd:,.2f}",
    ]


def _plan_total(sweep: ScalingSweep, plan: PlanStatus) -> str:
    """The plan's total line: FLOPs, GPU-hours, cost, wall time and the MFU they assume."""
    spec, res = sweep.spec, sweep.spec.resources
    return (
        f"total: {fmt.sci(plan.total_flops)} FLOPs, {plan.total_gpu_hours:,.1f} GPU-hours, "
        f"${plan.total_cost_usd:,.2f} at ${spec.cost.price_per_gpu_hour}/GPU-hour{held_text(plan)}, "
        f"about {plan.est_wall_hours:.2f} h wall time "
        f"(assuming {f'{res.assumed_mfu:.0%} MFU' if res.assumed_mfu is not None else 'the MFU column'} of "
        f"{fmt.si(res.peak_flops_per_gpu)}FLOP/s per GPU"
        + ("" if res.assumed_mfu is not None else "; per depth: miniseries.contract.mfu, from nanochat's reported MFU")
        + ")"
    )


def plan_table(sweep: ScalingSweep, plan: PlanStatus) -> str:
    """`miniseries plan`'s text: the sweep's shape, one row per run, the totals and what is idle or capped."""
    spec = sweep.spec
    wsd = any(r.role for r in plan.runs)
    rows = [_plan_row(r, wsd, spec.resources.node_gpus, plan.nodes) for r in plan.runs]
    res = spec.resources
    cluster = (
        f"{res.nodes} nodes of {res.node_gpus}x{res.gpu_type}" if res.nodes > 1 else f"{res.node_gpus}x{res.gpu_type}"
    )
    per_run = f"{res.gpus_per_run} GPUs/run" + (f" over {res.nodes_per_run} nodes" if res.nodes_per_run > 1 else "")
    lines = [
        f"ScalingSweep {sweep.name}: {len(plan.runs)} runs, mode {spec.training.mode.value}, {cluster}, {per_run}, "
        f"{plan.max_runs_in_flight} in flight at most",
        f"params: scaling = {plan.scaling_params_convention}; tokens:params uses scaling params",
        "",
        fmt.table(_plan_headers(wsd), rows),
        "",
        _plan_total(sweep, plan),
    ]
    if plan.idle_gpus:
        per_node = ", ".join(f"n{k}: {idle}" for k, idle in enumerate(plan.idle_gpus_per_node or []))
        lines.append(f"idle GPUs per node ({per_node}): {plan.idle_gpus}")
    if plan.independent_gpu_hours is not None:
        lines.append(wsd_summary(plan))
    if spec.cost.budget_usd is not None:
        lines.append(f"budget cap: ${spec.cost.budget_usd:,.2f}")
    return "\n".join(lines)


def held_text(plan: PlanStatus) -> str:
    """When nodes idle part of the time: the cost counts them whole; say what the runs alone would be."""
    if not plan.idle_gpu_hours or plan.node_gpu_hours is None:
        return ""
    return (
        f" for whole nodes ({plan.node_gpu_hours:,.1f} GPU-hours held, {plan.idle_gpu_hours:,.1f} of them idle; "
        f"the runs' own GPUs: ${plan.used_gpu_cost_usd or 0:,.2f})"
    )


def wsd_summary(plan: PlanStatus) -> str:
    """wsd mode: the trunks and branches against the same points trained as independent runs."""
    trunks = [r for r in plan.runs if r.role == "trunk"]
    branches = [r for r in plan.runs if r.role == "branch"]
    twins = [r for r in plan.runs if r.role == "twin"]
    wsd_hours = sum(r.est_gpu_hours for r in trunks + branches)
    wsd_usd = sum(r.est_cost_usd for r in trunks + branches)
    ind_hours, ind_usd = plan.independent_gpu_hours or 0.0, plan.independent_cost_usd or 0.0
    saving = 1 - wsd_hours / ind_hours if ind_hours else 0.0
    twin_hours = sum(r.est_gpu_hours for r in twins)
    return (
        f"wsd: {len(trunks)} trunks + {len(branches)} branches = {len(branches)} (N, D) points for "
        f"{wsd_hours:,.2f} GPU-hours (${wsd_usd:,.2f}); as independent runs {ind_hours:,.2f} GPU-hours "
        f"(${ind_usd:,.2f}): {saving:.0%} saved"
        + (f"; {len(twins)} validation twins add {twin_hours:,.2f} GPU-hours" if twins else "")
    )


def cmd_plan(args: argparse.Namespace) -> int:
    sweep = load_sweep(args.sweep)
    plan = make_plan(sweep.spec, max_gpu_hours_without_budget=args.max_gpu_hours_without_budget)
    if args.output == "json":
        print(json.dumps({"sweep": sweep.name, "plan": plan.wire()}, indent=2))
    else:
        print(plan_table(sweep, plan))
    return 0


def cmd_crd(args: argparse.Namespace) -> int:
    from miniseries.api.crd import crd_yaml

    sys.stdout.write(crd_yaml())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="miniseries", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("plan", help="print the plan of a sweep (no cluster, no torch)")
    p.add_argument("sweep", help="ScalingSweep YAML file")
    p.add_argument("--output", "-o", choices=["table", "json"], default="table")
    p.add_argument("--max-gpu-hours-without-budget", type=float, default=None, metavar="HOURS",
                   help="the operator's ceiling for sweeps without spec.cost.budgetUsd "
                   "(default $MINISERIES_MAX_GPU_HOURS_WITHOUT_BUDGET or 1000, as the operator's)")  # fmt: skip
    p.set_defaults(func=cmd_plan)
    p = sub.add_parser("crd", help="print the ScalingSweep CRD YAML generated from the API models")
    p.set_defaults(func=cmd_crd)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:
                continue
            raise
        register: Callable[[argparse._SubParsersAction], None] = module.register  # type: ignore[type-arg]
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SpecError as e:
        print(f"error: invalid sweep {getattr(args, 'sweep', '')}:".rstrip(":") + ":", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
