"""The trainer kit: what a training script imports to follow the trainer contract (docs/trainer-contract.md).

    from miniseries.contract.trainer_kit import open_run

    run = open_run()                                   # the flags the operator passed (sys.argv)
    ckpt = run.latest_checkpoint()                     # None, or {file name: bytes} of the newest own one
    for step in range(ckpt.step if ckpt else 0, run.steps):
        loss = ...                                     # your model, your optimizer, your data
        run.log(step + 1, loss, lr=...)                # progress.json, the loss curve, /metrics
        if run.stop_requested:                         # SIGTERM/SIGINT arrived: checkpoint and exit 75
            return run.preempted(step + 1, {"model.bin": weights})
        if run.checkpoint_due(step + 1):
            run.save_checkpoint(step + 1, {"model.bin": weights})
    return run.finish(val_bpb=...)                     # results.json; 0 (or 78 when the sweep is gone)

Everything it writes goes through the one store interface (`contract.store`: atomic objects) to the
one layout (`contract.layout.RunLayout`) in the one set of documents (`contract.results`); it writes
only under its run's prefix. Torch-free and dependency-free (no pydantic, no prometheus_client): a
user's image needs miniseries' contract and nothing else. Rank 0 of a multi-process run writes the
run's documents; other ranks should not open a run for writing.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from miniseries.contract.exits import EXIT_FENCED, EXIT_PREEMPTED, EXIT_STORE_DENIED, STORE_DENIED_MARKER
from miniseries.contract.layout import LOCAL_NAMESPACE, RunLayout, SweepLayout, fenced, join_uri, lineage
from miniseries.contract.preemption import PROGRESS_PREEMPTED
from miniseries.contract.results import (
    START_CHECKPOINT,
    START_FRESH,
    START_TRUNK,
    CheckpointFile,
    CheckpointManifest,
    Progress,
    RunResults,
    RunStart,
    checkpoint_steps,
    foreign,
    json_lines,
    loss_point,
    loss_summary,
)
from miniseries.contract.shapes import ModelShape, model_shape
from miniseries.contract.store import RetryingStore, RetryPolicy, Store, StoreError, open_store
from miniseries.contract.trainer_contract import CONTRACT_VERSION

__all__ = [
    "CONTRACT_VERSION",
    "EXIT_DONE",
    "EXIT_FENCED",
    "EXIT_PREEMPTED",
    "EXIT_STORE_DENIED",
    "STORE_DENIED_MARKER",
    "Checkpoint",
    "OutsideRunPrefix",
    "RunArgs",
    "TrainerRun",
    "open_run",
    "parse_run_args",
]

EXIT_DONE = 0

# ---------------------------------------------------------------- the run's flags

#: The flags of contract version 1 (plan/trainer_argv.py builds them): name -> (type, default).
#: None as a default: optional; REQUIRED_FLAGS must be given.
FLAGS: dict[str, tuple[Any, Any]] = {
    "namespace": (str, LOCAL_NAMESPACE), "sweep": (str, None), "run": (str, None), "sweep-uid": (str, None),
    "depth": (int, None), "aspect-ratio": (int, 64), "head-dim": (int, 128), "vocab-size": (int, 32768),
    "seq-len": (int, 2048), "target-tokens": (int, None), "steps": (int, None), "total-batch-tokens": (int, None),
    "device-batch-size": (int, 32), "warmup-steps": (int, 0), "warmdown-ratio": (float, 0.0),
    "warmdown-shape": (str, "linear"), "warmdown-steps": (int, None), "checkpoint-every": (int, 0),
    "keep-checkpoints": (int, 2), "keep-steps": (str, ""), "eval-tokens": (int, 0), "seed": (int, 0),
    "store": (str, None), "data": (str, None), "tokenizer": (str, None), "metrics-port": (int, 0),
    "device": (str, "auto"), "resume": (str, "auto"), "init-from": (str, None), "budget-flops": (float, None),
    "eval-bundle": (str, None), "precision": (str, "auto"), "core-max-per-task": (int, None),
}  # fmt: skip
REQUIRED_FLAGS = ("sweep", "run", "depth", "target-tokens", "total-batch-tokens", "store", "data", "tokenizer")


@dataclass(frozen=True)
class RunArgs:
    """One run, as the operator describes it to a trainer (contract version 1)."""

    namespace: str
    sweep: str
    run: str
    sweep_uid: str | None
    depth: int
    aspect_ratio: int
    head_dim: int
    vocab_size: int
    seq_len: int
    target_tokens: int
    steps: int | None
    total_batch_tokens: int
    device_batch_size: int
    warmup_steps: int
    warmdown_ratio: float
    warmdown_shape: str
    warmdown_steps: int | None
    checkpoint_every: int
    keep_checkpoints: int
    keep_steps: str
    eval_tokens: int
    seed: int
    store: str
    data: str
    tokenizer: str
    metrics_port: int
    device: str
    resume: str
    init_from: str | None
    budget_flops: float | None
    eval_bundle: str | None
    precision: str
    core_max_per_task: int | None
    core_allow_partial: bool = False
    #: Flags this kit does not know (a newer operator's): kept, never an error.
    unknown: tuple[str, ...] = ()

    @property
    def planned_steps(self) -> int:
        """--steps, else as many whole batches as fit in --target-tokens."""
        return self.steps if self.steps is not None else max(1, self.target_tokens // self.total_batch_tokens)

    @property
    def pinned_steps(self) -> frozenset[int]:
        """--keep-steps: steps always checkpointed and never pruned (a wsd trunk's branch points)."""
        return frozenset(int(s) for s in self.keep_steps.split(",") if s.strip())


def env_name(flag: str) -> str:
    """MINISERIES_<FLAG>: a flag's default from the environment (as the built-in trainer reads them)."""
    return "MINISERIES_" + flag.upper().replace("-", "_")


def parse_run_args(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> RunArgs:
    """The run's flags from `argv` (default sys.argv[1:]); a flag missing there may come from
    MINISERIES_<FLAG> in `env` (default os.environ). Exits 2 naming a missing or malformed flag."""
    env = os.environ if env is None else env
    p = argparse.ArgumentParser(prog="trainer", description="a trainer following the miniseries contract v1")
    for flag, (kind, default) in FLAGS.items():
        p.add_argument(f"--{flag}", type=kind, default=kind(env[env_name(flag)]) if env_name(flag) in env else default)
    p.add_argument("--core-allow-partial", action="store_true")
    ns, unknown = p.parse_known_args(argv)
    missing = [f"--{f}" for f in REQUIRED_FLAGS if getattr(ns, f.replace("-", "_")) is None]
    if missing:
        p.error(f"missing {', '.join(missing)} (the operator passes every one; see docs/trainer-contract.md)")
    overrides = sorted(env_name(f) for f in FLAGS if env_name(f) in env)
    if ns.sweep_uid and overrides:  # a cluster run: every value comes from the plan, as in the built-in trainer
        p.error(f"{', '.join(overrides)} set in the environment of a cluster run (--sweep-uid {ns.sweep_uid}): "
                "the run's values come only from the operator's flags; remove them from the pod's environment")  # fmt: skip
    return RunArgs(**vars(ns), unknown=tuple(unknown))


# ---------------------------------------------------------------- stop signals


class StopFlag:
    """SIGTERM and SIGINT set a flag (no I/O in the handler: it may run in the middle of a store write);
    the training loop looks at it once per step. A second SIGINT raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0

    def install(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                signal.signal(s, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self.signum = self.signum or signum
        if signum == signal.SIGINT and self.count > 1:
            raise KeyboardInterrupt

    @property
    def requested(self) -> bool:
        return self.signum is not None


# ---------------------------------------------------------------- metrics


class MetricsServer:
    """Prometheus text exposition of a few gauges on 0.0.0.0:port, from a daemon thread (no dependency)."""

    def __init__(self, port: int, labels: Mapping[str, str]):
        self.values: dict[str, float] = {}
        label_text = ",".join(f'{k}="{v}"' for k, v in labels.items())
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                lines = [f"# TYPE {n} gauge\n{n}{{{label_text}}} {v!r}\n" for n, v in sorted(server.values.items())]
                body = "".join(lines).encode()
                self.send_response(200 if self.path.startswith("/metrics") else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a scrape every 15 s is not news

        self.httpd = ThreadingHTTPServer(("0.0.0.0", port), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def set(self, name: str, value: float) -> None:
        if math.isfinite(value):
            self.values[name] = float(value)


# ---------------------------------------------------------------- the run


class OutsideRunPrefix(StoreError):
    """A write outside the run's own prefix: contract clause C11 forbids it."""


@dataclass
class Checkpoint:
    """A checkpoint read back: its step, tokens and files (verified against the manifest)."""

    step: int
    tokens: int
    files: dict[str, bytes]
    uri: str


@dataclass
class TrainerRun:
    """One run of a trainer following the contract: open it with `open_run`."""

    args: RunArgs
    store: Store
    stop: StopFlag = field(default_factory=StopFlag)
    metrics: MetricsServer | None = None
    loss_curve: list[dict[str, float]] = field(default_factory=list)
    start: RunStart | None = None
    started_at: float = field(default_factory=time.time)
    _last_progress: float = 0.0
    progress_every_seconds: float = 1.0

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.args.namespace, self.args.sweep, self.args.run)

    @property
    def steps(self) -> int:
        return self.args.planned_steps

    @property
    def stop_requested(self) -> bool:
        return self.stop.requested

    def shape(self) -> ModelShape:
        """The miniseries model shape of these flags: its parameter counts and FLOPs per token are what
        results.json reports unless `finish` is given a trainer's own."""
        a = self.args
        return model_shape(a.depth, aspect_ratio=a.aspect_ratio, head_dim=a.head_dim, vocab_size=a.vocab_size,
                           sequence_len=a.seq_len)  # fmt: skip

    def tokens_at(self, step: int) -> int:
        return step * self.args.total_batch_tokens

    # -- writing, only under the run's prefix (C11)
    def write(self, name: str, data: bytes) -> str:
        """Write `data` atomically as `<run prefix>/<name>`; its key."""
        return self._put(self.layout.root + name, data)

    def _put(self, key: str, data: bytes, advisory: bool = False) -> str:
        if not key.startswith(self.layout.root) or ".." in key.split("/"):
            raise OutsideRunPrefix(f"{key!r} is outside this run's prefix {self.layout.root!r} (contract C11)")
        if advisory and isinstance(self.store, RetryingStore):
            self.store.write_advisory(key, data)
        else:
            self.store.write_bytes(key, data)
        return key

    # -- progress, loss curve, metrics (C2, C3, C12)
    def log(self, step: int, loss: float, lr: float | None = None, **progress: Any) -> None:
        """After optimizer step `step` (1-based): the loss curve, the gauges, and progress.json (at most
        every `progress_every_seconds`, and always the first time)."""
        tokens = self.tokens_at(step)
        self.loss_curve.append(loss_point(step, tokens, self.shape(), loss, lr))
        if self.metrics is not None:
            for name, value in (("step", step), ("loss", loss), ("tokens_total", tokens), ("lr", lr)):
                if value is not None:
                    self.metrics.set(f"miniseries_train_{name}", value)
        if time.time() - self._last_progress >= self.progress_every_seconds:
            self.progress(step, loss=loss, lr=lr, **progress)

    def progress(self, step: int, *, state: str = "training", **fields: Any) -> None:
        """Rewrite progress.json (advisory: a store hiccup skips one, the next one comes)."""
        doc = Progress(sweep=self.args.sweep, run=self.args.run, depth=self.args.depth, step=step, steps=self.steps,
                       tokens=self.tokens_at(step), elapsed_seconds=time.time() - self.started_at, state=state,
                       updated_at=time.time(), sweep_uid=self.args.sweep_uid, **fields)  # fmt: skip
        try:
            self._put(self.layout.progress, doc.to_json(), advisory=True)
        except OutsideRunPrefix:
            raise
        except StoreError:
            return
        self._last_progress = time.time()

    def write_loss_curve(self) -> None:
        self._put(self.layout.loss_curve, json_lines(self.loss_curve))

    # -- checkpoints (C4, C6, C7, C10)
    def owners(self) -> frozenset[str] | None:
        """Whose checkpoints are this run's: its sweep uid's (and adopted ones); None without --sweep-uid."""
        if not self.args.sweep_uid:
            return None
        return lineage(self.store, SweepLayout(self.args.namespace, self.args.sweep), self.args.sweep_uid)

    def checkpoint_due(self, step: int) -> bool:
        every = self.args.checkpoint_every
        return step < self.steps and ((every > 0 and step % every == 0) or step in self.args.pinned_steps)

    def save_checkpoint(self, step: int, files: Mapping[str, bytes | Path]) -> str:
        """Write the files, then manifest.json (last: its presence means complete); keep the newest
        --keep-checkpoints and every --keep-steps one. Returns the checkpoint's URI."""
        prefix = self.layout.checkpoint(step)
        entries = []
        for name, content in files.items():
            data = content.read_bytes() if isinstance(content, Path) else content
            self._put(prefix + name, data)
            entries.append(CheckpointFile(name=name, bytes=len(data), sha256=hashlib.sha256(data).hexdigest()))
        manifest = CheckpointManifest(step=step, tokens=self.tokens_at(step), world_size=1, files=entries,
                                      created_at=time.time(), sweep_uid=self.args.sweep_uid)  # fmt: skip
        self._put(prefix + "manifest.json", manifest.to_json())
        self.write_loss_curve()
        keep = self.args.keep_checkpoints
        for old in checkpoint_steps(self.store, self.layout, self.owners())[:-keep] if keep > 0 else []:
            if old not in self.args.pinned_steps and old != step:
                self.store.delete_prefix(self.layout.checkpoint(old))
        return join_uri(self.store.uri, prefix)

    def latest_checkpoint(self) -> Checkpoint | None:
        """The newest complete checkpoint of this run (of its sweep), verified; older ones when the newest
        does not verify; else --init-from's (a wsd branch's first start); None: start fresh. Records where
        this attempt starts (results.json's `start`); with --resume=never, always None."""
        self.start = RunStart(kind=START_FRESH, sweep_uid=self.args.sweep_uid)
        if self.args.resume == "never":
            return None
        owners = self.owners()
        for step in reversed(checkpoint_steps(self.store, self.layout, owners)):
            try:
                ckpt = read_checkpoint(self.store, self.layout.checkpoint(step), owners)
            except (StoreError, ValueError) as e:
                print(f"warning: checkpoint step {step} does not verify ({e}); trying an older one", flush=True)
                continue
            self._started(START_CHECKPOINT, ckpt)
            return ckpt
        if self.args.init_from:
            ckpt = read_checkpoint(open_store(self.args.init_from.rstrip("/")), "", owners)
            self._started(START_TRUNK, ckpt)
            return ckpt
        if self.args.resume == "require":
            raise SystemExit(f"error: --resume require: no checkpoint under {self.layout.checkpoints}")
        return None

    def _started(self, kind: str, ckpt: Checkpoint) -> None:
        self.start = RunStart(kind=kind, step=ckpt.step, uri=ckpt.uri, sweep_uid=self.args.sweep_uid)
        self.loss_curve = [r for r in _read_curve(self.store, self.layout) if r.get("step", 0) <= ckpt.step]

    def preempted(self, step: int, files: Mapping[str, bytes | Path]) -> int:
        """A stop was requested after step `step`: checkpoint it, say so in progress.json, return 75 (C4, C5)."""
        uri = self.save_checkpoint(step, files)
        self.progress(step, state=PROGRESS_PREEMPTED)
        print(f"stopped by signal {self.stop.signum} after step {step}: checkpoint {uri}; exit {EXIT_PREEMPTED}",
              flush=True)  # fmt: skip
        return EXIT_PREEMPTED

    # -- results (C8, C9, C15)
    def finish(self, *, val_bpb: float | None = None, device: str = "cpu", world_size: int = 1,
               checkpoint_uri: str | None = None, **fields: Any) -> int:  # fmt: skip
        """Write the loss curve, then results.json (last), then progress "done"; the exit status to return:
        0, or EXIT_FENCED (nothing written) when the sweep was deleted or re-created meanwhile. `fields`
        override RunResults fields (a trainer's own `params`, `flops_per_token`, `core`, `provenance`)."""
        if self.args.sweep_uid and (why := fenced(self.store, SweepLayout(self.args.namespace, self.args.sweep),
                                                  self.args.sweep_uid)):  # fmt: skip
            print(f"not writing results: {why}; exit {EXIT_FENCED}", flush=True)
            return EXIT_FENCED
        self.write_loss_curve()
        self._put(self.layout.results, self.results(val_bpb=val_bpb, device=device, world_size=world_size,
                                                    checkpoint_uri=checkpoint_uri, **fields).to_json())  # fmt: skip
        self.progress(self.steps, state="done")
        return EXIT_DONE

    def results(self, *, val_bpb: float | None, device: str, world_size: int, checkpoint_uri: str | None,
                **fields: Any) -> RunResults:  # fmt: skip
        shape, steps, a = self.shape(), self.steps, self.args
        tokens, wall = self.tokens_at(steps), time.time() - self.started_at
        flops_per_token = int(fields.pop("flops_per_token", shape.flops_per_token))
        values: dict[str, Any] = dict(
            sweep=a.sweep, run=a.run, depth=a.depth, budget_flops=a.budget_flops, shape=shape.to_dict(),
            params=shape.param_counts(), target_tokens=a.target_tokens, tokens=tokens, steps=steps,
            total_batch_tokens=a.total_batch_tokens, flops_per_token=flops_per_token,
            flops=float(tokens * flops_per_token), wall_seconds=wall,
            gpu_seconds=wall * world_size if device != "cpu" else 0.0, world_size=world_size, device=device,
            loss=loss_summary(self.loss_curve), val_bpb=val_bpb, checkpoint_uri=checkpoint_uri,
            loss_curve_key=self.layout.loss_curve, created_at=time.time(), sweep_uid=a.sweep_uid,
            start=self.start or RunStart(kind=START_FRESH, sweep_uid=a.sweep_uid),
        )  # fmt: skip
        values.update(fields)
        return RunResults(**values)


def _read_curve(store: Store, layout: RunLayout) -> list[dict[str, float]]:
    try:
        raw = store.read_bytes(layout.loss_curve).decode()
    except StoreError:
        return []
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def read_checkpoint(store: Store, prefix: str, owners: frozenset[str] | None = None) -> Checkpoint:
    """A checkpoint's files, each checked against the manifest's size and sha256; ValueError when one does
    not (or, with `owners`, when another sweep wrote it). Also what reads a finished run's checkpoint to
    evaluate it (miniseries_trainer.adapters.nanochat_eval)."""
    manifest = CheckpointManifest.from_json(store.read_bytes(prefix + "manifest.json"))
    if foreign(manifest.sweep_uid, owners):
        raise ValueError(f"written by sweep uid {manifest.sweep_uid}, not this sweep's")
    files = {}
    for f in manifest.files:
        data = store.read_bytes(prefix + f.name)
        if len(data) != f.bytes or hashlib.sha256(data).hexdigest() != f.sha256:
            raise ValueError(f"{f.name} does not match its manifest entry")
        files[f.name] = data
    return Checkpoint(manifest.step, manifest.tokens, files, join_uri(store.uri, prefix))


def open_run(argv: Sequence[str] | None = None, *, install_signals: bool = True) -> TrainerRun:
    """The run this process was started for: its flags, its store (retrying outages), the stop flag
    (SIGTERM/SIGINT handlers installed) and, with --metrics-port, the /metrics endpoint."""
    args = parse_run_args(argv)
    store = RetryingStore(open_store(args.store), RetryPolicy(budget_seconds=300.0))
    run = TrainerRun(args=args, store=store)
    if install_signals:
        run.stop.install()
    if args.metrics_port:
        labels = {"sweep_namespace": args.namespace, "sweep": args.sweep, "depth": str(args.depth), "run": args.run}
        run.metrics = MetricsServer(args.metrics_port, labels)
        run.metrics.set("miniseries_train_steps_planned", run.steps)
    return run
