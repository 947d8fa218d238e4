"""`miniseries trainer check -- COMMAND...`: check that a trainer follows the trainer contract.

    miniseries trainer check -- python -m miniseries_trainer.train       the built-in trainer
    miniseries trainer check --json -- python my_train.py                 one JSON object

Prints one line per clause of the contract (docs/trainer-contract.md): pass, fail, partial or skip,
and why. Exit status 1 when a required clause fails, 0 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from miniseries.cli import fmt
from miniseries.contract.trainer_contract import CONTRACT_VERSION


def cmd_check(args: argparse.Namespace) -> int:
    from miniseries.local.runner import LocalRunError
    from miniseries.local.trainer_check import CheckOptions, required_failed, run_check

    command = list(args.trainer_command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("error: COMMAND: give the trainer's command after `--`, e.g. -- python train.py", file=sys.stderr)
        return 2
    opts = CheckOptions(
        command=command,
        depth=args.depth,
        steps=args.steps,
        checkpoint_every=args.checkpoint_every,
        stop_after_step=args.stop_after_step,
        grace_seconds=args.grace_seconds,
        start_seconds=args.start_seconds,
        run_seconds=args.run_seconds,
        data_uri=args.data,
        tokenizer_uri=args.tokenizer,
        device=args.device,
        workdir=Path(args.workdir) if args.workdir else None,
    )
    try:
        verdicts, _ = run_check(opts, out=sys.stderr if args.json else sys.stdout)
    except FileNotFoundError as e:  # the command itself: nothing was checked
        print(f"error: COMMAND {command[0]!r} cannot be started: {e.strerror} ({e.filename})", file=sys.stderr)
        return 2
    except LocalRunError as e:  # preparing the tiny sweep's data or tokenizer
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = required_failed(verdicts)
    if args.json:
        doc = {"contract_version": CONTRACT_VERSION, "command": command, "ok": not failed,
               "clauses": [v.to_dict() for v in verdicts]}  # fmt: skip
        print(json.dumps(doc, indent=2))
    else:
        rows = [[v.id, v.title, v.level, v.status, v.reason] for v in verdicts]
        print(f"\ntrainer contract v{CONTRACT_VERSION}: {' '.join(command)}")
        print(fmt.table(["clause", "what", "level", "result", "why"], rows, right=set()))
        print("conforms" if not failed else f"does not conform: {', '.join(v.id for v in failed)} failed")
    return 1 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("trainer", help="the trainer contract: check a trainer against it")
    tsub = p.add_subparsers(dest="trainer_command_name", required=True, metavar="SUBCOMMAND")
    c = tsub.add_parser("check", help="run COMMAND as the operator would (stop, resume) and judge every clause",
                        description=__doc__.split("\n")[0])  # fmt: skip
    c.add_argument("--depth", type=int, default=2, help="the tiny sweep's depth to train")
    c.add_argument("--steps", type=int, default=None, help="steps of the run (default: the tiny sweep's plan)")
    c.add_argument("--checkpoint-every", type=int, default=None, help="default: the tiny sweep's (25)")
    c.add_argument(
        "--stop-after-step",
        type=int,
        default=1,
        help="SIGTERM once its progress reaches this step (a trainer that saves only every N steps)",
    )
    c.add_argument("--grace-seconds", type=float, default=60.0, help="SIGTERM -> exit, before SIGKILL")
    c.add_argument("--start-seconds", type=float, default=300.0, help="until its first progress.json")
    c.add_argument("--run-seconds", type=float, default=600.0, help="for the resumed attempt to finish")
    c.add_argument("--data", default=None, help="shards URI (default: prepared in the temporary store)")
    c.add_argument("--tokenizer", default=None, help="tokenizer URI (default: trained in the temporary store)")
    c.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    c.add_argument("--workdir", default=None, help="keep the store and the log here (default: a temporary one)")
    c.add_argument("--json", action="store_true", help="one JSON object on stdout")
    c.add_argument("trainer_command", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    c.set_defaults(func=cmd_check)
