"""The run-level contract between the trainer and its readers (operator, local runner, report).

The trainer writes these documents to the store (paths from `layout`); everyone
else only reads them. They are versioned: a reader refuses a schema it does not
know instead of misreading it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from miniseries.contract.doc import Doc, DocError
from miniseries.contract.layout import RunLayout, step_of_checkpoint_key
from miniseries.contract.shapes import ModelShape, training_flops
from miniseries.contract.store import Store, StoreError, StoreNotFound

RESULTS_SCHEMA_VERSION = 1
CHECKPOINT_SCHEMA_VERSION = 1


@dataclass(kw_only=True)
class Progress(Doc):
    """Rewritten every few steps while a run trains."""

    schema_version: int = RESULTS_SCHEMA_VERSION
    sweep: str
    run: str
    depth: int
    step: int
    steps: int
    tokens: int
    loss: float | None = None
    lr: float | None = None
    tokens_per_second: float | None = None
    mfu: float | None = None
    elapsed_seconds: float = 0.0
    eta_seconds: float | None = None
    world_size: int = 1
    state: str = "training"  # training | evaluating | done | preempted (contract.preemption)
    updated_at: float = 0.0  # unix time
    sweep_uid: str | None = None  # the writing sweep's uid (--sweep-uid): a predecessor's is not this sweep's


@dataclass(kw_only=True)
class LossSummary(Doc):
    first: float | None = None
    final: float | None = None  # mean of the last logged window, less noisy than the last step
    min: float | None = None
    points: int = 0


@dataclass(kw_only=True)
class TaskScore(Doc):
    task: str
    accuracy: float
    centered: float
    examples: int
    seconds: float = 0.0


@dataclass(kw_only=True)
class CoreResult(Doc):
    core: float | None = None  # None when partial: a partial score is never shown as CORE
    partial: bool = False
    tasks: list[TaskScore] = field(default_factory=list)
    missing_tasks: list[str] = field(default_factory=list)
    bundle_hash: str | None = None
    seconds: float = 0.0


#: Provenance.trainer of the project's own trainer (python -m miniseries_trainer.train).
BUILTIN_TRAINER = "miniseries_trainer"


@dataclass(kw_only=True)
class Provenance(Doc):
    """What makes two results rows comparable (issue 20): code, environment, data and conventions.

    A field is None when it is not known (no git checkout, no shard manifest); `comparable_key`
    is what a joint fit must agree on.
    """

    #: What trained the row (issue 31): the built-in trainer (BUILTIN_TRAINER) or a custom trainer's own name.
    #: Its architecture and optimizer are the trainer's: rows of two trainers are never fitted as one family.
    #: None in rows written before the field existed, all by the built-in trainer (`trainer_name`).
    trainer: str | None = None
    trainer_version: str | None = None
    source_commit: str | None = None  # git commit of the trainer's source, when known
    python_version: str | None = None
    torch_version: str | None = None
    cuda_version: str | None = None
    device_name: str | None = None
    device_count: int = 1  # ranks (world size)
    precision: str | None = None  # e.g. "bf16-autocast+tf32" or "fp32"
    dataset_uri: str | None = None
    dataset_manifest_sha256: str | None = None  # sha256 of the shards' manifest (or of the shard listing)
    dataset_manifest_kind: str | None = None  # "manifest" (_manifest.json) | "listing" (sorted shard keys)
    tokenizer_uri: str | None = None
    tokenizer_sha256: str | None = None  # sha256 of the tokenizer artifact, from its manifest
    params_convention: str | None = None  # which parameters N counts (shapes.SCALING_PARAMS_CONVENTION)
    flops_convention: str | None = None  # how FLOPs per token are counted
    seed: int | None = None
    lr_schedule: dict[str, Any] = field(default_factory=dict)  # kind, warmup_steps, warmdown_ratio

    def trainer_name(self) -> str:
        return self.trainer or BUILTIN_TRAINER

    def comparable_key(self) -> dict[str, Any]:
        """The fields rows of one fit must share: data, tokenizer and conventions (not device or seed)."""
        return {
            "trainer": self.trainer_name(),
            "dataset_manifest_sha256": self.dataset_manifest_sha256,
            "tokenizer_sha256": self.tokenizer_sha256,
            "params_convention": self.params_convention,
            "flops_convention": self.flops_convention,
        }


#: RunStart.kind: where a run's weights came from when its last attempt started.
START_FRESH, START_CHECKPOINT, START_TRUNK = "fresh", "checkpoint", "trunk"


@dataclass(kw_only=True)
class RunStart(Doc):
    """Where the attempt that wrote results.json started: from scratch, from the run's own checkpoint,
    or (a wsd branch) from its trunk's; with the uid of the sweep that wrote that checkpoint."""

    kind: str = START_FRESH  # fresh | checkpoint | trunk
    step: int = 0
    uri: str | None = None
    sweep_uid: str | None = None


