"""results.json and progress.json are read strictly: a wrong document is an error naming the field."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from miniseries.contract.layout import LOCAL_NAMESPACE, SweepLayout
from miniseries.contract.results import (
    CheckpointFile,
    CheckpointManifest,
    LossSummary,
    Progress,
    ResultsError,
    RunResults,
    read_manifest,
    read_progress,
    read_results,
)
from miniseries.contract.store import LocalStore

RUN = SweepLayout(LOCAL_NAMESPACE, "s").run("d4")


def results_doc(**change: Any) -> dict[str, Any]:
    doc = RunResults(
        sweep="s", run="d4", depth=4, shape={"n_layer": 4}, params={"scaling": 900, "total": 1000},
        target_tokens=10, tokens=12, steps=3, total_batch_tokens=4, flops_per_token=6, flops=7.5e18,
        wall_seconds=1.25, gpu_seconds=3.0, world_size=1, device="cpu", loss=LossSummary(final=3.0, points=5),
    ).to_dict()  # fmt: skip
    doc.update(change)
    return doc


def read(tmp_path: Path, doc: Any) -> RunResults | None:
    store = LocalStore(tmp_path)
    store.write_bytes(RUN.results, json.dumps(doc).encode())
    return read_results(store, RUN)


def test_a_written_document_reads_back_equal(tmp_path: Path) -> None:
    res = RunResults.from_dict(results_doc())
    got = read(tmp_path, json.loads(res.to_json()))
    assert got == res and got is not None and got.loss.final == 3.0 and isinstance(got.gpu_seconds, float)


@pytest.mark.parametrize(
    ("change", "names"),
    [
        ({"schema_version": 2}, ["schema_version 2", "knows 1"]),
        ({"depth": "four"}, ["depth", "an integer", "'four'"]),
        ({"depth": True}, ["depth", "an integer"]),
        ({"loss": {"final": "low"}}, ["loss.final", "a number", "'low'"]),
        ({"params": {"scaling": 1.5}}, ["params.scaling", "an integer"]),
        ({"core": {"tasks": [{"task": "t", "accuracy": 1.0, "centered": 1.0}]}}, ["core.tasks[0].examples", "missing"]),
    ],
)
def test_a_wrong_document_names_the_field(tmp_path: Path, change: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(ResultsError) as e:
        read(tmp_path, results_doc(**change))
    assert all(n in str(e.value) for n in names), str(e.value)
    assert RUN.results in str(e.value)


def test_a_missing_field_is_named(tmp_path: Path) -> None:
    doc = results_doc()
    del doc["flops"]
    with pytest.raises(ResultsError, match=r"flops: missing; it is required \(a number\)"):
        read(tmp_path, doc)


def test_not_an_object_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="JSON list, not an object"):
        read(tmp_path, [1, 2])


def test_unknown_keys_are_kept_and_written_back_and_nan_is_null() -> None:
    res = RunResults.from_dict(results_doc(future={"a": [1]}, mfu=math.nan))
    out = json.loads(res.to_json())
    assert out["future"] == {"a": [1]} and out["mfu"] is None
    assert list(out)[:3] == ["schema_version", "sweep", "run"] and list(out)[-1] == "future"


def test_progress_is_advisory_and_the_manifest_strict(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.write_bytes(RUN.progress, b'{"schema_version": 1, "sweep": "s"}')
    assert read_progress(store, RUN) is None  # half a document: no news, not an error
    p = Progress(sweep="s", run="d4", depth=4, step=1, steps=3, tokens=8)
    store.write_bytes(RUN.progress, p.to_json())
    assert read_progress(store, RUN) == p
    m = CheckpointManifest(step=1, tokens=8, world_size=1, files=[CheckpointFile(name="m.pt", bytes=1, sha256="0")])
    store.write_bytes(RUN.checkpoint(1) + "manifest.json", m.to_json())
    assert read_manifest(store, RUN, 1) == m
    store.write_bytes(RUN.checkpoint(1) + "manifest.json", m.to_json().replace(b'"bytes": 1', b'"bytes": "1"'))
    with pytest.raises(ResultsError, match=r"files\[0\]\.bytes: expected an integer"):
        read_manifest(store, RUN, 1)
