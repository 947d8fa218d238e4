"""The trainer evaluates CORE at the end of a run through core_eval, and checks the bundle up front."""

from __future__ import annotations

from pathlib import Path

import pytest

from miniseries.contract.core import CORE_TASKS
from miniseries.contract.layout import LOCAL_NAMESPACE, RunLayout
from miniseries.contract.results import RunResults
from tests.support.core_bundle import REFERENCE_BUNDLE, STAND_INS, complete_bundle
from tests.support.tiny_training import Corpus, train_argv

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.torch,
    pytest.mark.skipif(REFERENCE_BUNDLE is None, reason="shared/data/eval_bundle not present"),
]
RUN = RunLayout(LOCAL_NAMESPACE, "t", "d1")  # the trainer's default --namespace


def test_run_ends_with_core_in_results_json(corpus: Corpus, tmp_path: Path) -> None:
    from miniseries_trainer.train import main

    bundle = complete_bundle(tmp_path / "bundle").as_uri()  # the six missing tasks as stand-ins
    argv = train_argv(corpus, tmp_path / "store", target_tokens=512 * 4, eval_bundle=bundle, core_max_per_task=11)
    assert main(argv) == 0
    res = RunResults.from_json((tmp_path / "store" / RUN.results).read_text())
    assert res.core is not None and res.core.core is not None and not res.core.partial
    assert [t.task for t in res.core.tasks] == list(CORE_TASKS)
    assert all(t.examples == 11 and 0.0 <= t.accuracy <= 1.0 for t in res.core.tasks)
    assert res.core.bundle_hash and len(res.core.bundle_hash) == 64


def test_partial_bundle_fails_before_training_unless_partial_is_allowed(
    corpus: Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from miniseries_trainer.train import main

    assert REFERENCE_BUNDLE is not None
    argv = train_argv(
        corpus, tmp_path / "store", target_tokens=512 * 4, eval_bundle=REFERENCE_BUNDLE.as_uri(), core_max_per_task=11
    )
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--eval-bundle: eval bundle" in err and "lacks 6 of the 22 CORE tasks" in err
    assert all(task in err for task in STAND_INS)
    assert not (tmp_path / "store" / RUN.checkpoints).exists()  # nothing was trained

    assert main([*argv, "--core-allow-partial"]) == 0
    res = RunResults.from_json((tmp_path / "store" / RUN.results).read_text())
    assert res.core is not None and res.core.partial and res.core.core is None
    assert sorted(res.core.missing_tasks) == sorted(STAND_INS) and len(res.core.tasks) == 16
