"""CORE's arithmetic (miniseries.contract.core), torch-free: published GPT-2 results re-score to their CORE."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from miniseries.contract.core import (
    CORE_TASKS,
    DCLM_V1_RANDOM_BASELINES,
    CoreError,
    TaskAccuracy,
    centered_accuracy,
    parse_baselines,
    parse_core_yaml,
    read_accuracy_csv,
    read_bundle_spec,
    score_tasks,
)
from miniseries.contract.store import open_store
from tests.support.core_bundle import REFERENCE_BUNDLE, copy_bundle

needs_bundle = pytest.mark.skipif(REFERENCE_BUNDLE is None, reason="shared/data/eval_bundle not present")
#: nanochat's published CORE of the four GPT-2 sizes (shared/data/README.md)
PUBLISHED = {
    "openai-community-gpt2.csv": 0.113891,
    "openai-community-gpt2-medium.csv": 0.184903,
    "openai-community-gpt2-large.csv": 0.214641,
    "openai-community-gpt2-xl.csv": 0.256525,
}


@needs_bundle
@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_gpt2_reference_csvs_rescore_to_their_published_core(name: str) -> None:
    assert REFERENCE_BUNDLE is not None
    path = REFERENCE_BUNDLE / "reference" / name
    result = score_tasks(read_accuracy_csv(path.read_text(), str(path)), DCLM_V1_RANDOM_BASELINES)
    assert result.core is not None and not result.partial
    # the CSV's accuracies carry 6 decimals, so its CORE (also rounded to 6) agrees to 1e-6
    assert abs(result.core - PUBLISHED[name]) < 1e-6, result.core
    assert [t.task for t in result.tasks] == list(CORE_TASKS)


@needs_bundle
def test_builtin_baselines_are_the_bundles_dclm_v1_file() -> None:
    assert REFERENCE_BUNDLE is not None
    spec = read_bundle_spec(open_store(REFERENCE_BUNDLE.as_uri()))
    assert {t: spec.baselines[t] for t in CORE_TASKS} == DCLM_V1_RANDOM_BASELINES
    assert [t.label for t in spec.tasks] == list(CORE_TASKS)
    arc = next(t for t in spec.tasks if t.label == "arc_easy")
    assert (arc.task_type, arc.num_fewshot, arc.continuation_delimiter) == ("multiple_choice", 10, "\nAnswer: ")
    copa = next(t for t in spec.tasks if t.label == "copa")
    assert (copa.num_fewshot, copa.continuation_delimiter) == (0, " ")  # DCLM's default delimiter


def test_centered_accuracy_is_zero_at_chance_and_one_at_perfect() -> None:
    assert centered_accuracy(0.25, 25.0) == 0.0
    assert centered_accuracy(1.0, 62.0) == pytest.approx(1.0)
    assert centered_accuracy(0.4, 0.0) == 0.4
    assert centered_accuracy(0.5522, 62.0) == pytest.approx((0.5522 - 0.62) / 0.38)


def test_missing_tasks_are_an_error_naming_them_and_partial_is_never_core() -> None:
    accs = [TaskAccuracy(t, 0.5, 10) for t in CORE_TASKS if t not in ("squad", "coqa")]
    with pytest.raises(CoreError, match=r"lacks 2 of the 22 CORE tasks: squad, coqa"):
        score_tasks(accs, DCLM_V1_RANDOM_BASELINES)
    partial = score_tasks(accs, DCLM_V1_RANDOM_BASELINES, allow_partial=True)
    assert partial.partial and partial.core is None
    assert partial.missing_tasks == ["squad", "coqa"]
    assert len(partial.tasks) == 20


def test_tasks_outside_core_are_reported_but_not_counted() -> None:
    accs = [TaskAccuracy(t, 1.0, 10) for t in CORE_TASKS] + [TaskAccuracy("mmlu_zeroshot", 0.25, 10)]
    result = score_tasks(accs, DCLM_V1_RANDOM_BASELINES | {"mmlu_zeroshot": 25.0})
    assert result.core == pytest.approx(1.0)
    assert result.tasks[-1].task == "mmlu_zeroshot" and result.tasks[-1].centered == 0.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("Name, Score\njeopardy, 0.1\n", "line 1: expected the header"),
        ("Task, Accuracy, Centered\njeopardy, high, 0.1\n", "line 2: accuracy of 'jeopardy' must be a number"),
        ("Task, Accuracy, Centered\njeopardy, 0.1, 0.1\njeopardy, 0.2, 0.2\n", "line 3: task 'jeopardy' appears twice"),
    ],
)
def test_bad_accuracy_csv_names_file_and_line(text: str, message: str) -> None:
    with pytest.raises(CoreError, match=message) as e:
        read_accuracy_csv(text, "scores.csv")
    assert "scores.csv" in str(e.value)


def test_accuracy_out_of_range_and_unknown_task_are_errors() -> None:
    with pytest.raises(CoreError, match=r"accuracy of 'copa' must be in \[0, 1\], got 1.5"):
        score_tasks([TaskAccuracy("copa", 1.5, 1)], DCLM_V1_RANDOM_BASELINES, allow_partial=True)
    with pytest.raises(CoreError, match="no random baseline for task 'nope'"):
        score_tasks([TaskAccuracy("nope", 0.5, 1)], DCLM_V1_RANDOM_BASELINES, allow_partial=True)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("icl_tasks: 3", "non-empty list `icl_tasks`"),
        ("icl_tasks:\n- label: a\n  dataset_uri: x/a.jsonl\n  num_fewshot: [0]\n  icl_task_type: essay\n", "essay"),
        (
            "icl_tasks:\n- label: a\n  dataset_uri: ../a.jsonl\n  num_fewshot: [0]\n  icl_task_type: schema\n",
            "relative",
        ),
        (
            "icl_tasks:\n- label: a\n  dataset_uri: x/a.jsonl\n  num_fewshot: 3\n  icl_task_type: schema\n",
            "num_fewshot",
        ),
        ("icl_tasks: [\n", "not valid YAML"),
    ],
)
def test_bad_core_yaml_names_the_entry_and_what_is_allowed(text: str, message: str) -> None:
    with pytest.raises(CoreError, match=message):
        parse_core_yaml(text, "b/core.yaml")


def test_bad_baselines_csv() -> None:
    with pytest.raises(CoreError, match="columns 'Eval Task' and 'Random baseline'"):
        parse_baselines("Task,Baseline\ncopa,50\n", "meta.csv")
    with pytest.raises(CoreError, match="line 2: 'Random baseline' of 'copa' must be a number"):
        parse_baselines("Eval Task,Random baseline\ncopa,half\n", "meta.csv")


@needs_bundle
def test_bundle_without_core_yaml_is_a_clear_error(tmp_path: Path) -> None:
    bundle = copy_bundle(tmp_path / "b")
    (bundle / "core.yaml").unlink()
    with pytest.raises(CoreError, match=r"has no core.yaml; a bundle holds core.yaml, eval_meta_data.csv"):
        read_bundle_spec(open_store(bundle.as_uri()))
    rows = list(csv.reader((REFERENCE_BUNDLE / "eval_meta_data.csv").open()))  # type: ignore[operator]
    assert rows[0][:6] == ["Eval Task", "Task Category", "Task Type", "#shots", "#datapoints", "Random baseline"]
