"""The CORE eval bundle (DCLM's `eval_bundle`): core.yaml, eval_meta_data.csv and one JSONL file per task,
read and checked whole before any compute is spent (file:// or s3://).

The settings (tasks, shots, delimiters, random baselines) are parsed torch-free in
`miniseries.contract.core`; here the task rows are read and checked against their task type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from miniseries.contract.core import (
    CORE_TASKS,
    BundleSpec,
    CoreError,
    TaskSpec,
    bundle_hash,
    missing_message,
    read_bundle_spec,
)
from miniseries.contract.store import StoreError, open_store


@dataclass(frozen=True)
class Task:
    spec: TaskSpec
    rows: list[dict[str, Any]]  # in file order


@dataclass(frozen=True)
class Bundle:
    uri: str
    spec: BundleSpec
    tasks: list[Task]  # the present ones, in core.yaml order
    missing: list[str]  # CORE tasks without a data file (or not in core.yaml)
    version: str  # sha256 over the files read


def _check_row(row: Any, task_type: str) -> str | None:
    """What is wrong with one task row, or None (the three row formats of DCLM's bundle)."""
    if not isinstance(row, dict):
        return f"expected a JSON object, got {type(row).__name__}"

    def is_str_list(v: Any) -> bool:
        return isinstance(v, list) and len(v) > 0 and all(isinstance(x, str) for x in v)

    def gold_ok(options: list[str]) -> bool:
        gold = row.get("gold")
        return isinstance(gold, int) and not isinstance(gold, bool) and 0 <= gold < len(options)

    if task_type == "multiple_choice":
        if not isinstance(row.get("query"), str) or not is_str_list(row.get("choices")) or not gold_ok(row["choices"]):
            return "a multiple_choice row needs query (string), choices (non-empty list of strings), gold (index)"
    elif task_type == "schema":
        ok = is_str_list(row.get("context_options")) and isinstance(row.get("continuation"), str)
        if not ok or not gold_ok(row["context_options"]):
            return "a schema row needs context_options (non-empty list of strings), continuation (string), gold (index)"
    elif not isinstance(row.get("context"), str) or not isinstance(row.get("continuation"), str):
        return "a language_modeling row needs context (string) and continuation (string)"
    return None


def parse_task_rows(raw: bytes, task_type: str, where: str) -> list[dict[str, Any]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CoreError(f"{where} is not UTF-8 text: {e}") from None
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise CoreError(f"{where} line {n}: not valid JSON ({e.msg} at column {e.colno})") from None
        problem = _check_row(row, task_type)
        if problem:
            raise CoreError(f"{where} line {n}: {problem}")
        rows.append(row)
    if not rows:
        raise CoreError(f"{where} has no rows")
    return rows


def load_bundle(uri: str, *, allow_partial: bool = False, max_per_task: int | None = None) -> Bundle:
    """Read and check the whole bundle up front: a mistake is found before any compute is spent."""
    try:
        store = open_store(uri)
    except (StoreError, ValueError) as e:
        raise CoreError(f"eval bundle URI {uri!r}: {e} (use file:///path or s3://bucket/prefix)") from None
    spec = read_bundle_spec(store)
    files = {key: store.read_bytes(key) for key in ("core.yaml", "eval_meta_data.csv")}
    listed = {t.label for t in spec.tasks}
    missing = [t for t in CORE_TASKS if t not in listed]
    described = [f"{t} (not in core.yaml)" for t in missing]
    tasks = []
    for ts in spec.tasks:
        if not store.exists(ts.key):
            missing += [ts.label] if ts.label in CORE_TASKS else []
            described.append(f"{ts.label} (no {ts.key})")
            continue
        files[ts.key] = raw = store.read_bytes(ts.key)
        tasks.append(Task(ts, parse_task_rows(raw, ts.task_type, f"{store.uri}/{ts.key}")))
    if described and not allow_partial:
        raise CoreError(missing_message(described, f"eval bundle {store.uri}"))
    if max_per_task is not None:
        # nanochat draws the shots from the capped examples, so a cap must leave room for them
        need = max(t.spec.num_fewshot for t in tasks) + 1 if tasks else 1
        if max_per_task < need:
            raise CoreError(
                f"max examples per CORE task {max_per_task} is too small: the bundle has a "
                f"{need - 1}-shot task, whose shots come from the evaluated examples; use at least {need}"
            )
    return Bundle(store.uri, spec, tasks, sorted(missing, key=CORE_TASKS.index), bundle_hash(files))
