"""Admission policy: what a sweep may make the operator run, set by the cluster admin.

A sweep names the trainer image (spec.resources.image) and a Secret whose keys become the
trainers' environment (spec.store.credentialsSecret); the operator's ServiceAccount then
creates the pods. Without a policy, anyone allowed to create a ScalingSweep could run any
image with any Secret of the namespace. The chart's `admission` values become the operator's
flags (`miniseries operator --allowed-image-prefix ... --secret-opt-in-label ...`), and the
operator refuses, before creating anything, a sweep that names:

- an image outside the allowed prefixes. Prefixes are matched against the fully qualified
  reference as the runtime pulls it (`python:3.11` is `docker.io/library/python:3.11`) and
  only at a boundary: `ghcr.io/miniseries/trainer` allows `ghcr.io/miniseries/trainer:0.1.0`
  and `ghcr.io/miniseries/trainer@sha256:...`, never `ghcr.io/miniseries/trainer-evil`.
- a Secret that does not carry the opt-in label (`<label>: "true"`): a namespace owner says
  which Secrets sweeps may use by labelling them. The operator reads only the Secret's
  metadata (a PartialObjectMetadata GET), never its data.

The decisions are pure functions here; control/observe.py reads the Secret's labels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from miniseries.api import grammar
from miniseries.api.errors import FieldProblem

DEFAULT_SECRET_OPT_IN_LABEL = "miniseries.dev/allow-sweeps"
#: A sweep without spec.cost.budgetUsd may plan at most this many GPU-hours: setting a budget is
#: how a sweep asks for more. In GPU-hours, not USD, so that pricePerGpuHour: 0 cannot dodge it.
#: The operator takes it from --max-gpu-hours-without-budget (chart: admission.maxGpuHoursWithoutBudget);
#: `miniseries plan` and the local runner from the same environment variable, so they agree.
DEFAULT_MAX_GPU_HOURS_WITHOUT_BUDGET = float(os.environ.get("MINISERIES_MAX_GPU_HOURS_WITHOUT_BUDGET", "1000"))


def _env_list(name: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in os.environ.get(name, "").split(",") if p.strip())


def check_prefix(prefix: str) -> str:
    """An allowed-image prefix must name its registry, as the runtime's fully qualified name does."""
    if not prefix or not prefix.isascii() or any(c.isspace() for c in prefix):
        raise ValueError(f"allowed image prefix {prefix!r}: must be non-empty ASCII without spaces")
    first = prefix.split("/", 1)[0]
    if not (first == "localhost" or any(c in first for c in ".:")):
        raise ValueError(
            f"allowed image prefix {prefix!r}: write it fully qualified, starting with the registry as the "
            f"runtime pulls it (e.g. 'docker.io/library/{prefix}' or 'ghcr.io/{prefix}')"
        )
    return prefix


def image_matches(image: grammar.ImageReference, prefix: str) -> bool:
    """`prefix` covers `image`: equal, or a prefix ending at a '/', ':' (tag) or '@' (digest)."""
    full = str(image)
    if full == prefix:
        return True
    if not full.startswith(prefix):
        return False
    if prefix.endswith("/"):
        return True
    following = full[len(prefix)]
    # After a bare registry ("localhost"), ':' starts a port, i.e. another registry.
    return following == "/" or (following in ":@" and "/" in prefix)


@dataclass(frozen=True)
class Policy:
    #: Images a sweep may run; empty: any image.
    allowed_image_prefixes: tuple[str, ...] = ()
    #: Secrets a sweep may name must carry `<label>: "true"`; empty: any Secret (not read at all).
    secret_opt_in_label: str = ""
    #: GPU-hours a plan may use without spec.cost.budgetUsd.
    max_gpu_hours_without_budget: float = DEFAULT_MAX_GPU_HOURS_WITHOUT_BUDGET

    def __post_init__(self) -> None:
        for prefix in self.allowed_image_prefixes:
            check_prefix(prefix)
        if self.secret_opt_in_label:
            try:
                grammar.check_label_key(self.secret_opt_in_label)
            except grammar.GrammarError as e:
                raise ValueError(f"secret opt-in label: {e}") from None
        if not self.max_gpu_hours_without_budget > 0:
            raise ValueError(f"max GPU-hours without budget must be > 0, got {self.max_gpu_hours_without_budget}")

    @classmethod
    def from_env(cls) -> Policy:
        """Defaults of `miniseries operator`'s flags (the chart sets the flags)."""
        return cls(
            allowed_image_prefixes=_env_list("MINISERIES_ALLOWED_IMAGE_PREFIXES"),
            secret_opt_in_label=os.environ.get("MINISERIES_SECRET_OPT_IN_LABEL", ""),
            max_gpu_hours_without_budget=DEFAULT_MAX_GPU_HOURS_WITHOUT_BUDGET,
        )

    def image_problems(self, image: str) -> list[FieldProblem]:
        if not self.allowed_image_prefixes:
            return []
        ref = grammar.parse_image(image)  # the spec validated it already
        if any(image_matches(ref, p) for p in self.allowed_image_prefixes):
            return []
        allowed = ", ".join(repr(p) for p in self.allowed_image_prefixes)
        return [
            FieldProblem(
                "spec.resources.image",
                f"{image!r} (pulled as {str(ref)!r}) is not allowed by this operator's admission policy; allowed "
                f"image prefixes: {allowed} (chart value admission.allowedImagePrefixes)",
            )
        ]

    def secret_problems(self, namespace: str, secret: str | None, labels: dict[str, str] | None) -> list[FieldProblem]:
        """`labels`: the Secret's labels as read, None when it does not exist."""
        if not self.secret_opt_in_label or secret is None:
            return []
        key = self.secret_opt_in_label
        how = f"kubectl label secret -n {namespace} {secret} {key}=true"
        if labels is None:
            return [
                FieldProblem(
                    "spec.store.credentialsSecret",
                    f"the Secret {secret!r} does not exist in namespace {namespace!r}; create it with the label "
                    f'{key}: "true" that this operator requires of Secrets a sweep may name',
                )
            ]
        if labels.get(key) != "true":
            got = f"it has {key}: {labels[key]!r}" if key in labels else "it has no such label"
            return [
                FieldProblem(
                    "spec.store.credentialsSecret",
                    f"the Secret {secret!r} in namespace {namespace!r} is not opted in to sweeps: this operator "
                    f'requires the label {key}: "true" ({got}); if sweeps in this namespace may use it: {how}',
                )
            ]
        return []
