"""nanochat's own `scripts/base_train.py`, unmodified, as a trainer of contract v1 (issue 31).

    python -m miniseries_trainer.adapters.nanochat --nanochat-dir DIR -- <the run's contract flags>

nanochat reads everything from NANOCHAT_BASE_DIR and its command line, so one attempt is: a fresh
base directory with the sweep's shards as `base_data_climbmix/shard_*.parquet` (the last one is the
validation split in both projects), nanochat's own tokenizer trained on them (`scripts.tok_train`:
it cannot read ours), the run's newest store checkpoint (if any) put back where base_train resumes
from, then base_train as a child whose stdout lines become progress, the loss curve and /metrics
through the kit. Each save nanochat makes is copied into the store as a contract checkpoint.

nanochat does not checkpoint on SIGTERM: the stop is forwarded, and the newest save it had made is
the run's checkpoint; the steps since are lost (the check's C4 says "partial"). Things nanochat
cannot be told: the seed (fixed at 42 in nanochat/common.py), the warmdown shape (linear), the
metrics port (this process serves it). Nor can it train a width under 24 (its smear gate reads 24
channels): such a run is refused (exit 2). Each checkpoint carries nanochat's tokenizer, so that
nanochat_eval.py can score it with our evaluators (val bpb on the same bytes as our models, CORE).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from miniseries.contract.exits import EXIT_PREEMPTED
from miniseries.contract.preemption import PROGRESS_PREEMPTED
from miniseries.contract.results import Provenance
from miniseries.contract.shapes import SCALING_PARAMS_CONVENTION
from miniseries.contract.store import open_store
from miniseries.contract.trainer_kit import TrainerRun, open_run
from miniseries_trainer.origins import dataset_hash, git_commit

#: nanochat's tokenizer files (scripts/tok_train.py writes them to <base>/tokenizer/).
TOKENIZER_FILES = ("tokenizer.pkl", "token_bytes.pt")

#: base_train's per-step line: `step 00012/00112 (10.71%) | loss: 6.1 | lrm: .. | dt: 80.1ms | tok/sec: 51,000 | bf16_mfu: 0.01 | ...`.
#: It prints the 0-based step after that optimizer step, so step s means s + 1 steps done.
STEP_LINE = re.compile(
    r"^step (\d+)/(\d+) .*?\| loss: ([-\d.naife]+) .*?\| dt: ([\d.]+)ms \| tok/sec: ([\d,]+) \| \w*mfu: ([\d.]+)"
)
VAL_LINE = re.compile(r"^Step (\d+) \| Validation bpb: ([\d.]+)")
SAVE_FILE = re.compile(r"^model_(\d{6})\.pt$")
#: nanochat's smear gate: Linear(24, 1) on x[..., :24] (nanochat/gpt.py, GPT.forward).
SMEAR_CHANNELS = 24
#: What results.json's provenance names as the trainer; and the seed nanochat fixes (nanochat/common.py).
TRAINER_NAME = "nanochat scripts/base_train.py"
NANOCHAT_SEED = 42
#: Where --nanochat-dir defaults from (examples/tiny-nanochat.yaml relies on it).
NANOCHAT_DIR_ENV = "MINISERIES_NANOCHAT_DIR"


def adapter_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """The adapter's own flags; the rest (after an optional `--`) are the contract's, as the operator passes them."""
    p = argparse.ArgumentParser(prog="miniseries_trainer.adapters.nanochat")
    # The checkout's path differs per machine while a sweep file does not: the environment may name it.
    env_dir = os.environ.get(NANOCHAT_DIR_ENV)
    p.add_argument("--nanochat-dir", type=Path, default=Path(env_dir) if env_dir else None,
                   help=f"a nanochat checkout (scripts/base_train.py); default ${NANOCHAT_DIR_ENV}")  # fmt: skip
    p.add_argument("--work-dir", type=Path, default=None, help="where NANOCHAT_BASE_DIR goes (default: a temp dir)")
    p.add_argument("--keep-work", action="store_true", help="do not remove the work dir afterwards")
    own, rest = p.parse_known_args([a for a in argv if a != "--"])
    if own.nanochat_dir is None:
        p.error(f"--nanochat-dir is required (or set {NANOCHAT_DIR_ENV}): the nanochat checkout to train with")
    if not (own.nanochat_dir / "scripts" / "base_train.py").is_file():
        p.error(f"--nanochat-dir {own.nanochat_dir}: no scripts/base_train.py there (a nanochat checkout is needed)")
    return own, rest


def device_type(device: str) -> str:
    """--device auto/cpu/cuda as nanochat's --device-type (auto: cuda when torch sees one)."""
    if device != "auto":
        return device
    import torch  # only here: the rest of the adapter runs without it

    return "cuda" if torch.cuda.is_available() else "cpu"


