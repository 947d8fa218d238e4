"""CORE (DCLM, Li et al. 2024, arXiv:2406.11794) as scoring arithmetic: torch-free.

CORE is the mean over 22 in-context tasks of the *centered* accuracy

    centered = (accuracy - b/100) / (1 - b/100)        b = the task's random baseline in percent

so 0 is chance and 1 is perfect on every task. This module knows the 22 tasks, reads an
eval bundle's settings (`core.yaml`, `eval_meta_data.csv`) and turns per-task accuracies into
a `CoreResult`; `miniseries_trainer.core_eval` measures the accuracies. The trainer's
evaluation and its `--score-csv` re-scorer both score through `score_tasks`, so there is one
definition of CORE in the code base; the report never scores, it reads the `CoreResult` the
trainer wrote into results.json.

A score over fewer than the 22 tasks is not CORE: `score_tasks` refuses it unless asked for a
partial result, which keeps its per-task numbers, lists what is missing and has `core=None`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from miniseries.contract.results import CoreResult, TaskScore
from miniseries.contract.store import Store, StoreError

#: The 22 CORE tasks, in the order of DCLM's / nanochat's core.yaml.
CORE_TASKS = (
    "hellaswag_zeroshot",
    "jeopardy",
    "bigbench_qa_wikidata",
    "arc_easy",
    "arc_challenge",
    "copa",
    "commonsense_qa",
    "piqa",
    "openbook_qa",
    "lambada_openai",
    "hellaswag",
    "winograd",
    "winogrande",
    "bigbench_dyck_languages",
    "agi_eval_lsat_ar",
    "bigbench_cs_algorithms",
    "bigbench_operators",
    "bigbench_repeat_copy_logic",
    "squad",
    "coqa",
    "boolq",
    "bigbench_language_identification",
)

#: Random baselines (percent) of the 22 tasks from DCLM's eval_meta_data_v1.csv, the file nanochat
#: uses; a bundle brings its own copy, these score a bare accuracy CSV (`--score-csv`). A unit test
#: checks them against the reference bundle.
DCLM_V1_RANDOM_BASELINES: dict[str, float] = {
    "hellaswag_zeroshot": 25.0,
    "jeopardy": 0.0,
    "bigbench_qa_wikidata": 0.0,
    "arc_easy": 25.0,
    "arc_challenge": 25.0,
    "copa": 50.0,
    "commonsense_qa": 20.0,
    "piqa": 50.0,
    "openbook_qa": 25.0,
    "lambada_openai": 0.0,
    "hellaswag": 25.0,
    "winograd": 50.0,
    "winogrande": 50.0,
    "bigbench_dyck_languages": 0.0,
    "agi_eval_lsat_ar": 20.0,
    "bigbench_cs_algorithms": 0.0,
    "bigbench_operators": 0.0,
    "bigbench_repeat_copy_logic": 0.0,
    "squad": 0.0,
    "coqa": 0.0,
    "boolq": 62.0,
    "bigbench_language_identification": 9.1,
}

TASK_TYPES = ("multiple_choice", "schema", "language_modeling")
BUNDLE_CONFIG = "core.yaml"
BUNDLE_META = "eval_meta_data.csv"
BUNDLE_DATA = "eval_data/"


class CoreError(ValueError):
    """A bundle, CSV or task set a user must fix; the message names the file and what is allowed."""


@dataclass(frozen=True)
class TaskSpec:
    """One in-context task as core.yaml states it."""

    label: str
    dataset_uri: str  # relative to eval_data/
    task_type: str
    num_fewshot: int
    continuation_delimiter: str

    @property
    def key(self) -> str:
        return BUNDLE_DATA + self.dataset_uri


@dataclass(frozen=True)
class BundleSpec:
    tasks: list[TaskSpec]
    baselines: dict[str, float]  # percent


def centered_accuracy(accuracy: float, baseline_percent: float) -> float:
    """0 at chance, 1 at perfect (DCLM's centering; nanochat's base_eval computes the same)."""
    b = baseline_percent / 100.0
    return (accuracy - b) / (1.0 - b)


# -----------------------------------------------------------------------------
# Bundle settings


def parse_core_yaml(text: str, where: str) -> list[TaskSpec]:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CoreError(f"{where} is not valid YAML: {e}") from None
    entries = doc.get("icl_tasks") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CoreError(f"{where} must have a non-empty list `icl_tasks`")
    tasks, seen = [], set()
    for i, e in enumerate(entries):
        at = f"{where} icl_tasks[{i}]"
        if not isinstance(e, dict):
            raise CoreError(f"{at} must be a mapping, got {e!r}")
        label, uri, ttype = e.get("label"), e.get("dataset_uri"), e.get("icl_task_type")
        shots = e.get("num_fewshot")
        delim = e.get("continuation_delimiter", " ")  # DCLM's default delimiter is one space
        if not isinstance(label, str) or not label:
            raise CoreError(f"{at}: `label` must be a non-empty string, got {label!r}")
        if label in seen:
            raise CoreError(f"{at}: task {label!r} is listed twice")
        if not isinstance(uri, str) or not uri.endswith(".jsonl") or uri.startswith("/") or ".." in uri.split("/"):
            raise CoreError(f"{at} ({label}): `dataset_uri` must be a relative path to a .jsonl file, got {uri!r}")
        if ttype not in TASK_TYPES:
            raise CoreError(f"{at} ({label}): `icl_task_type` {ttype!r} is not one of {', '.join(TASK_TYPES)}")
        if (
            not isinstance(shots, list)
            or len(shots) != 1
            or not isinstance(shots[0], int)
            or isinstance(shots[0], bool)
            or shots[0] < 0
        ):
            raise CoreError(f"{at} ({label}): `num_fewshot` must be a one-element list [n >= 0], got {shots!r}")
        if not isinstance(delim, str):
            raise CoreError(f"{at} ({label}): `continuation_delimiter` must be a string, got {delim!r}")
        seen.add(label)
        tasks.append(TaskSpec(label, uri, ttype, shots[0], delim))
    return tasks


def parse_baselines(text: str, where: str) -> dict[str, float]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or not {"Eval Task", "Random baseline"} <= set(reader.fieldnames):
        raise CoreError(f"{where} must have the columns 'Eval Task' and 'Random baseline', got {reader.fieldnames}")
    out = {}
    for row in reader:
        try:
            value = float(row["Random baseline"])
        except (TypeError, ValueError):
            raise CoreError(
                f"{where} line {reader.line_num}: 'Random baseline' of {row['Eval Task']!r} must be a number "
                f"in percent, got {row['Random baseline']!r}"
            ) from None
        if not 0.0 <= value < 100.0:
            raise CoreError(
                f"{where} line {reader.line_num}: baseline {value} of {row['Eval Task']!r} is not in [0, 100)"
            )
        out[row["Eval Task"]] = value
    return out


def read_bundle_spec(store: Store) -> BundleSpec:
    """core.yaml and eval_meta_data.csv of a bundle, checked: every task has a baseline."""
    files = {}
    for key in (BUNDLE_CONFIG, BUNDLE_META):
        try:
            files[key] = store.read_bytes(key).decode("utf-8")
        except StoreError:
            raise CoreError(
                f"eval bundle {store.uri} has no {key}; a bundle holds core.yaml, eval_meta_data.csv and "
                "eval_data/<category>/<task>.jsonl (the DCLM/nanochat eval_bundle layout)"
            ) from None
        except UnicodeDecodeError as e:
            raise CoreError(f"{store.uri}/{key} is not UTF-8 text: {e}") from None
    tasks = parse_core_yaml(files[BUNDLE_CONFIG], f"{store.uri}/{BUNDLE_CONFIG}")
    baselines = parse_baselines(files[BUNDLE_META], f"{store.uri}/{BUNDLE_META}")
    unknown = [t.label for t in tasks if t.label not in baselines]
    if unknown:
        raise CoreError(f"{store.uri}/{BUNDLE_META} has no random baseline for {', '.join(unknown)}")
    return BundleSpec(tasks, baselines)


def bundle_hash(files: Mapping[str, bytes]) -> str:
    """A version of the bundle: sha256 over the sorted (name, sha256 of content) of the files read."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return h.hexdigest()


