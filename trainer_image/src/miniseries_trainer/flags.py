"""The trainer's command line: every flag, its check, and its MINISERIES_<FLAG> environment default.

Every flag can also come from the environment as MINISERIES_<FLAG> (dashes as
underscores, e.g. MINISERIES_DEVICE_BATCH_SIZE); a flag on the command line wins.
The operator and the local runner build the flags with
`miniseries.plan.trainer_argv.trainer_flags`, and a test parses that output with this parser.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from miniseries.contract.exits import EXIT_STORE_DENIED, STORE_DENIED_MARKER
from miniseries.contract.layout import LOCAL_NAMESPACE
from miniseries.contract.schedule import SHAPES
from miniseries_trainer import val_trace
from miniseries_trainer.throughput import CPU_PEAK_FLOPS_PER_THREAD

#: The first line of --help.
DESCRIPTION = "Train one miniseries run: parse -> build -> optimizer -> data -> loop -> evaluate -> save."
#: --precision: auto is bf16 on CUDA and fp32 on CPU (precision.py says what each means).
PRECISIONS = ("auto", "fp32", "bf16", "fp8")
#: How long the store may take to answer at the start before the run fails (see --store-outage-seconds).
STARTUP_STORE_SECONDS = 10.0


def fail(message: str) -> NoReturn:
    """Stop the run with a message the user can act on (exit status 2, as argparse's own errors)."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def denied(message: str) -> NoReturn:
    """Stop the run because the store refused its credentials: EXIT_STORE_DENIED, not a training failure
    (the operator spends no retry and tries again once the credentials change; contract.exits)."""
    print(f"{STORE_DENIED_MARKER} {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_STORE_DENIED)


def env_name(flag: str) -> str:
    return "MINISERIES_" + flag[2:].upper().replace("-", "_")


def env_overrides(parser: argparse.ArgumentParser) -> list[str]:
    """The MINISERIES_<FLAG> variables set in this environment, for any flag of `parser`."""
    names = {env_name(o) for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
    return sorted(n for n in names if n in os.environ)


def refuse_env_overrides(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """In cluster mode (--sweep-uid: the operator launched this run) every flag comes from the plan.

    A MINISERIES_<FLAG> there can only come from the pod's environment (a key of the credentials
    Secret, an admission webhook, a LimitRange's defaults do not set env, a mutated runtime): it
    would change the run without a spec change, past the frozen-spec check, and make it incomparable
    with its siblings in the fit. Refused rather than recorded: a recorded override still trained
    the wrong run; refusing costs one failed start with a message naming the variable (issue 27)."""
    found = env_overrides(parser) if args.sweep_uid else []
    if found:
        fail(
            f"{', '.join(found)} set in the environment of a cluster run (--sweep-uid {args.sweep_uid}): training "
            "flags come only from the sweep's plan (the operator's command line); remove them from the pod's "
            "environment (e.g. the credentials Secret)"
        )


def apply_env_defaults(parser: argparse.ArgumentParser) -> None:
    """Defaults from MINISERIES_<FLAG> when set (a flag given on the command line still wins)."""
    for action in parser._actions:
        flag = next((o for o in action.option_strings if o.startswith("--") and not o.startswith("--no-")), None)
        if flag is None or flag == "--help":
            continue
        env = env_name(flag)
        action.help = f"{action.help or ''} [env {env}]".strip()
        if env in os.environ:
            action.default = _env_value(os.environ[env], action, env)
            action.required = False


def _env_value(raw: str, action: argparse.Action, env: str) -> Any:
    if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
        if raw.lower() not in ("1", "true", "yes", "0", "false", "no", ""):
            raise SystemExit(f"error: {env}={raw!r} is not a boolean (use 1/0, true/false)")
        return raw.lower() in ("1", "true", "yes")
    convert = action.type or str
    try:
        value = convert(raw)  # type: ignore[operator]
    except (ValueError, argparse.ArgumentTypeError) as e:
        raise SystemExit(f"error: {env}={raw!r}: {e}") from None
    if action.choices is not None and value not in action.choices:
        raise SystemExit(f"error: {env}={raw!r}: choose from {', '.join(map(str, action.choices))}")
    return value


def _positive(name: str, zero_ok: bool = False) -> Callable[[str], int]:
    def parse(v: str) -> int:
        try:
            n = int(v)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer, got {v!r}") from None
        if n < 0 or (n == 0 and not zero_ok):
            raise argparse.ArgumentTypeError(f"{name} must be {'>= 0' if zero_ok else '>= 1'}, got {n}")
        return n

    return parse


def _ratio(v: str) -> float:
    try:
        x = float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--warmdown-ratio must be a number, got {v!r}") from None
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"--warmdown-ratio must be in [0, 1], got {x}")
    return x


def _steps_list(v: str) -> tuple[int, ...]:
    try:
        steps = tuple(sorted({int(x) for x in v.split(",") if x.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--keep-steps must be comma-separated integers, got {v!r}") from None
    if any(s < 1 for s in steps):
        raise argparse.ArgumentTypeError(f"--keep-steps must be steps >= 1, got {v!r}")
    return steps


def build_parser() -> argparse.ArgumentParser:
    """Every flag, in --help's sections, each with its MINISERIES_<FLAG> default."""
    p = argparse.ArgumentParser(
        prog="miniseries-train",
        description=DESCRIPTION,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _run_identity(p)
    _model_shape(p)
    _horizon_and_batch(p)
    _optimizer(p)
    _checkpoints(p)
    _evaluation(p)
    _store_and_data(p)
    _runtime(p)
    apply_env_defaults(p)
    return p


def _run_identity(p: argparse.ArgumentParser) -> None:
    """Which run this is: the sweep, the run id, (cluster mode) the sweep's uid, its isoFLOP budget."""
    g = p.add_argument_group("run identity")
    g.add_argument(
        "--namespace",
        default=LOCAL_NAMESPACE,
        help="the sweep's namespace: its store key is <store>/<namespace>/<sweep>/ (the operator passes it)",
    )
    g.add_argument("--sweep", required=True, help="sweep name (store layout and metric label)")
    g.add_argument("--run", required=True, help="run id within the sweep, e.g. d12")
    g.add_argument(
        "--sweep-uid",
        default=None,
        help="the sweep's Kubernetes uid (the operator passes it; cluster mode): checkpoints and results carry it, "
        "only this sweep's checkpoints are resumed from, and no MINISERIES_<FLAG> may override a flag",
    )
    g.add_argument("--budget-flops", type=float, default=None, help="isoFLOP budget this run belongs to (recorded)")


def _model_shape(p: argparse.ArgumentParser) -> None:
    """The model's dials; miniseries.contract.shapes turns them into the GPT's shape."""
    g = p.add_argument_group("model shape (miniseries.contract.shapes.model_shape)")
    g.add_argument(
        "--depth", type=_positive("--depth"), required=True, help="number of layers; width = depth x aspect ratio"
    )
    g.add_argument("--aspect-ratio", type=_positive("--aspect-ratio"), default=64, help="width per layer of depth")
    g.add_argument("--head-dim", type=_positive("--head-dim"), default=128, help="channels per attention head (even)")
    g.add_argument(
        "--vocab-size", type=_positive("--vocab-size"), default=32768, help="vocabulary size (>= the tokenizer's)"
    )
    g.add_argument("--seq-len", type=_positive("--seq-len"), default=2048, help="training sequence length in tokens")


def _horizon_and_batch(p: argparse.ArgumentParser) -> None:
    """How long it trains and on how many tokens per step, the LR schedule and the seed."""
    g = p.add_argument_group("horizon and batch")
    g.add_argument(
        "--target-tokens", type=_positive("--target-tokens"), required=True, help="training tokens to aim for"
    )
    g.add_argument(
        "--steps",
        type=_positive("--steps"),
        default=None,
        help="optimizer steps (default: target tokens // total batch)",
    )
    g.add_argument(
        "--total-batch-tokens",
        type=_positive("--total-batch-tokens"),
        required=True,
        help="tokens per optimizer step over all ranks (a multiple of device batch x seq len x ranks)",
    )
    g.add_argument(
        "--device-batch-size",
        type=_positive("--device-batch-size"),
        default=32,
        help="sequences per micro-batch per rank",
    )
    g.add_argument(
        "--warmup-steps", type=_positive("--warmup-steps", zero_ok=True), default=40, help="linear LR warmup steps"
    )
    g.add_argument(
        "--warmdown-ratio", type=_ratio, default=0.4, help="fraction of steps at the end with linear LR decay to 0"
    )
    g.add_argument(
        "--warmdown-shape",
        choices=list(SHAPES),
        default="linear",
        help="warmdown shape: linear (1-p) or sqrt (Hägele et al. 2024's (1-sqrt p) cooldown)",
    )
    g.add_argument(
        "--warmdown-steps",
        type=_positive("--warmdown-steps", zero_ok=True),
        default=None,
        help="warmdown length in steps, replacing --warmdown-ratio (wsd: 0 for a trunk, the cooldown for a branch)",
    )
    g.add_argument("--seed", type=_positive("--seed", zero_ok=True), default=42, help="random seed")


def _optimizer(p: argparse.ArgumentParser) -> None:
    """The learning rates and weight decay (nanochat's defaults)."""
    g = p.add_argument_group("optimizer (nanochat defaults, scaled by width and batch)")
    g.add_argument("--matrix-lr", type=float, default=0.02, help="Muon LR for hidden matrices at a 2^19-token batch")
    g.add_argument(
        "--embedding-lr", type=float, default=0.2, help="AdamW LR for the embedding at width 768, 2^19 batch"
    )
    g.add_argument(
        "--unembedding-lr", type=float, default=0.004, help="AdamW LR for the lm_head at width 768, 2^19 batch"
    )
    g.add_argument("--weight-decay", type=float, default=0.0, help="Muon weight decay")


def _checkpoints(p: argparse.ArgumentParser) -> None:
    """How often the run checkpoints, which checkpoints it keeps, and where it starts from."""
    g = p.add_argument_group("checkpoints and resume")
    g.add_argument(
        "--checkpoint-every",
        type=_positive("--checkpoint-every", zero_ok=True),
        default=0,
        help="save a checkpoint every N steps (0: only at the end)",
    )
    g.add_argument(
        "--keep-checkpoints", type=_positive("--keep-checkpoints"), default=2, help="newest checkpoints kept"
    )
    g.add_argument(
        "--resume",
        choices=["auto", "never", "require"],
        default="auto",
        help="auto: resume from the newest valid checkpoint if any; require: fail without one; never: start over",
    )
    g.add_argument(
        "--keep-steps",
        type=_steps_list,
        default=(),
        help="comma-separated steps always checkpointed and never pruned (wsd: a trunk's branch points)",
    )
    g.add_argument(
        "--init-from",
        default=None,
        help="checkpoint URI (a step_<n>/ prefix with a manifest) to start from when this run has no checkpoint "
        "of its own (wsd: a branch starts from its trunk's checkpoint at its cooldown start)",
    )


def _evaluation(p: argparse.ArgumentParser) -> None:
    """What is evaluated: validation bits per byte at the end, the val trace during training, CORE."""
    g = p.add_argument_group("evaluation")
    g.add_argument(
        "--eval-tokens",
        type=_positive("--eval-tokens", zero_ok=True),
        default=10 * 2**19,
        help="validation tokens for bits-per-byte (0: skip)",
    )
    val_trace.add_flags(g)
    g.add_argument("--eval-bundle", default=None, help="CORE eval bundle URI; CORE is skipped without it")
    g.add_argument(
        "--core-max-per-task",
        type=_positive("--core-max-per-task"),
        default=None,
        help="at most this many examples per CORE task (shots are drawn from these: at least 11 for CORE's 10-shot tasks)",
    )
    g.add_argument(
        "--core-allow-partial",
        action="store_true",
        default=False,
        help="score the tasks a bundle has when some of CORE's 22 are missing; the result is labeled partial "
        "and is never reported as CORE",
    )


def _store_and_data(p: argparse.ArgumentParser) -> None:
    """Where the run reads its data and tokenizer and writes everything it produces."""
    g = p.add_argument_group("store and data")
    g.add_argument("--store", required=True, help="store root URI (file:///path or s3://bucket/prefix)")
    g.add_argument("--data", required=True, help="URI of the parquet shards (last one = validation)")
    g.add_argument("--tokenizer", required=True, help="URI of the trained tokenizer (see miniseries_trainer.tokenizer)")
    g.add_argument(
        "--store-outage-seconds",
        type=_positive("--store-outage-seconds", zero_ok=True),
        default=300,
        help="how long one store operation is retried (exponential backoff up to 5 s) before the run fails; "
        "progress.json is never waited for (skipped and written later). At the start the store must answer "
        f"within {STARTUP_STORE_SECONDS:g} s (a store never reached is a wrong URI or credentials)",
    )


def _runtime(p: argparse.ArgumentParser) -> None:
    """The device, numerics, compilation, metrics port and logging."""
    g = p.add_argument_group("runtime")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda when available")
    g.add_argument(
        "--metrics-port",
        type=_positive("--metrics-port", zero_ok=True),
        default=0,
        help="Prometheus /metrics port (0: disabled; rank r>0 serves port + LOCAL_RANK)",
    )
    g.add_argument(
        "--peak-flops",
        type=float,
        default=None,
        help=f"peak FLOP/s per device for MFU (default: by GPU name; CPU: "
        f"{CPU_PEAK_FLOPS_PER_THREAD:.0e} x torch threads)",
    )
    g.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the model and Muon's orthogonalization (default: on for CUDA, off for CPU, where "
        "inductor's C++ backend takes tens of seconds to compile)",
    )
    g.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: bf16 autocast on CUDA, fp32 on CPU; fp8: torchao float8 training of the blocks' linears "
        "(CUDA compute capability >= 8.9 and torchao; refused elsewhere); bf16 on CPU is slow (numerics checks)",
    )
    g.add_argument(
        "--deterministic",
        action="store_true",
        default=False,
        help="deterministic algorithms, fixed seeds (tests: bitwise-reproducible resume on CPU)",
    )
    g.add_argument(
        "--log-every", type=_positive("--log-every"), default=1, help="print and record the loss every N steps"
    )