def base_train_argv(run: TrainerRun, device: str, resume_step: int | None) -> list[str]:
    """The run's shape, horizon, batch and schedule as base_train's flags."""
    a = run.args
    eval_tokens = max(a.eval_tokens, a.device_batch_size * a.seq_len)  # at least one batch: a final val bpb
    argv = [
        sys.executable, "-m", "scripts.base_train", "--run", "dummy", f"--device-type={device}",
        f"--depth={a.depth}", f"--aspect-ratio={a.aspect_ratio}", f"--head-dim={a.head_dim}",
        f"--max-seq-len={a.seq_len}", "--window-pattern=L",  # full attention, as ours
        f"--num-iterations={run.steps}", f"--device-batch-size={a.device_batch_size}",
        f"--total-batch-size={a.total_batch_tokens}", f"--warmup-steps={a.warmup_steps}",
        f"--warmdown-ratio={a.warmdown_ratio}", f"--eval-every={run.steps}", f"--eval-tokens={eval_tokens}",
        "--core-metric-every=-1", "--sample-every=-1",
        f"--save-every={a.checkpoint_every if a.checkpoint_every > 0 else -1}",
    ]  # fmt: skip
    if resume_step is not None:
        argv.append(f"--resume-from-step={resume_step}")
    return argv


def lay_out_data(run: TrainerRun, base: Path) -> int:
    """The sweep's parquet shards as nanochat's `base_data_climbmix/shard_NNNNN.parquet`, in order."""
    shards = open_store(run.args.data.rstrip("/"))
    keys = sorted(k for k in shards.list("") if k.endswith(".parquet"))
    if len(keys) < 2:
        raise SystemExit(f"error: --data {run.args.data}: {len(keys)} parquet shards; nanochat needs 2 (train, val)")
    out = base / "base_data_climbmix"
    out.mkdir(parents=True, exist_ok=True)
    for i, key in enumerate(keys):
        (out / f"shard_{i:05d}.parquet").write_bytes(shards.read_bytes(key))
    return len(keys)


def child_env(base: Path) -> dict[str, str]:
    env = dict(os.environ, NANOCHAT_BASE_DIR=str(base), WANDB_MODE="disabled")
    env.pop("PYTHONPATH", None)  # nanochat's own modules come from its checkout (the cwd), not ours
    return env