@dataclass(kw_only=True)
class RunResults(Doc):
    """results.json: everything one finished run measured."""

    schema_version: int = RESULTS_SCHEMA_VERSION
    sweep: str
    run: str
    depth: int
    budget_flops: float | None = None
    shape: dict[str, int]
    params: dict[str, int]
    target_tokens: int
    tokens: int
    steps: int
    total_batch_tokens: int
    flops_per_token: int
    flops: float
    wall_seconds: float
    gpu_seconds: float
    world_size: int
    device: str
    mfu: float | None = None
    tokens_per_second: float | None = None
    loss: LossSummary
    val_bpb: float | None = None
    core: CoreResult | None = None
    checkpoint_uri: str | None = None
    loss_curve_key: str | None = None
    val_curve_key: str | None = None  # val bpb on a fixed slice every N steps (RunLayout.val_curve)
    val_trace: dict[str, Any] | None = None  # every, slice_tokens, points, eval_seconds, measured_overhead
    provenance: Provenance | None = None
    created_at: float = 0.0
    sweep_uid: str | None = None  # the writing sweep's uid (--sweep-uid)
    start: RunStart | None = None
    #: Every flag value that shaped the run (learning rates, batch, schedule, seed, ...), as the trainer parsed them.
    hyperparameters: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class CheckpointFile(Doc):
    name: str
    bytes: int
    sha256: str


@dataclass(kw_only=True)
class CheckpointManifest(Doc):
    """manifest.json, written after every file of a checkpoint: its presence means complete."""

    schema_version: int = CHECKPOINT_SCHEMA_VERSION
    step: int
    tokens: int
    world_size: int
    files: list[CheckpointFile]
    created_at: float = 0.0
    sweep_uid: str | None = None  # the writing sweep's uid (--sweep-uid): the fence of `checkpoint_steps`


def loss_point(step: int, tokens: int, shape: ModelShape, loss: float, lr: float | None) -> dict[str, Any]:
    """One row of loss_curve.jsonl (RunLayout.loss_curve): what the forecasts and the report read."""
    row: dict[str, Any] = {"step": step, "tokens": tokens, "flops": training_flops(shape, tokens), "loss": loss}
    return row | ({"lr": lr} if lr is not None else {})


