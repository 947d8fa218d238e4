"""`miniseries trainer check -- COMMAND...`: does a trainer follow the contract (contract/trainer_contract.py)?

It runs COMMAND as the operator would, for one tiny run of a one-depth sweep, against a temporary
local store: the flags are the operator's (plan/trainer_argv.py, with a sweep uid as in cluster mode),
the environment the local runner's. The first attempt gets SIGTERM as soon as it reports progress and
must checkpoint and exit 75; the second, started with the same flags, must resume from that checkpoint,
finish, exit 0 and leave a valid results.json. Then every clause is judged from what it wrote (the
store before and after) and how it exited: pass, fail, partial or skip, each with its reason.

Never imports torch: the trainer is a separate process.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from miniseries.api.spec import PlannedRun, ScalingSweep, ScalingSweepSpec
from miniseries.api.sweepfile import parse_sweep
from miniseries.contract.doc import DocError
from miniseries.contract.layout import LOCAL_NAMESPACE, RunLayout, SweepIdentity, SweepLayout, claim
from miniseries.contract.preemption import EXIT_PREEMPTED, PROGRESS_PREEMPTED
from miniseries.contract.results import CheckpointManifest, Progress, ResultsError, checkpoint_steps, read_results
from miniseries.contract.store import LocalStore, StoreError, path_to_uri
from miniseries.contract.trainer_contract import CLAUSES, REQUIRED, REQUIRED_METRICS
from miniseries.contract.trainer_kit import FLAGS, env_name
from miniseries.local.children import tail
from miniseries.local.runner import Display, LocalSweep, child_env, free_port, prepare_data, train_tokenizer
from miniseries.plan.planner import make_plan
from miniseries.plan.trainer_argv import trainer_flags

PASS, FAIL, PARTIAL, SKIP = "pass", "fail", "partial", "skip"
SWEEP = "check"

#: The tiny sweep's model and schedule (examples/tiny.yaml): seconds per run on a CPU.
TINY_SPEC: dict[str, Any] = {
    "model": {"aspectRatio": 16, "headDim": 16, "vocabSize": 1024, "sequenceLength": 128},
    "training": {"mode": "ratio", "tokensPerParam": 8, "totalBatchTokens": 4096, "deviceBatchSize": 32,
                 "warmupSteps": 5, "checkpointEvery": 25, "evalTokens": 8192},
    "resources": {"gpusPerRun": 1, "nodeGpus": 1, "gpuType": "cpu", "peakFlopsPerGpu": 2.0e11, "assumedMfu": 0.02},
    "cost": {"pricePerGpuHour": 0.0},
    "data": {"tokenizerTrainChars": 2_000_000},
}  # fmt: skip


@dataclass
class CheckOptions:
    command: list[str]
    depth: int = 2
    steps: int | None = None  # default: the plan's
    checkpoint_every: int | None = None  # default: the tiny sweep's
    stop_after_step: int = 1  # SIGTERM at the first progress at or past this step
    grace_seconds: float = 60.0  # SIGTERM -> exit, as a pod's terminationGracePeriodSeconds
    start_seconds: float = 300.0  # until the first progress.json
    run_seconds: float = 600.0  # for each attempt
    data_uri: str | None = None  # default: prepared into the temporary store (stdlib prose)
    tokenizer_uri: str | None = None  # default: trained there (python -m miniseries_trainer.tokenizer)
    device: str = "cpu"
    workdir: Path | None = None  # default: a temporary directory, removed afterwards


@dataclass
class Verdict:
    id: str
    title: str
    level: str
    status: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return dict(self.__dict__)


@dataclass
class Attempt:
    """One start of the trainer and what was seen of it."""

    rc: int | None = None  # None: killed after the grace period
    progress: list[Progress] = field(default_factory=list)
    progress_errors: list[str] = field(default_factory=list)
    signalled_at_step: int | None = None
    checkpoints_at_signal: tuple[int, ...] = ()
    metrics_text: str | None = None
    metrics_error: str | None = None
    seconds: float = 0.0
    timed_out: bool = False
    stale: bytes | None = None  # progress.json as the previous attempt left it: not this attempt's


@dataclass
class Session:
    """The run under check: its store, flags, and the two attempts."""

    store: LocalStore
    run: RunLayout
    planned: PlannedRun
    argv: list[str]
    uid: str
    metrics_port: int
    log: Path
    keys_before: set[str]
    first: Attempt = field(default_factory=Attempt)
    second: Attempt | None = None
    checkpoints_before_second: tuple[int, ...] = ()


# ---------------------------------------------------------------- setting up one run


def tiny_sweep(store_dir: Path, depth: int) -> ScalingSweep:
    spec = dict(TINY_SPEC, depths=[depth], store={"uri": path_to_uri(store_dir)})
    spec["data"] = dict(spec["data"], shardsUri=path_to_uri(store_dir / "data" / "shards"))
    return parse_sweep({"apiVersion": "miniseries.dev/v1alpha1", "kind": "ScalingSweep",
                        "metadata": {"name": SWEEP}, "spec": spec})  # fmt: skip


def prepare_inputs(opts: CheckOptions, store_dir: Path, uid: str, out: TextIO) -> ScalingSweepSpec:
    """The spec of the tiny sweep, its store key claimed by sweep `uid`, with its data and tokenizer: given,
    or made in the store as the local runner does."""
    ls = LocalSweep(tiny_sweep(store_dir, opts.depth), store_dir, eval_bundle=None)
    claim(
        ls.store, ls.layout, SweepIdentity(namespace=LOCAL_NAMESPACE, name=SWEEP, uid=uid), [r.name for r in ls.runs()]
    )
    display = Display(total_runs=1, total_flops=0.0, out=out)
    data = ls.spec.data.model_copy()
    if opts.data_uri:
        data.shards_uri = opts.data_uri
    else:
        prepare_data(ls, display)
    if opts.tokenizer_uri:
        data.tokenizer_uri = opts.tokenizer_uri
    else:
        train_tokenizer(ls, display)
    return ls.spec.model_copy(update={"data": data})


def planned_run(spec: ScalingSweepSpec, opts: CheckOptions) -> tuple[ScalingSweepSpec, PlannedRun]:
    run = make_plan(spec).runs[0]
    if opts.steps is not None:
        run = run.model_copy(update={"steps": opts.steps, "target_tokens": opts.steps * run.total_batch_tokens})
    if opts.checkpoint_every is not None:
        training = spec.training.model_copy(update={"checkpoint_every": opts.checkpoint_every})
        spec = spec.model_copy(update={"training": training})
    return spec, run


def operator_env() -> dict[str, str]:
    """The local runner's child environment, without MINISERIES_<FLAG> variables: an operator's pod has
    none (and the built-in trainer refuses them in cluster mode)."""
    flags = {env_name(f) for f in FLAGS} | {env_name("core-allow-partial")}
    return {k: v for k, v in child_env().items() if k not in flags}


# ---------------------------------------------------------------- running it


def _read_progress(s: Session, attempt: Attempt) -> Progress | None:
    try:
        raw = s.store.read_bytes(s.run.progress)
    except StoreError:
        return None
    if raw == attempt.stale:
        return None
    try:
        p = Progress.from_json(raw)
    except (ValueError, DocError) as e:
        attempt.progress_errors.append(f"progress.json is not a Progress document: {str(e)[:200]}")
        return None
    if not attempt.progress or attempt.progress[-1].to_dict() != p.to_dict():
        attempt.progress.append(p)
    return p


def _scrape(s: Session, attempt: Attempt) -> None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{s.metrics_port}/metrics", timeout=5) as r:
            attempt.metrics_text = r.read().decode(errors="replace")
    except OSError as e:
        attempt.metrics_error = str(e)


def _start(s: Session) -> subprocess.Popen[bytes]:
    with s.log.open("ab") as log:
        log.write(f"\n$ {' '.join(s.argv)}\n".encode())
        log.flush()
        return subprocess.Popen(s.argv, stdout=log, stderr=subprocess.STDOUT, env=operator_env(),
                                start_new_session=True)  # fmt: skip


def _signal(proc: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signum)  # the process group: a wrapper script and what it started


def _wait(proc: subprocess.Popen[bytes], seconds: float, attempt: Attempt, s: Session) -> None:
    """Wait for the exit, reading progress meanwhile; SIGKILL (rc None) after `seconds`."""
    deadline = time.monotonic() + seconds
    while proc.poll() is None and time.monotonic() < deadline:
        _read_progress(s, attempt)
        time.sleep(0.05)
    if proc.poll() is None:
        _signal(proc, signal.SIGKILL)
        proc.wait()
        attempt.timed_out = True
        return
    attempt.rc = proc.returncode
    _read_progress(s, attempt)


def first_attempt(s: Session, opts: CheckOptions) -> None:
    """Start, wait for the first progress at or past --stop-after-step, scrape /metrics, SIGTERM, wait for the exit."""
    a, t0 = s.first, time.monotonic()
    proc = _start(s)
    deadline = t0 + opts.start_seconds
    while proc.poll() is None and time.monotonic() < deadline:
        p = _read_progress(s, a)
        if p is not None and p.step >= max(1, opts.stop_after_step):
            _scrape(s, a)
            a.checkpoints_at_signal = tuple(checkpoint_steps(s.store, s.run))
            a.signalled_at_step = p.step
            _signal(proc, signal.SIGTERM)
            _wait(proc, opts.grace_seconds, a, s)
            break
        time.sleep(0.05)
    else:
        _wait(proc, 0.0 if proc.poll() is None else 1.0, a, s)
    a.seconds = time.monotonic() - t0


def second_attempt(s: Session, opts: CheckOptions) -> None:
    s.checkpoints_before_second = tuple(checkpoint_steps(s.store, s.run))
    s.second = Attempt()
    with contextlib.suppress(StoreError):
        s.second.stale = s.store.read_bytes(s.run.progress)
    t0 = time.monotonic()
    _wait(_start(s), opts.run_seconds, s.second, s)
    s.second.seconds = time.monotonic() - t0


def run_check(opts: CheckOptions, out: TextIO = sys.stdout) -> tuple[list[Verdict], Session]:
    """Run the trainer twice (stopped, then resumed) and judge every clause; what it does goes to `out`."""

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    with contextlib.ExitStack() as stack:
        work = opts.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="miniseries-check-")))
        store_dir = work / "store"
        uid = str(uuid.uuid4())
        spec, run = planned_run(prepare_inputs(opts, store_dir, uid, out), opts)
        layout = SweepLayout(LOCAL_NAMESPACE, SWEEP)
        store = LocalStore(store_dir)
        port = free_port()
        flags = trainer_flags(spec, layout, run, metrics_port=port, device=opts.device, store_uri=spec.store.uri,
                              sweep_uid=uid)  # fmt: skip
        s = Session(store=store, run=layout.run(run.name), planned=run, argv=[*opts.command, *flags], uid=uid,
                    metrics_port=port, log=work / "trainer.log", keys_before=set(store.list("")))  # fmt: skip
        say(f"checking {' '.join(opts.command)}: run {run.name}, {run.steps} steps; log {s.log}")
        first_attempt(s, opts)
        say(
            f"first attempt: exit {s.first.rc} after {s.first.seconds:.1f} s (SIGTERM at step {s.first.signalled_at_step})"
        )
        if s.first.rc != 0 and s.first.signalled_at_step is not None:
            second_attempt(s, opts)
            assert s.second is not None
            say(f"second attempt: exit {s.second.rc} after {s.second.seconds:.1f} s")
        verdicts = judge(s)
        if any(v.status == FAIL for v in verdicts):
            say(f"trainer log (last lines):\n{tail(s.log, 15)}")
        return verdicts, s


# ---------------------------------------------------------------- judging


def verdict(cid: str, status: str, reason: str) -> Verdict:
    c = next(c for c in CLAUSES if c.id == cid)
    return Verdict(c.id, c.title, c.level, status, reason)


def judge(s: Session) -> list[Verdict]:
    """One verdict per clause, in the contract's order."""
    judges: dict[str, Callable[[Session], tuple[str, str]]] = {
        "C1": judge_flags, "C2": judge_progress, "C3": judge_metrics, "C4": judge_stop, "C5": judge_stop_progress,
        "C6": judge_checkpoints, "C7": judge_resume, "C8": judge_results, "C9": judge_results_match,
        "C10": judge_sweep_uid, "C11": judge_prefix, "C12": judge_loss_curve,
    }  # fmt: skip
    out = []
    for c in CLAUSES:
        fn = judges.get(c.id)
        status, reason = fn(s) if fn else (SKIP, c.how)
        out.append(verdict(c.id, status, reason))
    return out


