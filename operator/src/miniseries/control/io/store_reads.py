"""What the store says about a sweep's runs and its tokenizer: the store reads the operator and the
local runner share, turned into the plain observations `control/decide/` decides on.
"""

from __future__ import annotations

from miniseries.api.spec import PlannedRun
from miniseries.contract.layout import SweepLayout, join_uri
from miniseries.contract.results import (
    Owners,
    ResultsError,
    checkpoint_steps,
    foreign,
    read_progress,
    read_results,
)
from miniseries.contract.store import Store, StoreNotFound
from miniseries.control.decide.observations import RunObservation


def observe_runs(
    store: Store, layout: SweepLayout, runs: list[PlannedRun], owner_uid: Owners = None
) -> dict[str, RunObservation]:
    """What the store says about each run; the one store read the operator and the local runner share.

    A store that does not answer raises (StoreError); it never reads as "no results", which
    would retry finished runs. With `owner_uid` (the operator: the sweep's uid) results, progress
    and checkpoints written by another sweep of the same name (deleted, its trainer still writing
    when this one claimed the key) are not this sweep's: they read as absent (results.foreign)."""
    out: dict[str, RunObservation] = {}
    for run in runs:
        rl = layout.run(run.name)
        results, error = None, None
        try:
            results = read_results(store, rl)
        except ResultsError as e:
            error = str(e)
        except StoreNotFound:
            results = None  # deleted between listing and reading
        if results is not None and foreign(results.sweep_uid, owner_uid):
            results = None  # a predecessor's: this run has not finished
        steps = checkpoint_steps(store, rl, owner_uid)
        progress = None if results else read_progress(store, rl)
        if progress is not None and foreign(progress.sweep_uid, owner_uid):
            progress = None
        out[run.name] = RunObservation(
            results=results,
            progress=progress,
            checkpoint_uri=join_uri(store.uri, rl.checkpoint(steps[-1])) if steps else None,
            checkpoint_step=steps[-1] if steps else None,
            results_uri=join_uri(store.uri, rl.results) if results else None,
            results_error=error,
            checkpoint_steps=tuple(steps),
        )
    return out


def trained_tokenizer_ready(store: Store, layout: SweepLayout) -> bool:
    """The tokenizer stage has finished: its manifest (written last) is in the store."""
    return any(k.endswith("manifest.json") for k in store.list(layout.tokenizer))
