"""A real Prometheus scrapes a real tiny CPU training run; every dashboard panel that
reads trainer metrics returns data, and every metric the trainer declares is scraped."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

from miniseries.contract.layout import LOCAL_NAMESPACE
from miniseries_trainer.metrics import METRICS
from tests.harness.processes import free_port
from tests.harness.prometheus import prometheus
from tests.harness.promql import series_names, wait_for_panels, wait_for_samples
from tests.support.core_bundle import REFERENCE_BUNDLE, complete_bundle
from tests.support.dashboards import gen
from tests.support.tiny_training import Corpus, train_argv

pytestmark = [pytest.mark.prometheus, pytest.mark.torch]

TRAINER_METRICS = {m.name for m in METRICS}
HAS_CORE = importlib.util.find_spec("miniseries_trainer.core_eval") is not None and REFERENCE_BUNDLE is not None


def trainer_panels() -> list[tuple[str, str, str]]:
    """(dashboard, panel, expr) for every query that reads only trainer metrics."""
    out = []
    for name, build in gen.DASHBOARDS.items():
        for title, expr in gen.targets_of(build()):
            used = gen.metrics_used(expr)
            if used <= TRAINER_METRICS and (HAS_CORE or "miniseries_core_score" not in used):
                out.append((name, title, expr))
    return out


def test_every_trainer_panel_has_data_from_a_real_scrape(corpus: Corpus, tmp_path: Path) -> None:
    from miniseries_trainer.train import main

    port = free_port()
    # CORE needs all 22 tasks to be exported as a score: the reference's 6 missing ones as stand-ins
    extra = {"eval_bundle": complete_bundle(tmp_path / "bundle").as_uri(), "core_max_per_task": 11} if HAS_CORE else {}
    with prometheus(tmp_path / "prometheus") as prom:
        start = time.time() - 2
        prom.scrape("trainer", f"127.0.0.1:{port}")
        # The exporter is a daemon thread of this process: it keeps serving the final values
        # (val_bpb, CORE) after main() returns, as a pod's does until it exits.
        argv = train_argv(corpus, tmp_path / "store", sweep="tiny", run="d1", metrics_port=port,
                          target_tokens=512 * 12, eval_tokens=2048, **extra)  # fmt: skip
        assert main(argv) == 0
        prom.wait_up("trainer")
        assert wait_for_samples(prom.url, 'miniseries_val_bpb{sweep="tiny", run="d1"}', start)
        # rate() over the FLOPs counter needs two samples: wait until each panel has its data
        wait_for_panels(prom.url, trainer_panels(), start, namespace=LOCAL_NAMESPACE, sweep="tiny", run="d1")
        scraped = series_names(prom.url)
        expected = TRAINER_METRICS if HAS_CORE else TRAINER_METRICS - {"miniseries_core_score"}
        assert expected - scraped == set(), "declared but never scraped"
    assert len(trainer_panels()) >= 20


if not HAS_CORE:  # say so when the CORE panels could not be checked, rather than pass quietly

    def test_core_panels_need_the_reference_eval_bundle() -> None:
        pytest.skip("no reference eval bundle (../shared/data/eval_bundle): the CORE panels are unchecked")