def _last_attempt(s: Session) -> Attempt:
    return s.second if s.second is not None else s.first


def judge_flags(s: Session) -> tuple[str, str]:
    a = s.first
    if a.signalled_at_step is not None or any(p.step >= 1 for p in a.progress):
        return PASS, "it accepted the operator's flags and trained"
    if a.rc is not None:
        return FAIL, f"it exited {a.rc} before reporting progress past step 0 (see its log)"
    return FAIL, "no progress.json past step 0 before the start timeout"


def judge_progress(s: Session) -> tuple[str, str]:
    seen = s.first.progress + (s.second.progress if s.second else [])
    errors = s.first.progress_errors + (s.second.progress_errors if s.second else [])
    if errors:
        return FAIL, errors[0]
    if not seen:
        return FAIL, f"no {s.run.progress} was written"
    wrong = [p for p in seen if (p.sweep, p.run, p.depth, p.steps) != (s.run.sweep, s.run.run, s.planned.depth,
                                                                        s.planned.steps)]  # fmt: skip
    if wrong:
        p = wrong[0]
        return FAIL, (f"progress.json names sweep {p.sweep!r} run {p.run!r} depth {p.depth} steps {p.steps}; "
                      f"expected {s.run.sweep!r} {s.run.run!r} {s.planned.depth} {s.planned.steps}")  # fmt: skip
    return PASS, f"{len(seen)} progress documents read, steps {seen[0].step}..{seen[-1].step} of {s.planned.steps}"


