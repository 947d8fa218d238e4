"""The embedded runner: the operator's plan, executed as local trainer processes.

`miniseries run SWEEP.yaml --local` makes the same plan as the operator
(`make_plan`), rewrites the spec's store and data URIs into a local directory
(default ./miniseries-store), prepares data (the standard library's English
prose unless shards are there already: nothing to install) and the tokenizer
once per sweep if they are missing, then runs every planned run as a subprocess

    python -m miniseries_trainer.train <trainer_flags(...)>        (1 GPU/CPU per run)
    python -m torch.distributed.run --nproc-per-node G ... -m ...  (gpusPerRun > 1, gloo on CPU)

one at a time, smallest first, showing live progress from progress.json.
What runs next, what is finished and what is resumed is decided as the operator decides it
(control.decide.runs.decide_runs over the same store observation, control.io.store_reads.observe_runs,
with one slot and this process's child as the only job), in the operator's run states:
finished runs (results.json exists) are Succeeded and skipped; an interrupted run resumes
from its newest checkpoint (the trainer gets --resume=auto); an unreadable results.json is
evaluated again from the final checkpoint (ResultsCorrupt), or fails the run without one. Ctrl-C stops the
child cleanly (SIGTERM to its process group, SIGKILL after a grace period) and
keeps every checkpoint. When all runs are done the report is written.
CORE is evaluated when the spec names a local eval bundle or one is in the
cache (`miniseries data fetch --eval-bundle`); otherwise the run says how to get it.

This module never imports torch: the trainer is a separate process.
"""

from __future__ import annotations

import importlib
import math
import os
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TextIO

from miniseries.api.spec import (
    PlannedRun,
    PlanStatus,
    RunForecast,
    RunState,
    RunStatus,
    ScalingSweep,
    ScalingSweepSpec,
)
from miniseries.contract.layout import (
    LOCAL_NAMESPACE,
    ClaimRefused,
    SweepLayout,
    claim,
    join_uri,
    local_identity,
    migrate_legacy,
    read_manifest,
)
from miniseries.contract.results import Progress, ResultsError, checkpoint_steps, read_progress, read_results
from miniseries.contract.store import LocalStore, StoreError, path_to_uri
from miniseries.control.decide.observations import JobPhase, ObservedJob, TokenizerState
from miniseries.control.decide.runs import RunDecision, Slots, decide_runs
from miniseries.control.io.store_reads import observe_runs, trained_tokenizer_ready
from miniseries.data.fetch import cached_eval_bundle, eval_bundle_dir
from miniseries.local.children import Stopped, run_child, tail
from miniseries.plan.planner import make_plan
from miniseries.plan.trainer_argv import (
    TOKENIZER_MODULE,
    TRAINER_MODULE,
    custom_trainer_args,
    tokenizer_flags,
    trainer_flags,
)

#: Where the local runner keeps prepared text shards, relative to the store root.
DATA_KEY = "data/shards/"
#: One run at a time, on whatever GPUs (or CPU processes) it asks for.
LOCAL_SLOTS = Slots(runs=1, gpus=sys.maxsize)
#: A run whose progress.json moved this recently is taken to be training (another `miniseries run`).
LIVE_PROGRESS_SECONDS = 120.0


class LocalRunError(RuntimeError):
    """Something the user must fix or look at; the message says what and where."""