# -----------------------------------------------------------------------------
# Scoring


@dataclass(frozen=True)
class TaskAccuracy:
    task: str
    accuracy: float
    examples: int
    seconds: float = 0.0


def missing_message(missing: list[str], where: str) -> str:
    return (
        f"{where} lacks {len(missing)} of the {len(CORE_TASKS)} CORE tasks: {', '.join(missing)}; "
        "CORE needs all of them (allow a partial result to score the rest; it is never reported as CORE)"
    )


def score_tasks(
    accuracies: list[TaskAccuracy],
    baselines: Mapping[str, float],
    *,
    allow_partial: bool = False,
    missing: list[str] | None = None,
    where: str = "the evaluation",
    bundle_version: str | None = None,
    seconds: float = 0.0,
) -> CoreResult:
    """Per-task centered accuracy and CORE = their mean over the 22 tasks.

    `missing` names CORE tasks that could not be evaluated (default: the 22 not in `accuracies`).
    Tasks outside the 22 are reported but never counted.
    """
    by_task = {a.task: a for a in accuracies}
    if missing is None:
        missing = [t for t in CORE_TASKS if t not in by_task]
    if missing and not allow_partial:
        raise CoreError(missing_message(missing, where))
    scores = []
    for a in accuracies:
        if a.task not in baselines:
            raise CoreError(f"no random baseline for task {a.task!r} (known: {', '.join(sorted(baselines))})")
        if not (0.0 <= a.accuracy <= 1.0) or math.isnan(a.accuracy):
            raise CoreError(f"accuracy of {a.task!r} must be in [0, 1], got {a.accuracy}")
        centered = centered_accuracy(a.accuracy, baselines[a.task])
        scores.append(
            TaskScore(task=a.task, accuracy=a.accuracy, centered=centered, examples=a.examples, seconds=a.seconds)
        )
    counted = [s.centered for s in scores if s.task in CORE_TASKS]
    partial = bool(missing)
    core = None if partial else sum(counted) / len(counted)
    return CoreResult(
        core=core,
        partial=partial,
        tasks=scores,
        missing_tasks=list(missing),
        bundle_hash=bundle_version,
        seconds=seconds,
    )


