"""Provenance, read by the science (written by miniseries_trainer/provenance.py): which results rows may be fitted together, and the refusal of mixed fits.

Rows are comparable when they agree on `Provenance.comparable_key()` (the trainer, the data's
manifest hash, the tokenizer's hash, the parameter and FLOP conventions); the rest (device, torch,
commit, seed) is listed as a difference but does not block a fit. Rows written before
provenance existed have none and are reported as "unknown".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from miniseries.contract.results import Provenance, RunResults

#: Provenance fields compared between sweeps, in the order they are listed.
FIELDS = (
    "trainer",
    "dataset_manifest_sha256",
    "tokenizer_sha256",
    "params_convention",
    "flops_convention",
    "lr_schedule",
    "trainer_version",
    "source_commit",
    "torch_version",
    "cuda_version",
    "device_name",
    "device_count",
    "precision",
    "dataset_uri",
    "seed",
)
#: A different trainer is a different model family (architecture, optimizer, data order): its rows
#: compare side by side, never in one fit.
BLOCKING = ("trainer", "dataset_manifest_sha256", "tokenizer_sha256", "params_convention", "flops_convention")


class ProvenanceMismatch(ValueError):
    """Rows whose trainer, data, tokenizer or conventions differ were to be fitted together."""


@dataclass
class Difference:
    field: str
    values: dict[str, list[str]]  # value (as text) -> the runs that have it
    blocking: bool

    def describe(self) -> str:
        parts = [f"{v} ({', '.join(runs)})" for v, runs in self.values.items()]
        return f"{self.field}: {' vs '.join(parts)}"

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "values": self.values, "blocking": self.blocking}


def schedule_summary(record: dict[str, Any]) -> str:
    """The part of a run's LR schedule that makes its curve's family: warmup, the warmdown's shape and
    fraction. Not its step counts: a wsd branch's cooldown steps are its cooldownFraction of its own
    length, rounded (9 steps at 0.2: 2, a fraction of 0.22), so the (1-sqrt) fraction is compared to
    one decimal; rows from before the shape was recorded were linear over warmdown_ratio."""
    shape = record.get("warmdown_shape", "linear")
    if shape == "sqrt":
        warmdown = f"(1-sqrt) cooldown over ~{float(record.get('warmdown_fraction', 0.0)):.1f} of the steps"
    else:
        warmdown = f"linear warmdown over {record.get('warmdown_ratio')} of the steps"
    return f"warmup {record.get('warmup_steps')} steps, {warmdown}"


def _value(p: Provenance | None, name: str) -> str:
    if p is None:
        return "unknown (no provenance)"
    if name == "trainer":
        return p.trainer_name()  # rows from before the field: the built-in trainer wrote them
    v = getattr(p, name)
    if v is None or v == {}:
        return "unknown"
    return schedule_summary(v) if name == "lr_schedule" else str(v)


def differences(rows: Sequence[tuple[str, RunResults]]) -> list[Difference]:
    """Every provenance field on which the labelled rows (label e.g. "sweepA/d12") do not all agree."""
    out = []
    for name in FIELDS:
        values: dict[str, list[str]] = {}
        for label, r in rows:
            values.setdefault(_value(r.provenance, name), []).append(label)
        if len(values) > 1:
            out.append(Difference(name, values, name in BLOCKING))
    return out


def check_joint_fit(rows: Sequence[tuple[str, RunResults]]) -> list[Difference]:
    """The non-blocking differences; raises ProvenanceMismatch naming each blocking one."""
    diffs = differences(rows)
    blocking = [d for d in diffs if d.blocking]
    if blocking:
        raise ProvenanceMismatch(
            "refusing a joint fit of rows whose trainer, data, tokenizer or conventions differ: "
            + "; ".join(d.describe() for d in blocking)
        )
    return diffs