def loss_summary(loss_curve: list[dict[str, Any]]) -> LossSummary:
    """First, final (mean of the last tenth: less noisy than the last step) and lowest loss."""
    losses = [p["loss"] for p in loss_curve]
    window = losses[-max(1, len(losses) // 10) :] if losses else []
    return LossSummary(
        first=losses[0] if losses else None,
        final=sum(window) / len(window) if window else None,
        min=min(losses) if losses else None,
        points=len(losses),
    )


def json_lines(rows: list[dict[str, Any]]) -> bytes:
    """The curves' file format: one JSON object per line."""
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


class ResultsError(RuntimeError):
    """A document exists but cannot be read: the message names the object and what is wrong."""


def _load(store: Store, key: str, model: type[Doc]) -> Any:
    raw = store.read_bytes(key)
    try:
        data = json.loads(raw)
    except ValueError as e:  # JSONDecodeError, or UnicodeDecodeError for bytes that are not UTF-8
        raise ResultsError(f"{store.uri}/{key} ({len(raw)} bytes) is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ResultsError(f"{store.uri}/{key} holds a JSON {type(data).__name__}, not an object")
    version = data.get("schema_version")
    if version != RESULTS_SCHEMA_VERSION and model is not CheckpointManifest:
        raise ResultsError(
            f"{store.uri}/{key} has schema_version {version!r}; this reader knows {RESULTS_SCHEMA_VERSION}"
        )
    try:
        return model.from_dict(data)
    except DocError as e:
        raise ResultsError(f"{store.uri}/{key} does not match the {model.__name__} schema: {e}") from None


def read_results(store: Store, run: RunLayout) -> RunResults | None:
    """The run's results, or None if it has not finished."""
    if not store.exists(run.results):
        return None
    return _load(store, run.results, RunResults)  # type: ignore[no-any-return]


def read_progress(store: Store, run: RunLayout) -> Progress | None:
    try:
        return _load(store, run.progress, Progress)  # type: ignore[no-any-return]
    except (StoreError, ResultsError):
        return None  # progress is advisory: a missing or half-read one just means "no news"


def read_loss_curve(store: Store, run: RunLayout) -> list[dict[str, float]]:
    if not store.exists(run.loss_curve):
        return []
    return [json.loads(line) for line in store.read_bytes(run.loss_curve).decode().splitlines() if line.strip()]


def read_val_curve(store: Store, run: RunLayout) -> list[dict[str, float]]:
    """The run's validation curve rows (step, tokens, flops, val_bpb, slice_tokens); [] before the first."""
    if not store.exists(run.val_curve):
        return []
    return [json.loads(line) for line in store.read_bytes(run.val_curve).decode().splitlines() if line.strip()]


#: The uids whose documents are a sweep's own: its uid, and those of the sweeps whose data it adopted
#: (layout.lineage); a single uid stands for itself; None: no fence (the local runner).
Owners = str | frozenset[str] | None


def foreign(doc_uid: str | None, owners: Owners) -> bool:
    """A document written by another sweep of the same name (deleted and re-created: a new uid).

    Only a document that names another uid is foreign: one without a uid was written by a trainer
    that predates the field, or by the local runner, which passes none."""
    if owners is None or doc_uid is None:
        return False
    return doc_uid != owners if isinstance(owners, str) else doc_uid not in owners


def checkpoint_steps(store: Store, run: RunLayout, owner_uid: Owners = None) -> list[int]:
    """Steps of complete checkpoints (those with a manifest), newest last.

    With `owner_uid`, only the checkpoints that sweep wrote: a trainer of a deleted sweep of the
    same name can still be writing (a long grace period, a lost node) when a new one claims the key,
    and its checkpoint must never be resumed from (issue 27)."""
    steps = set()
    for key in store.list(run.checkpoints):
        if key.endswith("/manifest.json"):
            step = step_of_checkpoint_key(key)
            if step is not None:
                steps.add(step)
    if owner_uid is None:
        return sorted(steps)
    return [s for s in sorted(steps) if not foreign(_manifest_uid(store, run, s), owner_uid)]


def _manifest_uid(store: Store, run: RunLayout, step: int) -> str | None:
    try:
        return read_manifest(store, run, step).sweep_uid
    except (StoreNotFound, ResultsError):
        return None  # deleted meanwhile or unreadable: the loader refuses it on its own


def read_manifest(store: Store, run: RunLayout, step: int) -> CheckpointManifest:
    return _load(store, run.checkpoint(step) + "manifest.json", CheckpointManifest)  # type: ignore[no-any-return]
