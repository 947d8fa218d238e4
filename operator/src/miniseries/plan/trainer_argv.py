"""The contract between a plan and the trainer: one run's command-line flags, and the tokenizer's.

Both the operator (PyTorchJob and tokenizer Job container args) and the local runner
build the trainer's and the tokenizer's argv here, and the trainer's argparse accepts exactly these flags (a
test parses this output with the trainer's parser), so the two cannot drift.
"""

from __future__ import annotations

from miniseries.api.spec import PlannedRun, Precision, ScalingSweepSpec, TrainerSpec
from miniseries.api.trainer import render
from miniseries.contract.layout import SweepLayout, join_uri
from miniseries.contract.trainer_contract import TEMPLATE_VARIABLES
from miniseries.plan.wsd_branches import run_seed, warmdown_of

TRAINER_MODULE = "miniseries_trainer.train"
TOKENIZER_MODULE = "miniseries_trainer.tokenizer"
DEFAULT_METRICS_PORT = 9400


def trained_tokenizer_uri(spec: ScalingSweepSpec, layout: SweepLayout, store_uri: str | None = None) -> str:
    """Where the sweep trains its own tokenizer: `<store>/<namespace>/<sweep>/tokenizer/`."""
    return join_uri(store_uri or spec.store.uri, layout.tokenizer)


def tokenizer_uri(spec: ScalingSweepSpec, layout: SweepLayout, store_uri: str | None = None) -> str:
    """The sweep's tokenizer: given in the spec, or trained once into the store."""
    return spec.data.tokenizer_uri or trained_tokenizer_uri(spec, layout, store_uri)


def tokenizer_flags(spec: ScalingSweepSpec, layout: SweepLayout) -> list[str]:
    """Flags for `python -m miniseries_trainer.tokenizer`: train the sweep's BPE into the store."""
    return [
        f"--data={spec.data.shards_uri}",
        f"--out={trained_tokenizer_uri(spec, layout)}",
        f"--vocab-size={spec.model.vocab_size}",
        f"--max-chars={spec.data.tokenizer_train_chars}",
    ]


def trainer_flags(
    spec: ScalingSweepSpec,
    layout: SweepLayout,
    run: PlannedRun,
    *,
    metrics_port: int = DEFAULT_METRICS_PORT,
    device: str = "auto",
    store_uri: str | None = None,
    sweep_uid: str | None = None,
) -> list[str]:
    """Flags for `python -m miniseries_trainer.train` (or torchrun ... -m ...).

    `sweep_uid` (the operator's runs): the trainer writes it into its checkpoints and results and
    resumes only from its own sweep's (a deleted sweep's trainer may still be writing under the
    same key), and refuses MINISERIES_<FLAG> overrides from its environment (issue 27)."""
    m, t = spec.model, spec.training
    store = store_uri or spec.store.uri
    flags = [
        f"--namespace={layout.namespace}",
        f"--sweep={layout.sweep}",
        f"--run={run.name}",
        *([f"--sweep-uid={sweep_uid}"] if sweep_uid else []),
        f"--depth={run.depth}",
        f"--aspect-ratio={m.aspect_ratio}",
        f"--head-dim={m.head_dim}",
        f"--vocab-size={m.vocab_size}",
        f"--seq-len={m.sequence_length}",
        f"--target-tokens={run.target_tokens}",
        f"--steps={run.steps}",
        f"--total-batch-tokens={run.total_batch_tokens}",
        f"--device-batch-size={t.device_batch_size}",
        f"--warmup-steps={t.warmup_steps}",
        f"--warmdown-ratio={t.warmdown_ratio}",
        f"--checkpoint-every={t.checkpoint_every}",
        f"--keep-checkpoints={t.keep_checkpoints}",
        f"--eval-tokens={t.eval_tokens}",
        f"--seed={run_seed(t.seed, run.role)}",
        f"--store={store}",
        f"--data={spec.data.shards_uri}",
        f"--tokenizer={tokenizer_uri(spec, layout, store)}",
        f"--metrics-port={metrics_port}",
        f"--device={device}",
        "--resume=auto",
    ]
    if t.precision is not Precision.auto:  # auto is the trainer's own default (bf16 on GPUs)
        flags.append(f"--precision={t.precision.value}")
    if run.budget_flops is not None:
        flags.append(f"--budget-flops={run.budget_flops:g}")
    flags += wsd_flags(layout, run, store)
    if spec.data.eval_bundle_uri:
        flags.append(f"--eval-bundle={spec.data.eval_bundle_uri}")
        if t.core_max_per_task:
            flags.append(f"--core-max-per-task={t.core_max_per_task}")
        if t.core_allow_partial:
            flags.append("--core-allow-partial")
    return flags


def wsd_flags(layout: SweepLayout, run: PlannedRun, store_uri: str) -> list[str]:
    """A wsd run's schedule (plan/wsd_branches.py): constant LR after the warmup, then a (1-sqrt) cooldown over
    its last cooldownSteps (a trunk has none); a trunk checkpoints and keeps every branch's start step,
    a branch starts from its trunk's checkpoint at that step when it has none of its own."""
    if run.role is None:
        return []
    shape, steps = warmdown_of(run.role, run.cooldown_steps)
    flags = [f"--warmdown-shape={shape}", f"--warmdown-steps={steps}"]
    if run.keep_steps:
        flags.append("--keep-steps=" + ",".join(str(s) for s in run.keep_steps))
    if run.trunk is not None and run.start_step is not None:
        flags.append(f"--init-from={trunk_checkpoint_uri(layout, run, store_uri)}")
    return flags


def trunk_checkpoint_uri(layout: SweepLayout, run: PlannedRun, store_uri: str) -> str:
    """Where a wsd branch starts: its trunk's checkpoint at the branch's cooldown start."""
    assert run.trunk is not None and run.start_step is not None
    return join_uri(store_uri, layout.run(run.trunk).checkpoint(run.start_step))


def template_values(flags: list[str]) -> dict[str, str]:
    """The contract's variables for one run, read off its flags (so a `$(variable)` and its flag always
    agree): `--name=value` -> value, a bare `--name` -> "true", a flag the run does not get -> ""."""
    given = {}
    for f in flags:
        name, sep, value = f[2:].partition("=")
        given[name] = value if sep else "true"
    return {var: given.get(flag, "") for var, flag in TEMPLATE_VARIABLES}


def custom_trainer_args(trainer: TrainerSpec, flags: list[str]) -> list[str]:
    """A custom trainer's args for one run (spec.trainer): its own args with the templates filled in from
    `flags`, then the flags themselves unless passFlags is false."""
    values = template_values(flags)
    return [*(render(a, values) for a in trainer.args), *(flags if trainer.pass_flags else [])]