def judge_metrics(s: Session) -> tuple[str, str]:
    a = s.first
    if a.metrics_text is None:
        if a.signalled_at_step is None:
            return SKIP, "not scraped: it never reported progress"
        return FAIL, f"nothing served on --metrics-port {s.metrics_port}: {a.metrics_error}"
    missing = [m for m in REQUIRED_METRICS if m not in a.metrics_text]
    if missing:
        return PARTIAL, f"/metrics answered without {', '.join(missing)}"
    return PASS, f"/metrics serves {', '.join(REQUIRED_METRICS)}"


def judge_stop(s: Session) -> tuple[str, str]:
    a = s.first
    if a.signalled_at_step is None:
        return SKIP, "not signalled: it never reported progress past step 0"
    if a.timed_out:
        return FAIL, f"still running after the grace period ({a.seconds:.0f} s after its start): it ignores SIGTERM"
    if a.rc == 0:
        return FAIL, f"it exited 0 after SIGTERM at step {a.signalled_at_step}: the signal was ignored"
    newer = [st for st in s.checkpoints_before_second if st >= a.signalled_at_step]
    if a.rc != EXIT_PREEMPTED:
        saved = f"after a checkpoint at step {newer[-1]}" if newer else "without a checkpoint"
        return FAIL, f"it exited {a.rc} {saved}; after SIGTERM the contract's code is {EXIT_PREEMPTED}"
    if not newer and s.checkpoints_before_second:  # it stops cleanly, resuming from an older save (nanochat)
        older = s.checkpoints_before_second[-1]
        return PARTIAL, (
            f"SIGTERM at step {a.signalled_at_step}, exit {EXIT_PREEMPTED}, but its newest checkpoint is step "
            f"{older}: a stop loses {a.signalled_at_step - older} steps (it does not checkpoint on SIGTERM)"
        )
    if not newer:
        return FAIL, f"it exited {EXIT_PREEMPTED} without a checkpoint at or after step {a.signalled_at_step}"
    return PASS, f"SIGTERM at step {a.signalled_at_step}: checkpoint at step {newer[-1]}, exit {EXIT_PREEMPTED}"


