"""Two teams, one sweep name (issue 28 item 9): the shipped example's `miniseries` in namespaces team-a
and team-b, scraped by a real Prometheus the way the chart's monitors do (each target labelled with the
scraped pod's `namespace`), and every dashboard panel, for either namespace, shows only its own.

The trainers are real tiny CPU runs (one per team, different depths, so whose series is whose shows in
the labels); the operator's series come from its own exporter (control/io/operator_metrics.py, filled by
act.export_metrics and the reconcile counters handlers.py keeps), served from this process."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from miniseries.api.spec import RunState
from miniseries.api.status import RunStatus, ScalingSweepStatus, Totals
from tests.harness.processes import free_port
from tests.harness.prometheus import prometheus
from tests.harness.promql import query_range, substitute, wait_for_samples
from tests.support.dashboards import gen
from tests.support.tiny_training import Corpus, train_argv

pytestmark = [pytest.mark.prometheus, pytest.mark.torch, pytest.mark.safety]

SWEEP = "miniseries"
TEAMS = {  # namespace -> (run, depth, runs by state, cost)
    "team-a": ("d1", "1", {RunState.Succeeded: 1, RunState.Running: 1}, 12.5),
    "team-b": ("d2", "2", {RunState.Succeeded: 3, RunState.Failed: 1, RunState.Running: 1}, 480.0),
}
OPERATOR_NS = "miniseries-system"


def _operator_metrics(port: int) -> None:
    from miniseries.control.io import act
    from miniseries.control.io import operator_metrics as opmetrics

    for ns, (_, _, states, cost) in TEAMS.items():
        runs = [RunStatus(name=f"r{i}-{s.value}", depth=4, state=s) for s, n in states.items() for i in range(n)]
        act.export_metrics(ns, SWEEP, ScalingSweepStatus(runs=runs, totals=Totals(runs=len(runs), cost_usd=cost)))
        labels = {"sweep": SWEEP, opmetrics.NAMESPACE_LABEL: ns}
        opmetrics.RECONCILES.labels(**labels).inc(len(runs))
        opmetrics.ERRORS.labels(**labels)
        opmetrics.DURATION.labels(**labels).observe(0.05)
        opmetrics.JOBS_CREATED.labels(**labels).inc(len(runs))
    opmetrics.serve(port)


def _labels(result: list[Any], name: str) -> set[str]:
    return {s["metric"][name] for s in result if name in s["metric"]}


def _last(result: list[Any]) -> float:
    (series,) = result
    return float(series["values"][-1][1])


def test_each_panel_shows_only_its_own_namespaces_sweep(corpus: Corpus, tmp_path: Path) -> None:
    from miniseries_trainer.train import main

    ports = {ns: free_port() for ns in TEAMS}
    operator_port = free_port()
    with prometheus(tmp_path / "prometheus") as prom:
        start = time.time() - 2
        for ns, (run, depth, _, _) in TEAMS.items():
            prom.scrape("trainer", f"127.0.0.1:{ports[ns]}", labels={"namespace": ns})
            argv = train_argv(corpus, tmp_path / ns, namespace=ns, sweep=SWEEP, run=run, depth=int(depth),
                              metrics_port=ports[ns], target_tokens=512 * 6, eval_tokens=2048)  # fmt: skip
            assert main(argv) == 0  # its exporter keeps serving the final values, as a pod's does
        _operator_metrics(operator_port)
        prom.scrape("operator", f"127.0.0.1:{operator_port}", labels={"namespace": OPERATOR_NS})
        prom.wait_up("trainer")
        prom.wait_up("operator")
        for ns in TEAMS:
            assert wait_for_samples(prom.url, f'miniseries_val_bpb{{sweep_namespace="{ns}"}}', start)
            assert wait_for_samples(prom.url, f'miniseries_sweep_cost_usd{{sweep_namespace="{ns}"}}', start)
        time.sleep(3)  # rate() needs two samples

        # the operator's label survives the scrape; the target's namespace is the operator's own
        cost = query_range(prom.url, 'miniseries_sweep_cost_usd{sweep_namespace="team-a"}', start)
        assert cost and all(s["metric"]["namespace"] == OPERATOR_NS for s in cost), cost
        assert not any("exported_namespace" in s["metric"] for s in cost), cost

        empty, mixed = [], []
        for name, build in gen.DASHBOARDS.items():
            for title, expr in gen.targets_of(build()):
                if "miniseries_core_score" in expr or "miniseries_run_forecast" in expr:
                    continue  # no CORE without an eval bundle; no forecasts in this status
                for ns, (run, _, _, _) in TEAMS.items():
                    other_run, other_depth = next((r, d) for n, (r, d, _, _) in TEAMS.items() if n != ns)
                    got = query_range(prom.url, substitute(expr, namespace=ns, sweep=SWEEP, run=run), start)
                    if not got:
                        empty.append(f"{name} / {title} [{ns}]: {expr}")
                    if other_run in _labels(got, "run") or other_depth in _labels(got, "depth"):
                        mixed.append(f"{name} / {title} [{ns}]: {got}")
                    if _labels(got, "sweep_namespace") - {ns}:
                        mixed.append(f"{name} / {title} [{ns}]: {got}")
        assert empty == [], "panels without data:\n" + "\n".join(empty)
        assert mixed == [], "panels showing another namespace's sweep:\n" + "\n".join(mixed)

        # the sums a shared sweep name would merge: each namespace's own numbers
        board = dict(gen.targets_of(gen.sweep_overview()))
        for ns, (run, _, states, cost_usd) in TEAMS.items():
            at = {"namespace": ns, "sweep": SWEEP, "run": run}
            assert _last(query_range(prom.url, substitute(board["Cost so far"], **at), start)) == cost_usd
            assert _last(query_range(prom.url, substitute(board["Runs total"], **at), start)) == sum(states.values())
            done = states.get(RunState.Succeeded, 0)
            assert _last(query_range(prom.url, substitute(board["Runs done"], **at), start)) == done
            tokens = _last(query_range(prom.url, substitute(board["Tokens trained"], **at), start))
            assert tokens == 512 * 6  # one run's, not both teams'
