"""The trainer contract, version 1, as data: its clauses, the flags a trainer is given, the metric names.

docs/trainer-contract.md is the page a user reads; this module is what code reads: `miniseries
trainer check` prints one line per clause of `CLAUSES`, and a unit test holds the page's table to
this list, so the two cannot drift. A clause is here only when the operator, the local runner or
the report relies on it (what they read, which exit codes they act on); everything else a trainer
does is its own business.

Torch-free and pydantic-free, like the rest of `contract/`.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The version of the contract this operator speaks (and `trainer check` checks). A trainer says
#: which one it follows; a change that breaks a version-1 trainer makes a version 2.
CONTRACT_VERSION = 1

REQUIRED, OPTIONAL = "required", "optional"


@dataclass(frozen=True)
class Clause:
    id: str
    title: str  # a few words, the check's line
    what: str  # what the trainer must do (one sentence)
    level: str  # REQUIRED | OPTIONAL
    how: str  # how `miniseries trainer check` checks it


CLAUSES: tuple[Clause, ...] = (
    Clause("C1", "flags",
           "Accepts the run's flags as the operator passes them (plan/trainer_argv.py) and starts training.",
           REQUIRED, "the first attempt writes progress.json before it exits or times out"),
    Clause("C2", "progress",
           "Rewrites <run>/progress.json (Progress, schema 1) while it trains: sweep, run, depth, step, steps, tokens.",
           REQUIRED, "every progress.json read during the run parses and names this run and its planned steps"),
    Clause("C3", "metrics",
           "Serves Prometheus text on --metrics-port (0: none) with miniseries_train_step and miniseries_train_loss.",
           OPTIONAL, "GET http://127.0.0.1:<port>/metrics while it trains"),
    Clause("C4", "stop",
           "On SIGTERM or SIGINT: finishes the step in flight, writes a checkpoint, exits 75 within the grace period.",
           REQUIRED, "SIGTERM after its first progress; exit 75 and a checkpoint at or after the step it had reached"),
    Clause("C5", "stop-progress",
           "After that checkpoint, progress.json says state \"preempted\" (read where torchrun turns 75 into 1).",
           OPTIONAL, "progress.json after the exit 75"),
    Clause("C6", "checkpoints",
           "Checkpoints are <run>/ckpt/step_<n:08d>/ with manifest.json (CheckpointManifest) written last, "
           "listing every file's size and sha256.",
           REQUIRED, "every checkpoint with a manifest: schema, step and each file's size and sha256"),
    Clause("C7", "resume",
           "Run again with the same flags (--resume=auto), it continues from its newest checkpoint.",
           REQUIRED, "the second attempt's results.json `start` (or its first progress) is at that checkpoint's step"),
    Clause("C8", "results",
           "Exits 0 only after writing <run>/results.json (RunResults, schema 1), last of its outputs.",
           REQUIRED, "results.json exists after exit 0 and parses as RunResults"),
    Clause("C9", "results-match",
           "results.json describes the planned run: sweep, run, depth, steps, tokens = steps x total batch, "
           "a finite final loss.",
           REQUIRED, "results.json against the flags it was given"),
    Clause("C10", "sweep-uid",
           "With --sweep-uid, progress, checkpoint manifests and results carry it, and it resumes only from "
           "checkpoints of that uid.",
           REQUIRED, "sweep_uid of every document it wrote"),
    Clause("C11", "own-prefix",
           "Writes to the store only under its run's prefix <namespace>/<sweep>/<run>/, each object atomically.",
           REQUIRED, "the store's keys before and after, outside the run's prefix"),
    Clause("C12", "loss-curve",
           "Writes <run>/loss_curve.jsonl, one JSON object per logged step with step, tokens, loss (forecasts, report).",
           OPTIONAL, "loss_curve.jsonl after the run"),
    Clause("C13", "store-denied",
           "When the store refuses its credentials: prints 'miniseries: store access denied: ...' last and exits 77.",
           OPTIONAL, "not exercised by the check (tests/integration: the operator's store-denied tests)"),
    Clause("C14", "init-from",
           "--init-from URI: without a checkpoint of its own, starts from that checkpoint (needed for wsd sweeps).",
           OPTIONAL, "not exercised by the check (a wsd sweep needs it)"),
    Clause("C15", "fenced",
           "With --sweep-uid, before results.json: if its sweep's store manifest is gone or another uid's, "
           "writes nothing and exits 78.",
           OPTIONAL, "not exercised by the check (tests/integration: the operator's fencing tests)"),
)  # fmt: skip

CLAUSE_BY_ID = {c.id: c for c in CLAUSES}

#: The metric names C3 looks for (the built-in trainer serves more: miniseries_trainer.metrics.METRICS).
REQUIRED_METRICS = ("miniseries_train_step", "miniseries_train_loss")


#: The contract's values a custom trainer's `spec.trainer.args` may name as `$(variable)`, each beside
#: the flag that carries the same value (plan/trainer_argv.py builds the flags; a variable's value is its
#: flag's, so the two cannot disagree). Kubernetes' own `$(VAR)` style, which Kubeflow and Katib users
#: know; `$$` is a literal `$`. A variable whose flag a run does not get (e.g. `$(run.initFrom)` outside
#: wsd branches) is the empty string; a flag without a value (`--core-allow-partial`) is `true`.
TEMPLATE_VARIABLES: tuple[tuple[str, str], ...] = (
    ("run.namespace", "namespace"), ("run.sweep", "sweep"), ("run.name", "run"), ("run.sweepUid", "sweep-uid"),
    ("model.depth", "depth"), ("model.aspectRatio", "aspect-ratio"), ("model.headDim", "head-dim"),
    ("model.vocabSize", "vocab-size"), ("model.seqLen", "seq-len"),
    ("run.targetTokens", "target-tokens"), ("run.steps", "steps"), ("run.budgetFlops", "budget-flops"),
    ("run.totalBatchTokens", "total-batch-tokens"), ("run.deviceBatchSize", "device-batch-size"),
    ("run.warmupSteps", "warmup-steps"), ("run.warmdownRatio", "warmdown-ratio"),
    ("run.warmdownShape", "warmdown-shape"), ("run.warmdownSteps", "warmdown-steps"), ("run.seed", "seed"),
    ("run.checkpointEvery", "checkpoint-every"), ("run.keepCheckpoints", "keep-checkpoints"),
    ("run.keepSteps", "keep-steps"), ("run.resume", "resume"), ("run.initFrom", "init-from"),
    ("store.uri", "store"), ("data.shards", "data"), ("data.tokenizer", "tokenizer"),
    ("eval.tokens", "eval-tokens"), ("eval.bundle", "eval-bundle"), ("eval.coreMaxPerTask", "core-max-per-task"),
    ("eval.coreAllowPartial", "core-allow-partial"),
    ("run.metricsPort", "metrics-port"), ("run.device", "device"), ("run.precision", "precision"),
)  # fmt: skip

FLAG_OF_VARIABLE = dict(TEMPLATE_VARIABLES)
