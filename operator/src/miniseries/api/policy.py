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

- a priorityClassName or trainingRuntime the admin did not list: the jobs are created by the
  operator's ServiceAccount, so no admission policy keyed on the tenant sees who asked; a
  priority class lets a sweep preempt other teams' runs (under Kueue), a runtime decides the
  pods' template. None allowed by default for priority classes; only the runtime the chart
  installs for training runtimes.
- more GPUs at once than the admin's ceiling for its namespace (optional).
- a store outside the store roots: the operator reads and writes every sweep's store with its
  own credentials (a confused deputy), so with no roots configured it refuses every store, and
  a file:// store only ever lies under a configured root (never the operator's own disk).

One policy, whoever starts the operator: the defaults below are what `miniseries operator`
enforces with no flags and what the chart's values.yaml installs (tests/unit/test_policy.py
compares them); every permissive mode is an explicit flag (`--allow-any-...`).

The decisions are pure functions here; control/io/observe.py reads the Secret's labels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from miniseries.api import grammar
from miniseries.api.errors import FieldProblem
from miniseries.contract.store.uri import STORE_URI_RE, root_problem, uri_problem

#: The defaults of `miniseries operator` and of the chart's `admission` values (one place).
DEFAULT_ALLOWED_IMAGE_PREFIXES: tuple[str, ...] = ("ghcr.io/miniseries/trainer",)
DEFAULT_SECRET_OPT_IN_LABEL = "miniseries.dev/allow-sweeps"
#: No priority class: a sweep runs at its queue's default priority unless the admin lists one.
DEFAULT_ALLOWED_PRIORITY_CLASSES: tuple[str, ...] = ()
#: The runtime the chart installs (trainjob.runtime.name), with the settings the operator relies on.
DEFAULT_ALLOWED_TRAINING_RUNTIMES: tuple[str, ...] = ("miniseries-torch-distributed",)
#: The chart value and flag that say where sweeps may store; named in every refusal.
ROOTS_VALUE = "store.roots (operator flag --store-root)"
#: A sweep without spec.cost.budgetUsd may plan at most this many GPU-hours: setting a budget is
#: how a sweep asks for more. In GPU-hours, not USD, so that pricePerGpuHour: 0 cannot dodge it.
#: The operator takes it from --max-gpu-hours-without-budget (chart: admission.maxGpuHoursWithoutBudget);
#: `miniseries plan` and the local runner from the same environment variable, so they agree.
DEFAULT_MAX_GPU_HOURS_WITHOUT_BUDGET = float(os.environ.get("MINISERIES_MAX_GPU_HOURS_WITHOUT_BUDGET", "1000"))


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
    """The admin's admission policy. Every default is the safe one (what the chart installs)."""

    #: Images a sweep may run; empty: any image (`--allow-any-image`).
    allowed_image_prefixes: tuple[str, ...] = DEFAULT_ALLOWED_IMAGE_PREFIXES
    #: Secrets a sweep may name must carry `<label>: "true"`; empty: any Secret, none is read
    #: (`--allow-any-secret`).
    secret_opt_in_label: str = DEFAULT_SECRET_OPT_IN_LABEL
    #: GPU-hours a plan may use without spec.cost.budgetUsd.
    max_gpu_hours_without_budget: float = DEFAULT_MAX_GPU_HOURS_WITHOUT_BUDGET
    #: spec.resources.priorityClassName values a sweep may set; None: any (`--allow-any-priority-class`).
    allowed_priority_classes: tuple[str, ...] | None = DEFAULT_ALLOWED_PRIORITY_CLASSES
    #: ClusterTrainingRuntimes a TrainJob may reference; None: any (`--allow-any-training-runtime`).
    allowed_training_runtimes: tuple[str, ...] | None = DEFAULT_ALLOWED_TRAINING_RUNTIMES
    #: Most GPUs one sweep may hold at once, by namespace ("*": every namespace not listed); empty: no ceiling.
    max_sweep_gpus: tuple[tuple[str, int], ...] = ()
    #: Store URIs sweeps may use (`{namespace}`: the sweep's); none: every store is refused unless any_store.
    store_roots: tuple[str, ...] = ()
    #: The single-tenant opt-out (`--allow-any-store`): any s3:// store. file:// stays under roots only.
    any_store: bool = False

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
        for what, names in (("priority class", self.allowed_priority_classes),
                            ("training runtime", self.allowed_training_runtimes)):  # fmt: skip
            for n in names or ():
                try:
                    grammar.check_dns1123_subdomain(n)
                except grammar.GrammarError as e:
                    raise ValueError(f"allowed {what} {n!r}: {e}") from None
        for ns, gpus in self.max_sweep_gpus:
            if ns != "*":
                try:
                    grammar.check_dns1123_label(ns)
                except grammar.GrammarError as e:
                    raise ValueError(f"GPU ceiling namespace {ns!r}: {e}") from None
            if gpus < 1:
                raise ValueError(f"GPU ceiling for {ns!r} must be >= 1, got {gpus}")
        for root in self.store_roots:
            example = root.replace("{namespace}", "ns")
            problem = uri_problem(example) or (
                None if STORE_URI_RE.fullmatch(example) else "is not an s3:// or file:/// URI"
            )
            if problem:
                raise ValueError(f"store root {root!r}: {problem}")

    def image_problems(self, image: str, field: str = "spec.resources.image") -> list[FieldProblem]:
        """`field`: where the sweep names `image` (spec.trainer.image for a custom trainer's own)."""
        if not self.allowed_image_prefixes:
            return []
        ref = grammar.parse_image(image)  # the spec validated it already
        if any(image_matches(ref, p) for p in self.allowed_image_prefixes):
            return []
        allowed = ", ".join(repr(p) for p in self.allowed_image_prefixes)
        return [
            FieldProblem(
                field,
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

    def priority_class_problems(self, priority_class: str | None) -> list[FieldProblem]:
        return _not_listed(
            "spec.resources.priorityClassName",
            priority_class,
            self.allowed_priority_classes,
            "a priority class can preempt other teams' runs, so the cluster admin lists the ones sweeps may use",
            "admission.allowedPriorityClasses",
            none_allowed="none (omit priorityClassName)",
        )

    def training_runtime_problems(self, runtime: str | None) -> list[FieldProblem]:
        """`runtime`: the ClusterTrainingRuntime a TrainJob would reference (None: not a TrainJob sweep)."""
        return _not_listed(
            "spec.resources.trainingRuntime",
            runtime,
            self.allowed_training_runtimes,
            "a runtime decides the trainer pods' template",
            "admission.allowedTrainingRuntimes",
            none_allowed="none",
        )

    def gpu_ceiling(self, namespace: str) -> int | None:
        """The most GPUs one sweep in `namespace` may hold at once, or None (no ceiling)."""
        ceilings = dict(self.max_sweep_gpus)
        return ceilings.get(namespace, ceilings.get("*"))

    def gpu_problems(self, namespace: str, runs_at_once: int, gpus_per_run: int) -> list[FieldProblem]:
        """A sweep whose plan holds more GPUs at once than its namespace's ceiling is refused, not
        capped: a cap would quietly stretch the wall time and change the cost the plan promised,
        while a refusal names the one edit (parallelism) that fits."""
        ceiling = self.gpu_ceiling(namespace)
        held = runs_at_once * gpus_per_run
        if ceiling is None or held <= ceiling:
            return []
        where = f"the ceiling of {ceiling} GPUs this operator allows one sweep in namespace {namespace!r}"
        value = "admission.maxSweepGpus / admission.maxSweepGpusByNamespace"
        if gpus_per_run > ceiling:
            return [
                FieldProblem(
                    "spec.resources.gpusPerRun",
                    f"{gpus_per_run}: one run alone holds more than {where} (chart values {value}); "
                    f"allowed: gpusPerRun <= {ceiling}",
                )
            ]
        return [
            FieldProblem(
                "spec.resources.parallelism",
                f"the plan holds {held} GPUs at once ({runs_at_once} runs x gpusPerRun {gpus_per_run}), over {where} "
                f"(chart values {value}); allowed: parallelism <= {ceiling // gpus_per_run}",
            )
        ]

    def store_problem(self, uri: str, namespace: str) -> str | None:
        """Why the operator may not use `uri` for a sweep in `namespace`, or None."""
        problem = uri_problem(uri)
        if problem:
            return problem
        if uri.startswith("s3://") and self.any_store:
            return None
        if self.store_roots:
            return root_problem(uri, list(self.store_roots), namespace)
        if uri.startswith("file:"):
            return (
                f"{uri!r} would be the operator's own filesystem: a file:// store is allowed only under a store "
                f"root the cluster admin configured (a volume the operator and the trainers share); this operator "
                f"has none: chart value {ROOTS_VALUE}"
            )
        return (
            f"{uri!r} is refused: this operator has no store roots configured, so it uses no store (it would read "
            f"and write any bucket with its own credentials); the cluster admin sets chart value {ROOTS_VALUE}, "
            "e.g. ['s3://shared-bucket/{namespace}'] to give each namespace its own prefix, or on a single-tenant "
            "cluster store.allowAnyStore: true (--allow-any-store)"
        )


def _not_listed(
    field: str, value: str | None, allowed: tuple[str, ...] | None, why: str, chart_value: str, *, none_allowed: str
) -> list[FieldProblem]:
    """An admin allow-list's refusal of `value` (None: the field is unset; `allowed` None: anything goes)."""
    if value is None or allowed is None or value in allowed:
        return []
    listed = ", ".join(repr(a) for a in allowed) if allowed else none_allowed
    return [
        FieldProblem(
            field,
            f"{value!r} is not allowed by this operator's admission policy ({why}); allowed: {listed} "
            f"(chart value {chart_value})",
        )
    ]