def judge_stop_progress(s: Session) -> tuple[str, str]:
    a = s.first
    if a.rc != EXIT_PREEMPTED:
        return SKIP, f"it did not exit {EXIT_PREEMPTED}"
    last = a.progress[-1] if a.progress else None
    if last is None or last.state != PROGRESS_PREEMPTED:
        return FAIL, f"progress.json says {last.state if last else 'nothing'!r} after exit {EXIT_PREEMPTED}"
    return PASS, f"progress.json: state {PROGRESS_PREEMPTED!r} at step {last.step}"


def _manifest_problem(s: Session, step: int) -> str | None:
    prefix = s.run.checkpoint(step)
    try:
        m = CheckpointManifest.from_json(s.store.read_bytes(prefix + "manifest.json"))
    except (ValueError, DocError, StoreError) as e:
        return f"step {step}: manifest.json is not a CheckpointManifest: {str(e)[:160]}"
    if m.schema_version != 1 or m.step != step:
        return f"step {step}: manifest says schema {m.schema_version}, step {m.step}"
    for f in m.files:
        try:
            data = s.store.read_bytes(prefix + f.name)
        except StoreError:
            return f"step {step}: {f.name} is listed in the manifest but missing"
        if len(data) != f.bytes or hashlib.sha256(data).hexdigest() != f.sha256:
            return f"step {step}: {f.name} does not match its size or sha256 in the manifest"
    return None