@dataclass
class LocalSweep:
    """One sweep bound to a local store directory."""

    sweep: ScalingSweep
    store_dir: Path
    python: str = sys.executable
    device: str = "auto"
    # Overridable (env MINISERIES_TRAINER_MODULE / MINISERIES_TOKENIZER_MODULE) to run a
    # development trainer, or a stand-in that honours the same flags and files in tests.
    trainer_module: str = field(default_factory=lambda: os.environ.get("MINISERIES_TRAINER_MODULE", TRAINER_MODULE))
    tokenizer_module: str = field(
        default_factory=lambda: os.environ.get("MINISERIES_TOKENIZER_MODULE", TOKENIZER_MODULE)
    )
    # The eval bundle when the spec names none here: the one `miniseries data fetch --eval-bundle` put in the cache.
    eval_bundle: Path | None = field(default_factory=cached_eval_bundle)
    spec: ScalingSweepSpec = field(init=False)

    def __post_init__(self) -> None:
        self.store_dir = self.store_dir.resolve()
        self.spec = localize_spec(self.sweep.spec, self.store_dir, eval_bundle=self.eval_bundle)

    @property
    def name(self) -> str:
        return self.sweep.name

    @property
    def store(self) -> LocalStore:
        return LocalStore(self.store_dir)

    @property
    def layout(self) -> SweepLayout:
        return SweepLayout(LOCAL_NAMESPACE, self.name)

    @cached_property
    def plan(self) -> PlanStatus:
        """The operator's plan, its runs in the local order: smallest first, so a newcomer sees results sooner."""
        plan = make_plan(self.spec)
        return plan.model_copy(update={"runs": sorted(plan.runs, key=lambda r: (r.flops, r.depth))})

    def runs(self) -> list[PlannedRun]:
        return list(self.plan.runs)

    def log_path(self, run: PlannedRun) -> Path:
        return self.store_dir / self.layout.run(run.name).root / "train.log"


def localize_spec(spec: ScalingSweepSpec, store_dir: Path, eval_bundle: Path | None = None) -> ScalingSweepSpec:
    """The spec with its store (and data, unless already local) inside `store_dir`.

    Remote URIs (s3://) cannot be reached from a laptop run, and file:// ones
    outside the local store would scatter artifacts; the shards go to
    <store>/data/shards/ (prepared there if missing), the tokenizer is trained
    into the store unless a local one is given, and a local eval bundle is kept,
    else `eval_bundle` (a directory) is used when given.
    """
    root_uri = path_to_uri(store_dir)
    data = spec.data.model_copy()
    data.shards_uri = join_uri(root_uri, DATA_KEY)
    if data.tokenizer_uri and not _local_exists(data.tokenizer_uri):
        data.tokenizer_uri = None
    if data.eval_bundle_uri and not _local_exists(data.eval_bundle_uri):
        data.eval_bundle_uri = None
    if data.eval_bundle_uri is None and eval_bundle is not None:
        data.eval_bundle_uri = path_to_uri(eval_bundle)
    store = spec.store.model_copy()
    store.uri = root_uri
    store.credentials_secret = None
    return spec.model_copy(update={"store": store, "data": data})


def _local_exists(uri: str) -> bool:
    return uri.startswith("file://") and Path(uri[len("file://") :]).exists()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- commands


def train_command(ls: LocalSweep, run: PlannedRun, metrics_port: int) -> list[str]:
    flags = trainer_flags(
        ls.spec, ls.layout, run, metrics_port=metrics_port, device=ls.device, store_uri=ls.spec.store.uri
    )
    if ls.spec.trainer is not None:  # spec.trainer: its command as given (its image is the cluster's business)
        return [*ls.spec.trainer.command, *custom_trainer_args(ls.spec.trainer, flags)]
    if run.gpus > 1:  # `--` ends torchrun's options: else it reads the trainer's --run= as its --run-path
        return [ls.python, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={run.gpus}",
                "-m", "--", ls.trainer_module, *flags]  # fmt: skip
    return [ls.python, "-m", ls.trainer_module, *flags]


def tokenizer_command(ls: LocalSweep) -> list[str]:
    return [ls.python, "-m", ls.tokenizer_module, *tokenizer_flags(ls.spec, ls.layout)]


def child_env() -> dict[str, str]:
    # (the trainer itself picks gloo for multi-process runs on CPU, nccl on GPUs)
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


# ---------------------------------------------------------------- progress display