def read_accuracy_csv(text: str, where: str) -> list[TaskAccuracy]:
    """Per-task accuracies from nanochat's base_eval CSV (`Task, Accuracy, Centered`; the CORE row ignored)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise CoreError(f"{where} is empty; expected a header `Task, Accuracy, Centered` and one row per task")
    header = [c.strip() for c in lines[0].split(",")]
    if header[:2] != ["Task", "Accuracy"]:
        raise CoreError(f"{where} line 1: expected the header `Task, Accuracy, Centered`, got {lines[0].strip()!r}")
    out, seen = [], set()
    for n, line in enumerate(lines[1:], start=2):
        cells = [c.strip() for c in line.split(",")]
        if cells[0] == "CORE":
            continue
        if len(cells) < 2 or not cells[0]:
            raise CoreError(f"{where} line {n}: expected `task, accuracy, centered`, got {line.strip()!r}")
        try:
            acc = float(cells[1])
        except ValueError:
            raise CoreError(
                f"{where} line {n}: accuracy of {cells[0]!r} must be a number in [0, 1], got {cells[1]!r}"
            ) from None
        if cells[0] in seen:
            raise CoreError(f"{where} line {n}: task {cells[0]!r} appears twice")
        seen.add(cells[0])
        out.append(TaskAccuracy(cells[0], acc, examples=0))
    return out