def judge_checkpoints(s: Session) -> tuple[str, str]:
    steps = checkpoint_steps(s.store, s.run)
    if not steps and not s.checkpoints_before_second:
        return FAIL, f"no complete checkpoint (ckpt/step_<n>/manifest.json) under {s.run.checkpoints}"
    problems = [p for st in steps if (p := _manifest_problem(s, st))]
    if problems:
        return FAIL, problems[0]
    seen = sorted(set(steps) | set(s.checkpoints_before_second))
    return PASS, f"checkpoints at steps {seen} verify against their manifests"


def judge_resume(s: Session) -> tuple[str, str]:
    if s.second is None or not s.checkpoints_before_second:
        return SKIP, "no checkpoint to resume from before the second attempt"
    newest = s.checkpoints_before_second[-1]
    try:
        res = read_results(s.store, s.run)
    except ResultsError:
        res = None
    if res is not None and res.start is not None:
        if res.start.kind == "checkpoint" and res.start.step == newest:
            return PASS, f"resumed from its checkpoint at step {newest} (results.json start)"
        return (
            FAIL,
            f"results.json says it started {res.start.kind} at step {res.start.step}; newest checkpoint {newest}",
        )
    first = s.second.progress[0].step if s.second.progress else None
    if first is None:
        return FAIL, "no evidence of a resume (no results.json start, no progress after the restart)"
    if first < newest:
        return FAIL, f"its first progress after the restart was step {first}; the newest checkpoint is step {newest}"
    if newest > 1:  # a fresh start would have reported step 1 first
        return PASS, f"its first progress after the restart was step {first}, from its checkpoint at step {newest}"
    return PARTIAL, f"no results.json start; its first progress was step {first}, its checkpoint step {newest}"