def train_tokenizer(nanochat: Path, base: Path, vocab_size: int) -> None:
    """nanochat's own BPE on the sweep's train shards (ours is a different format it cannot load)."""
    cmd = [sys.executable, "-m", "scripts.tok_train", f"--vocab-size={vocab_size}"]
    done = subprocess.run(cmd, cwd=nanochat, env=child_env(base), capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(
            f"error: nanochat's tokenizer training failed (exit {done.returncode}):\n{done.stderr[-2000:]}"
        )


@dataclass
class Saves:
    """nanochat's saves (base_checkpoints/d<depth>/{model,meta,optim}_<step>...) copied into the store."""

    run: TrainerRun
    dir: Path
    uploaded: dict[int, str] = field(default_factory=dict)

    def steps(self) -> list[int]:
        found = (SAVE_FILE.match(p.name) for p in self.dir.glob("model_*.pt")) if self.dir.is_dir() else ()
        return sorted(int(m.group(1)) for m in found if m)

    def files(self, step: int) -> dict[str, Path]:
        """The save's model, meta and optimizer files, and nanochat's tokenizer: the model means nothing
        without it, and an evaluation of the checkpoint (nanochat_eval.py) or a resume needs the same one."""
        own = {p.name: p for p in sorted(self.dir.glob(f"*_{step:06d}*"))}
        return own | {name: self.tokenizer_dir / name for name in TOKENIZER_FILES}

    @property
    def tokenizer_dir(self) -> Path:
        return self.dir.parents[1] / "tokenizer"  # <base>/base_checkpoints/d<depth> -> <base>/tokenizer

    def upload_through(self, done: int) -> str | None:
        """Copy every save at a step before `done` (nanochat saves at the top of the step after it, so a
        save is complete once a later step's line is printed, or the child has exited)."""
        for step in self.steps():
            if step < done and step not in self.uploaded:
                self.uploaded[step] = self.run.save_checkpoint(step, self.files(step))
        return self.uploaded[max(self.uploaded)] if self.uploaded else None

    def restore(self, files: dict[str, bytes]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tokenizer_dir.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (self.tokenizer_dir / name if name in TOKENIZER_FILES else self.dir / name).write_bytes(data)


def forward_stop(run: TrainerRun, child: subprocess.Popen[str], stopped: threading.Event) -> None:
    """Pass the kit's stop flag on to base_train (it has no handler of its own: SIGTERM ends it)."""
    while child.poll() is None and not stopped.wait(0.2):
        if run.stop_requested:
            child.send_signal(run.stop.signum or signal.SIGTERM)
            return


def follow(run: TrainerRun, child: subprocess.Popen[str], saves: Saves) -> tuple[int, float | None]:
    """Echo base_train's output, log each step through the kit, copy saves as they complete; the last step
    done and the last val bpb."""
    val_bpb, done = None, 0
    assert child.stdout is not None
    for line in child.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if m := STEP_LINE.match(line):
            done = int(m.group(1)) + 1
            mfu = float(m.group(6)) / 100  # nanochat prints percent of its bf16 peak
            run.log(done, float(m.group(3)), tokens_per_second=float(m.group(5).replace(",", "")), mfu=mfu)
            if run.metrics is not None:
                run.metrics.set("miniseries_train_mfu", mfu)
                run.metrics.set("miniseries_train_step_seconds", float(m.group(4)) / 1000)
            saves.upload_through(done)
        elif m := VAL_LINE.match(line):
            val_bpb = float(m.group(2))
    return done, val_bpb


def train(run: TrainerRun, nanochat: Path, base: Path) -> int:
    saves = Saves(run, base / "base_checkpoints" / f"d{run.args.depth}")
    ckpt = run.latest_checkpoint()
    if ckpt is not None:
        saves.restore(ckpt.files)
        saves.uploaded[ckpt.step] = ckpt.uri
    lay_out_data(run, base)
    if not (saves.tokenizer_dir / TOKENIZER_FILES[0]).is_file():  # a resume keeps its checkpoint's tokenizer
        train_tokenizer(nanochat, base, run.args.vocab_size)
    run.progress(ckpt.step if ckpt else 0)
    device = device_type(run.args.device)
    argv = base_train_argv(run, device, ckpt.step if ckpt else None)
    print("$ " + " ".join(argv), flush=True)
    child = subprocess.Popen(argv, cwd=nanochat, env=child_env(base), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, bufsize=1)  # fmt: skip
    stopped = threading.Event()
    threading.Thread(target=forward_stop, args=(run, child, stopped), daemon=True).start()
    done, val_bpb = follow(run, child, saves)
    rc = child.wait()
    stopped.set()
    # A clean exit has finished every save; a stopped child may have died inside one: only saves a later
    # step's line vouches for are copied then.
    last = saves.upload_through(run.steps + 1 if rc == 0 else done)
    if run.stop_requested:
        newest = max(saves.uploaded, default=0)
        run.progress(newest, state=PROGRESS_PREEMPTED)
        print(f"stopped by signal {run.stop.signum}; nanochat does not save on a stop: the run's checkpoint is its "
              f"last save, step {newest} ({last}); exit {EXIT_PREEMPTED}", flush=True)  # fmt: skip
        return EXIT_PREEMPTED
    if rc != 0:
        print(f"nanochat's base_train exited {rc}", flush=True)
        return rc if rc > 0 else 1
    return run.finish(val_bpb=val_bpb, device=device, checkpoint_uri=last,
                      provenance=provenance(run, nanochat, saves.tokenizer_dir, device))  # fmt: skip


def provenance(run: TrainerRun, nanochat: Path, tokenizer_dir: Path, device: str) -> Provenance:
    """What the report compares: nanochat as the trainer, the same shards as the sweep's (their manifest's
    hash, as the built-in trainer records it), nanochat's own tokenizer, and the conventions of the numbers
    in results.json: params and FLOPs are the miniseries shape's (shapes.py), which leaves out what nanochat
    adds to it (value embeddings, gates, per-layer scalars)."""
    data_sha, data_kind = dataset_hash(open_store(run.args.data.rstrip("/")))
    tok = tokenizer_dir / TOKENIZER_FILES[0]
    return Provenance(
        trainer=TRAINER_NAME, source_commit=git_commit(nanochat), python_version=platform.python_version(),
        device_name=device, device_count=1, dataset_uri=run.args.data, dataset_manifest_sha256=data_sha,
        dataset_manifest_kind=data_kind,
        tokenizer_uri=f"nanochat scripts.tok_train --vocab-size={run.args.vocab_size}",
        tokenizer_sha256=hashlib.sha256(tok.read_bytes()).hexdigest() if tok.is_file() else None,
        params_convention=f"{SCALING_PARAMS_CONVENTION} of the miniseries shape (nanochat's extras not counted)",
        flops_convention="6N+12LdT of the miniseries shape (nanochat's extras not counted)", seed=NANOCHAT_SEED,
        lr_schedule={"kind": "nanochat", "warmup_steps": run.args.warmup_steps,
                     "warmdown_ratio": run.args.warmdown_ratio, "warmdown_shape": "linear"},
    )  # fmt: skip


def check_shape(run: TrainerRun) -> None:
    """nanochat's smear gate reads the first SMEAR_CHANNELS channels of the embedding (nanochat/gpt.py):
    a narrower model fails inside its first forward; refused here, naming the flags (exit 2)."""
    width = run.shape().n_embd
    if width < SMEAR_CHANNELS:
        a = run.args
        print(f"error: --depth={a.depth} --aspect-ratio={a.aspect_ratio} --head-dim={a.head_dim}: width {width}; "
              f"nanochat's model needs a width of at least {SMEAR_CHANNELS} (its smear gate reads that many "
              "channels), so this depth cannot be trained by nanochat", file=sys.stderr, flush=True)  # fmt: skip
        raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    own, contract_argv = adapter_args(sys.argv[1:] if argv is None else argv)
    run = open_run(contract_argv)
    check_shape(run)
    work = own.work_dir or Path(tempfile.mkdtemp(prefix="nanochat-"))
    try:
        return train(run, own.nanochat_dir.resolve(), work / "base")
    finally:
        if not own.keep_work:
            shutil.rmtree(work / "base" if own.work_dir else work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
