"""spec.trainer: which program trains a sweep's runs. Absent: the built-in trainer
(`python -m miniseries_trainer.train`); given: an image, a command and args of the user's, speaking
the trainer contract (docs/trainer-contract.md) at a version this operator speaks.

A custom trainer gets the contract's values as the standard flags appended to its args (unless
passFlags is false) and as `$(variable)` templates in its args, Kubernetes' own style (Kubeflow and
Katib users write `$(trialParameters.x)` the same way): the variables are exactly
contract/trainer_contract.TEMPLATE_VARIABLES, `$$` is a literal `$`. The templates are checked here
(and by the CRD's pattern at the API server); plan/trainer_argv.render_args substitutes them per run.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, field_validator

from miniseries.api import grammar
from miniseries.api.wire import WireModel, cel_rules
from miniseries.contract.trainer_contract import CONTRACT_VERSION, FLAG_OF_VARIABLE

#: Bounds that keep the CRD's CEL rules within the API server's cost budget.
MAX_ARGS, MAX_ARG_LENGTH = 64, 1024
#: Programs that would read a templated value as code: a shell, or an interpreter given its program
#: as a string. A value (a URI, a run name) must never become part of a script.
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox", "python", "python3", "perl", "node"})
_CODE_FLAG = re.compile(r"^-[a-zA-Z]{0,3}[ce][a-zA-Z]{0,3}$")  # -c, -ec, -xc (shells, python), -e (perl, node)
_VARIABLE = re.compile(r"\$\(([^)]*)\)")
VARIABLE_NAME = re.compile(r"^[a-z][a-zA-Z]*\.[a-z][a-zA-Z]*$")
TEMPLATES_ALLOWED = (
    "$(variable) with one of " + ", ".join(FLAG_OF_VARIABLE) + "; $$ for a literal $ (docs/trainer-contract.md)"
)


def _arg_pattern() -> str:
    """RE2 for one well-formed arg: characters other than `$`, `$$`, `$(known variable)`, or a `$` not
    followed by `(`. The CRD's pattern on every arg, so the API server refuses what `templates` refuses."""
    names = "|".join(re.escape(n) for n in FLAG_OF_VARIABLE)
    return rf"^([^$]|\$\$|\$\(({names})\)|\$[^($]|\$$)*$"


ARG_PATTERN = _arg_pattern()


def templates(arg: str) -> list[str]:
    """The variables `arg` names, in order; ValueError for a malformed or unknown one."""
    found, i = [], 0
    while (i := arg.find("$", i)) >= 0:
        if arg.startswith("$$", i):
            i += 2
            continue
        if not arg.startswith("$(", i):
            i += 1
            continue
        m = _VARIABLE.match(arg, i)
        if m is None:
            raise ValueError(f"{arg!r} has an unclosed '$(' at offset {i}; allowed: {TEMPLATES_ALLOWED}")
        if m.group(1) not in FLAG_OF_VARIABLE:
            raise ValueError(f"{arg!r} names an unknown variable $({m.group(1)}); allowed: {TEMPLATES_ALLOWED}")
        found.append(m.group(1))
        i = m.end()
    return found


def render(arg: str, values: dict[str, str]) -> str:
    """`arg` with every `$(variable)` replaced by its value and every `$$` by `$` (templates() has passed)."""
    out, i = [], 0
    while (j := arg.find("$", i)) >= 0:
        out.append(arg[i:j])
        if arg.startswith("$$", j):
            out.append("$")
            i = j + 2
        elif (m := _VARIABLE.match(arg, j)) is not None:
            out.append(values[m.group(1)])
            i = m.end()
        else:
            out.append("$")
            i = j + 1
    out.append(arg[i:])
    return "".join(out)


def _checked_arg(arg: str) -> str:
    templates(arg)
    return arg


def code_flag_of(command: list[str], args: list[str]) -> str | None:
    """`sh -c`, `bash -ec`, `python -c`, ... when the argv runs a program given as a string; else None.
    Looks past `env` and its NAME=value assignments, as `/usr/bin/env bash -c` is the same shell; any
    short option with c or e anywhere counts (the CRD's CEL rule reads it the same way)."""
    argv = [*command, *args]
    while argv and (os.path.basename(argv[0]) == "env" or "=" in argv[0]):
        argv = argv[1:]
    if not argv or os.path.basename(argv[0]) not in SHELLS:
        return None
    flag = next((a for a in argv[1:] if _CODE_FLAG.match(a)), None)
    return f"{os.path.basename(argv[0])} {flag}" if flag else None


