"""The store's path layout: the one function every part uses to find an artifact.

Keys are relative to the store root (the sweep's `spec.store.uri`):

    <sweep>/sweep.json                      the spec the runs were planned from (report, status)
    <sweep>/tokenizer/                      trained BPE (tokenizer.json + manifest)
    <sweep>/<run>/ckpt/step_<n>/            model, optimizer, loader state, RNG, manifest.json (written last)
    <sweep>/<run>/progress.json             live progress, rewritten while training
    <sweep>/<run>/loss_curve.jsonl          step, tokens, FLOPs, loss, lr per logged step
    <sweep>/<run>/results.json              final results (schema-versioned, see results.py)
    <sweep>/report/                         report.json, report.md, plots

`run` is the plan's run id (d12, or d12-f1e18 in isoflop mode).
"""

from __future__ import annotations

from dataclasses import dataclass

STEP_DIR_DIGITS = 8  # zero-padded so that lexical order is step order


@dataclass(frozen=True)
class SweepLayout:
    sweep: str

    @property
    def root(self) -> str:
        return f"{self.sweep}/"

    @property
    def spec(self) -> str:
        return f"{self.sweep}/sweep.json"

    @property
    def tokenizer(self) -> str:
        return f"{self.sweep}/tokenizer/"

    @property
    def report(self) -> str:
        return f"{self.sweep}/report/"

    def run(self, run: str) -> RunLayout:
        return RunLayout(self.sweep, run)


@dataclass(frozen=True)
class RunLayout:
    sweep: str
    run: str

    @property
    def root(self) -> str:
        return f"{self.sweep}/{self.run}/"

    @property
    def checkpoints(self) -> str:
        return f"{self.root}ckpt/"

    def checkpoint(self, step: int) -> str:
        return f"{self.checkpoints}step_{step:0{STEP_DIR_DIGITS}d}/"

    @property
    def progress(self) -> str:
        return f"{self.root}progress.json"

    @property
    def loss_curve(self) -> str:
        return f"{self.root}loss_curve.jsonl"

    @property
    def results(self) -> str:
        return f"{self.root}results.json"


def step_of_checkpoint_key(key: str) -> int | None:
    """The step number in a `.../ckpt/step_<n>/...` key, or None."""
    for part in key.split("/"):
        if part.startswith("step_") and part[5:].isdigit():
            return int(part[5:])
    return None


def join_uri(root_uri: str, key: str) -> str:
    return root_uri.rstrip("/") + "/" + key.lstrip("/")