def _hms(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


@dataclass
class Display:
    """One status line per tick: the run's progress and the sweep's."""

    total_runs: int
    total_flops: float
    out: TextIO = sys.stdout
    started: float = field(default_factory=time.time)
    done_runs: int = 0
    done_flops: float = 0.0
    total_tokens: int = 0
    done_tokens: int = 0
    _last_len: int = 0
    _last_plain: float = 0.0
    plain_every: float = 10.0  # seconds between lines when stdout is not a terminal (logs, CI)

    def remaining_seconds(self, run: PlannedRun | None, p: Progress | None) -> float | None:
        """Time left for the sweep: the geometric mean of two bounds.

        At the current FLOP/s the rest is overestimated (on a CPU the larger
        models that follow run at more FLOP/s); at the current tokens/s it is
        underestimated (they run at fewer tokens/s). Neither bound alone is
        within a factor of a few for a tiny sweep; their geometric mean is.
        """
        cur_tokens = p.tokens if p and run else 0
        rem_flops = self.total_flops - self.done_flops - cur_tokens * (run.flops_per_token if run else 0)
        rem_tokens = self.total_tokens - self.done_tokens - cur_tokens
        elapsed = time.time() - self.started
        if p is not None and run is not None and p.tokens_per_second:
            tok_rate, flop_rate = p.tokens_per_second, p.tokens_per_second * run.flops_per_token
        elif elapsed > 5 and self.done_tokens > 0:
            tok_rate, flop_rate = self.done_tokens / elapsed, self.done_flops / elapsed
        else:
            return None
        return math.sqrt(max(0.0, rem_flops / flop_rate) * max(0.0, rem_tokens / tok_rate))

    def line(self, run: PlannedRun | None, p: Progress | None) -> str:
        elapsed = time.time() - self.started
        left = self.remaining_seconds(run, p)
        total_eta = elapsed + left if left is not None else None
        sweep = f"sweep {self.done_runs}/{self.total_runs} runs, {_hms(elapsed)} elapsed, ~{_hms(total_eta)} total"
        if run is None:
            return sweep
        if p is None:
            return f"{run.name}: starting... | {sweep}"
        loss = f"{p.loss:.4f}" if p.loss is not None else "-"
        tps = f"{p.tokens_per_second:,.0f}" if p.tokens_per_second else "-"
        return (f"{run.name}: {p.state} step {p.step}/{p.steps} tokens {p.tokens:,} loss {loss} "
                f"{tps} tok/s ETA {_hms(p.eta_seconds)} | {sweep}")  # fmt: skip

    def show(self, text: str) -> None:
        if self.out.isatty():
            pad = max(0, self._last_len - len(text))
            self.out.write("\r" + text + " " * pad)
            self._last_len = len(text)
        elif time.time() - self._last_plain >= self.plain_every:
            self._last_plain = time.time()
            self.out.write(text + "\n")
        self.out.flush()

    def say(self, text: str) -> None:
        if self.out.isatty() and self._last_len:
            self.out.write("\n")
            self._last_len = 0
        self.out.write(text + "\n")
        self.out.flush()


# ---------------------------------------------------------------- stages


def shards_present(ls: LocalSweep) -> bool:
    return any(k.endswith(".parquet") for k in ls.store.list(DATA_KEY))


def prepare_data(ls: LocalSweep, display: Display) -> None:
    """Run `miniseries data prepare` (its function) into <store>/data/shards/ when no shards are there."""
    if shards_present(ls):
        return
    try:
        # The data stage lives with the trainer's data code; imported here so that a
        # store that already has shards never needs it.
        data_prepare = importlib.import_module("miniseries.data.prepare")
    except ModuleNotFoundError as e:
        raise LocalRunError(
            f"no text shards in {ls.spec.data.shards_uri} and the data preparation module is not installed ({e}); "
            "put parquet shards with a `text` column there, or install miniseries with data support"
        ) from None
    display.say(
        f"preparing data shards into {ls.spec.data.shards_uri} (once per store) from the English prose of this "
        "Python's standard library; `miniseries data prepare --source DIR --out URI` takes any other text first"
    )
    try:
        data_prepare.prepare(ls.spec.data.shards_uri, source=data_prepare.STDLIB)
    except (FileNotFoundError, ValueError, StoreError) as e:
        raise LocalRunError(
            f"no text shards in {ls.spec.data.shards_uri} and preparing them failed: {e} "
            f"(`miniseries data prepare --source DIR --out {ls.spec.data.shards_uri}` takes any text)"
        ) from None
    if not shards_present(ls):
        raise LocalRunError(f"data preparation finished but {ls.spec.data.shards_uri} holds no .parquet shards")


def core_line(ls: LocalSweep) -> str:
    """Whether the runs get a CORE score, and how to get one when they do not."""
    if ls.spec.data.eval_bundle_uri:
        return f"CORE: every run is evaluated on the eval bundle {ls.spec.data.eval_bundle_uri}"
    return (
        f"CORE: not evaluated: no eval bundle in {eval_bundle_dir()}; "
        "`miniseries data fetch --eval-bundle` downloads DCLM's (nanochat's eval_bundle.zip) there, and the next "
        "run evaluates every model on it"
    )


def tokenizer_present(ls: LocalSweep) -> bool:
    return bool(ls.spec.data.tokenizer_uri) or trained_tokenizer_ready(ls.store, ls.layout)


def train_tokenizer(ls: LocalSweep, display: Display) -> None:
    if tokenizer_present(ls):
        return
    display.say(f"training the tokenizer (vocab {ls.spec.model.vocab_size}) into {ls.layout.tokenizer}")
    log = ls.store_dir / ls.layout.tokenizer / "tokenizer.log"
    rc = run_child(tokenizer_command(ls), log, child_env())
    if rc != 0 or not tokenizer_present(ls):
        raise LocalRunError(f"tokenizer training failed (exit {rc}); log {log}:\n{tail(log)}")


@dataclass
class LocalForecaster:
    """The run's forecast as the operator makes it (control/io/live_forecasts.py: the same law, prior from
    the finished runs, trend check), every FORECAST_EVERY of its steps, for the status line. Off trend
    (or a non-finite loss) is said once; the local runner flags, it does not stop the run (a local
    sweep has one user, watching)."""

    ls: LocalSweep
    run: PlannedRun
    last_step: int | None = None
    forecast: RunForecast | None = None
    warned: bool = False

    def update(self, p: Progress | None, say: Callable[[str], None]) -> str:
        from miniseries.control.decide.forecast_status import FORECAST_EVERY, describe
        from miniseries.control.io.live_forecasts import make_forecasts

        steps = self.run.steps
        if (
            p is not None
            and 0 < p.step < steps
            and (self.last_step is None or p.step - self.last_step >= max(1, math.ceil(FORECAST_EVERY * steps)))
        ):
            self.last_step = p.step
            observed = observe_runs(self.ls.store, self.ls.layout, self.ls.runs())
            made = make_forecasts(self.ls.store, self.ls.layout, self.ls.spec, self.ls.plan, observed,
                                  {self.run.name: p.step})  # fmt: skip
            self.forecast = made.get(self.run.name)
            if self.forecast is not None and self.forecast.off_trend and not self.warned:
                self.warned = True
                rs = RunStatus(name=self.run.name, depth=self.run.depth, steps=steps, forecast=self.forecast)
                say(f"warning: {describe(rs)}")
        return forecast_text(self.forecast)


def forecast_text(f: RunForecast | None) -> str:
    """'forecast val bpb 3.226±0.055' (or final loss), 'forecast: not enough steps yet (...)', or ''."""
    if f is None:
        return ""
    if f.refused is not None:
        return f"forecast: {f.refused[:80]}"
    value, low, high, what = (
        (f.val_bpb, f.val_bpb_low, f.val_bpb_high, "val bpb") if f.val_bpb is not None
        else (f.final_loss, f.final_loss_low, f.final_loss_high, "loss")
    )  # fmt: skip
    if value is None:
        return ""
    half = max(value - (low if low is not None else value), (high if high is not None else value) - value)
    return f"forecast {what} {value:.3f}±{half:.3f}" + (" OFF TREND" if f.off_trend else "")


def run_one(ls: LocalSweep, run: PlannedRun, display: Display) -> None:
    rl = ls.layout.run(run.name)
    ckpts = checkpoint_steps(ls.store, rl)
    verb = f"resuming {run.name} from step {ckpts[-1]}" if ckpts else f"training {run.name}"
    display.say(
        f"{verb}: {run.steps} steps, {run.training_tokens:,} tokens, {run.flops:.3g} FLOPs (log {ls.log_path(run)})"
    )
    port = free_port()

    forecaster = LocalForecaster(ls, run)

    def tick() -> None:
        p = read_progress(ls.store, rl)
        line = display.line(run, p)
        try:
            fc = forecaster.update(p, display.say)
        except Exception as e:  # a forecast is an extra: never the reason a training stops
            fc = f"forecast failed: {e}"[:80]
        display.show(line + (f" | {fc}" if fc else ""))

    rc = run_child(train_command(ls, run, port), ls.log_path(run), child_env(), on_tick=tick)
    if rc != 0:
        raise LocalRunError(f"{run.name} failed (exit {rc}); its checkpoints are kept, rerun to resume. "
                            f"Log {ls.log_path(run)}:\n{tail(ls.log_path(run))}")  # fmt: skip
    try:
        res = read_results(ls.store, rl)
    except ResultsError as e:
        raise LocalRunError(
            f"{run.name} exited 0 but its results are unreadable: {e}; log {ls.log_path(run)}"
        ) from None
    if res is None:
        raise LocalRunError(f"{run.name} exited 0 but wrote no results.json; log {ls.log_path(run)}")
    display.done_runs += 1
    display.done_flops += run.flops
    display.done_tokens += run.training_tokens
    loss = f"{res.loss.final:.4f}" if res.loss.final is not None else "n/a"
    bpb = f", val bpb {res.val_bpb:.4f}" if res.val_bpb is not None else ""
    display.say(f"{run.name} done in {_hms(res.wall_seconds)}: loss {loss}{bpb}")


def claim_store(ls: LocalSweep, say: Callable[[str], None]) -> None:
    """Claim `<store>/local/<sweep>/` (moving a store of the layout before namespaces there first)."""
    runs = [r.name for r in ls.runs()]
    try:
        if read_manifest(ls.store, ls.layout) is None and ls.store.exists(ls.layout.legacy_spec):
            moved = migrate_legacy(ls.store, ls.layout, local_identity(ls.name), runs)
            say(f"moved {moved} objects of {ls.name} from {ls.layout.legacy_root} to {ls.layout.root} "
                "(the store layout now has a namespace level; `local` for local runs)")  # fmt: skip
        claim(ls.store, ls.layout, local_identity(ls.name), runs)
    except ClaimRefused as e:
        raise LocalRunError(e.message) from None


def tokenizer_state(ls: LocalSweep) -> TokenizerState:
    if ls.spec.data.tokenizer_uri:
        return TokenizerState.NotNeeded
    return TokenizerState.Ready if trained_tokenizer_ready(ls.store, ls.layout) else TokenizerState.Missing


def live_run(ls: LocalSweep) -> ObservedJob | None:
    """A run another process is training now (its progress.json moved lately): the local "job"."""
    for run in ls.runs():
        p = read_progress(ls.store, ls.layout.run(run.name))
        if p is not None and time.time() - p.updated_at < LIVE_PROGRESS_SECONDS:
            return ObservedJob(name=run.name, run=run.name, attempt=1, phase=JobPhase.Running)
    return None


def decide_local(ls: LocalSweep, running: ObservedJob | None = None) -> RunDecision:
    """Each run's state and what to start next, decided as the operator decides (control.runs), from
    the store and the one child this runner may have: one slot, the local plan order, no status kept
    between invocations (the store is the whole memory: results, checkpoints)."""
    jobs = [running] if running is not None else []
    return decide_runs(ls.spec, ls.name, ls.plan, jobs, observe_runs(ls.store, ls.layout, ls.runs()), [],
                       tokenizer_state(ls), datetime.now(UTC), slots=LOCAL_SLOTS)  # fmt: skip


def _failed(rs: RunStatus) -> LocalRunError:
    return LocalRunError(f"{rs.name} failed ({rs.reason}): {rs.message}")


def run_sweep(ls: LocalSweep, *, out: TextIO = sys.stdout, report: bool = True) -> int:
    """The whole local sweep; returns an exit code (0 done, 130 interrupted)."""
    from miniseries.api.sweepfile import save_spec

    runs = ls.runs()
    ls.store.check()

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    claim_store(ls, say)
    save_spec(ls.store, ls.layout, ls.spec)
    first = decide_local(ls)
    done = {r.name for r in first.runs if r.state is RunState.Succeeded}
    for rs in first.runs:
        if rs.message and rs.state is not RunState.Succeeded:  # an unreadable results.json: what happens to it
            say(f"{rs.name}: {rs.message}")
    pending = [r for r in runs if r.name not in done]  # the time estimate covers what is left to train
    display = Display(total_runs=len(runs), total_flops=sum(r.flops for r in pending),
                      total_tokens=sum(r.training_tokens for r in pending), out=out)  # fmt: skip
    display.done_runs = len(done)
    display.say(f"sweep {ls.name}: {len(runs)} runs ({len(done)} already finished), store {ls.store_dir}")
    display.say(core_line(ls))
    try:
        prepare_data(ls, display)
        train_tokenizer(ls, display)
        display.started = time.time()  # throughput is measured over training only
        decision = decide_local(ls)
        while decision.create:
            run, _attempt = decision.create[0]
            run_one(ls, run, display)
            decision = decide_local(ls)
        failed = [rs for rs in decision.runs if rs.state is RunState.Failed]
        if failed:
            raise _failed(failed[0])
    except Stopped:
        display.say(
            "interrupted: the running trainer was stopped; checkpoints are kept. Run the same command to resume."
        )
        return 130
    if report:
        from miniseries.science.report import build_report

        uri, status = build_report(ls.store, ls.layout, ls.spec)
        display.say(f"report: {uri}report.md")
        if status.message:
            display.say(f"report notes: {status.message}")
    return 0


# ---------------------------------------------------------------- status


def run_states(ls: LocalSweep) -> list[dict[str, object]]:
    """One row per planned run, in the operator's run states, from what is in the store."""
    decision = decide_local(ls, live_run(ls))
    rows: list[dict[str, object]] = []
    for run, rs in zip(ls.runs(), decision.runs, strict=True):
        row: dict[str, object] = {"run": run.name, "state": rs.state.value, "step": rs.step, "steps": run.steps,
                                  "flops": run.flops, "loss": rs.loss}  # fmt: skip
        if rs.state is RunState.Succeeded:
            row.update(val_bpb=rs.val_bpb, core=rs.core)
        elif rs.message:
            row.update(reason=rs.reason, message=rs.message)
        elif rs.checkpoint_uri and rs.state is RunState.Pending:
            row.update(message=f"interrupted: resumes from {rs.checkpoint_uri}")
        if rs.state is RunState.Running:  # the operator's live column: where the run is heading
            fc = LocalForecaster(ls, run)
            fc.update(read_progress(ls.store, ls.layout.run(run.name)), lambda _t: None)
            row.update(forecast=forecast_text(fc.forecast) or None)
        rows.append(row)
    return rows