def judge_results(s: Session) -> tuple[str, str]:
    a = _last_attempt(s)
    try:
        res = read_results(s.store, s.run)
    except ResultsError as e:
        return FAIL, f"results.json does not parse: {str(e)[:240]}"
    if a.rc != 0:
        return FAIL, f"its last attempt exited {'(killed)' if a.rc is None else a.rc}, not 0"
    if res is None:
        return FAIL, f"it exited 0 without writing {s.run.results}"
    return PASS, "exit 0 with a RunResults document"


def judge_results_match(s: Session) -> tuple[str, str]:
    try:
        res = read_results(s.store, s.run)
    except ResultsError:
        return SKIP, "results.json does not parse (C8)"
    if res is None:
        return SKIP, "no results.json (C8)"
    p = s.planned
    expected = {"sweep": s.run.sweep, "run": s.run.run, "depth": p.depth, "steps": p.steps,
                "tokens": p.steps * p.total_batch_tokens, "total_batch_tokens": p.total_batch_tokens}  # fmt: skip
    wrong = [f"{k} {getattr(res, k)!r} (expected {v!r})" for k, v in expected.items() if getattr(res, k) != v]
    final = res.loss.final
    if final is None or not math.isfinite(final):
        wrong.append(f"loss.final {final!r} (expected a finite number)")
    if wrong:
        return FAIL, "results.json: " + "; ".join(wrong)
    return PASS, f"the planned run: {p.steps} steps, {res.tokens:,} tokens, final loss {final:.4f}"


def judge_sweep_uid(s: Session) -> tuple[str, str]:
    uids: list[tuple[str, str | None]] = [("progress.json", p.sweep_uid) for p in s.first.progress]
    uids += [(f"checkpoint {st}", _manifest_uid(s, st)) for st in checkpoint_steps(s.store, s.run)]
    with contextlib.suppress(ResultsError):
        if (res := read_results(s.store, s.run)) is not None:
            uids.append(("results.json", res.sweep_uid))
    wrong = [(what, u) for what, u in uids if u != s.uid]
    if wrong:
        return FAIL, f"{wrong[0][0]} has sweep_uid {wrong[0][1]!r}, not --sweep-uid {s.uid}"
    if not uids:
        return SKIP, "no document written"
    return PASS, f"{len(uids)} documents carry --sweep-uid"


def _manifest_uid(s: Session, step: int) -> str | None:
    try:
        return CheckpointManifest.from_json(s.store.read_bytes(s.run.checkpoint(step) + "manifest.json")).sweep_uid
    except (ValueError, DocError, StoreError):
        return None


def judge_prefix(s: Session) -> tuple[str, str]:
    outside = sorted(k for k in set(s.store.list("")) - s.keys_before if not k.startswith(s.run.root))
    if outside:
        return FAIL, f"{len(outside)} object(s) written outside {s.run.root}, e.g. {outside[0]}"
    return PASS, f"everything it wrote is under {s.run.root}"


def judge_loss_curve(s: Session) -> tuple[str, str]:
    try:
        raw = s.store.read_bytes(s.run.loss_curve).decode()
        rows = [json.loads(line) for line in raw.splitlines() if line.strip()]
    except StoreError:
        return FAIL, f"no {s.run.loss_curve}"
    except ValueError as e:
        return FAIL, f"loss_curve.jsonl is not JSON lines: {e}"
    bad = [r for r in rows if not all(isinstance(r.get(k), int | float) for k in ("step", "tokens", "loss"))]
    if bad or not rows:
        return FAIL, f"rows without numeric step, tokens, loss: {bad[0] if bad else 'no rows'}"
    return PASS, f"{len(rows)} rows, steps {rows[0]['step']}..{rows[-1]['step']}"


def required_failed(verdicts: list[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if v.level == REQUIRED and v.status == FAIL]