class TrainerSupports(WireModel):
    """What the trainer does beyond the contract's required clauses, for the options that need it."""

    init_from: Annotated[
        bool,
        Field(
            description="It honours --init-from (clause C14): start from another run's checkpoint. wsd sweeps need it."
        ),
    ] = False


class TrainerSpec(WireModel):
    """A custom trainer: an image, a command and args speaking the trainer contract. Omit spec.trainer for
    the built-in trainer."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(
            (
                f"self.contractVersion == {CONTRACT_VERSION}",
                f"contractVersion must be one this operator speaks; allowed: {CONTRACT_VERSION}",
                ".contractVersion",
            ),
            (  # _no_values_into_code's main case (Python also looks past `env`)
                f"!(self.command[0].matches(r'(^|/)({'|'.join(sorted(SHELLS))})$') && "
                f"(self.command.exists(c, c.matches(r'{_CODE_FLAG.pattern}')) || "
                f"(has(self.args) && self.args.exists(a, a.matches(r'{_CODE_FLAG.pattern}'))))) || "
                r"!has(self.args) || !self.args.exists(a, a.matches(r'(^|[^$])(\$\$)*\$\('))",
                "args must not put a $(variable) into a program run as a string (sh -c, bash -c, python -c, ...); "
                "allowed: templates as separate arguments of a program, or the standard flags (passFlags)",
                ".args",
            ),
        ),
    )

    image: Annotated[
        str | None,
        Field(
            description="The trainer's image; omit to use spec.resources.image.", json_schema_extra=grammar.IMAGE_SCHEMA
        ),
    ] = None
    command: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=MAX_ARG_LENGTH)]],
        Field(
            min_length=1,
            max_length=MAX_ARGS,
            description="The program and its first arguments, a list of strings (no shell, no templates).",
        ),
    ]
    args: Annotated[
        list[
            Annotated[
                str,
                AfterValidator(_checked_arg),
                Field(max_length=MAX_ARG_LENGTH, json_schema_extra={"pattern": ARG_PATTERN}),
            ]
        ],
        Field(
            max_length=MAX_ARGS,
            description="Arguments after the command; may name the contract's values as $(variable), e.g. "
            "$(model.depth), $(run.steps), $(store.uri) (docs/trainer-contract.md); $$ is a literal $.",
        ),
    ] = []  # noqa: RUF012 (a pydantic field: each instance gets a copy)
    pass_flags: Annotated[
        bool, Field(description="Append the contract's standard flags (--depth=..., ...) after args.")
    ] = True
    contract_version: Annotated[
        int, Field(description=f"The trainer contract version it speaks; this operator speaks {CONTRACT_VERSION}.")
    ]
    supports: Annotated[TrainerSupports, Field(description="Optional contract clauses it honours.")] = TrainerSupports()

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None) -> str | None:
        if v is not None:
            grammar.check_image(v)
        return v

    @field_validator("command")
    @classmethod
    def _command(cls, v: list[str]) -> list[str]:
        for i, part in enumerate(v):
            if "$(" in part.replace("$$", ""):
                raise ValueError(
                    f"command[{i}] {part!r} has a $(variable); allowed: templates in args only, the command as is"
                )
        return v

    @field_validator("args")
    @classmethod
    def _no_values_into_code(cls, v: list[str], info: Any) -> list[str]:
        flag = code_flag_of(info.data.get("command") or [], v)
        if flag is None:
            return v
        for i, arg in enumerate(v):
            if names := templates(arg):
                raise ValueError(
                    f"args[{i}] {arg!r} would put $({names[0]}) into a program run as a string ({flag}); allowed: "
                    "templates as separate arguments of a program that is not a shell or `-c` interpreter, or "
                    "the standard flags (passFlags) read by the trainer itself"
                )
        return v

    @field_validator("contract_version")
    @classmethod
    def _version(cls, v: int) -> int:
        if v != CONTRACT_VERSION:
            raise ValueError(f"contract version {v} is not one this operator speaks; allowed: {CONTRACT_VERSION}")
        return v
