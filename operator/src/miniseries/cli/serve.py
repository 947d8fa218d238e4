"""`miniseries operator`: run the kopf operator (handlers in miniseries.control.io.handlers)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
from collections.abc import Mapping
from typing import Any


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log collectors parse without regexes."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("k8s_ref", "k8s_skip"):
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def _setup_logging(verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)


def cmd_operator(args: argparse.Namespace) -> int:
    # Before kopf and the kubernetes client are imported: the client reads $KUBECONFIG
    # once, at import time, for its default path (kopf's login then found no credentials).
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = args.kubeconfig
    import kopf

    from miniseries.control.io import handlers
    from miniseries.control.io import operator_metrics as opmetrics

    _setup_logging(args.verbose)
    try:
        settings = settings_from_args(args, os.environ)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    log = logging.getLogger("miniseries.operator")
    log.info("admission policy: %s", settings.policy)
    log.info("backends served: %s", ", ".join(b.value for b in settings.backends))
    registry = kopf.OperatorRegistry()
    handlers.register(settings, registry)
    opmetrics.serve(args.metrics_port)
    # kopf's peering: every replica announces itself with a priority; only the highest
    # acts, the others freeze. Equal priorities would both act, so each replica draws
    # its own unless one is given.
    priority = args.priority if args.priority is not None else random.randint(1, 2**31 - 1)
    # Listed namespaces: optional peering under the same name (settings.optional_peering), and
    # served while being deleted (handlers.Operator.configure and serve_terminating_namespaces say why).
    if not args.all_namespaces:
        handlers.serve_terminating_namespaces()
    kopf.run(
        registry=registry,
        clusterwide=settings.all_namespaces,
        namespaces=list(settings.namespaces),
        standalone=args.peering is None,
        peering_name=args.peering if args.all_namespaces else None,
        priority=priority,
        liveness_endpoint=f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None,
    )
    return 0


def _ceiling(value: str) -> tuple[str, int]:
    """`--max-sweep-gpus`: `N` for every namespace, `NAMESPACE=N` for one."""
    ns, _, n = value.rpartition("=")
    try:
        return (ns or "*", int(n))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected N or NAMESPACE=N (an integer)") from None


def _policy_flags(p: argparse.ArgumentParser) -> None:
    """The admission policy's flags. With none, the operator enforces api/policy.py's defaults,
    the same ones the chart's values.yaml installs; each permissive mode is an explicit flag."""
    from miniseries.api import policy as pol

    adm = p.add_argument_group("admission policy (what a sweep may run; see docs/admin.md, Security)")
    adm.add_argument("--store-root", action="append", metavar="URI", default=[],
                     help="a store URI sweeps may use, e.g. s3://shared/{namespace} ({namespace}: the sweep's); "
                     "repeatable; none: every store is refused (chart value store.roots)")  # fmt: skip
    adm.add_argument("--allow-any-store", action="store_true",
                     help="single-tenant clusters only: any s3:// store, read and written with the operator's "
                     "credentials (file:// still only under a --store-root; chart value store.allowAnyStore)")  # fmt: skip
    images = adm.add_mutually_exclusive_group()
    images.add_argument("--allowed-image-prefix", action="append", metavar="PREFIX",
                        help="a trainer image a sweep may name must start with one of these, fully qualified "
                        f"(repeatable; default {' '.join(pol.DEFAULT_ALLOWED_IMAGE_PREFIXES)})")  # fmt: skip
    images.add_argument("--allow-any-image", action="store_true", help="a sweep may run any image")
    secrets = adm.add_mutually_exclusive_group()
    secrets.add_argument("--secret-opt-in-label", default=pol.DEFAULT_SECRET_OPT_IN_LABEL, metavar="KEY",
                         help='a Secret a sweep names must carry this label with value "true" (default %(default)s)')  # fmt: skip
    secrets.add_argument("--allow-any-secret", action="store_true",
                         help="a sweep may name any Secret of its namespace (none is read)")  # fmt: skip
    prio = adm.add_mutually_exclusive_group()
    prio.add_argument("--allowed-priority-class", action="append", metavar="NAME",
                      help="a spec.resources.priorityClassName a sweep may set (repeatable; default: none)")  # fmt: skip
    prio.add_argument("--allow-any-priority-class", action="store_true", help="a sweep may set any priority class")
    rt = adm.add_mutually_exclusive_group()
    rt.add_argument("--allowed-training-runtime", action="append", metavar="NAME",
                    help="a ClusterTrainingRuntime a sweep's TrainJobs may reference (repeatable; default "
                    f"{' '.join(pol.DEFAULT_ALLOWED_TRAINING_RUNTIMES)})")  # fmt: skip
    rt.add_argument("--allow-any-training-runtime", action="store_true", help="a sweep may name any runtime")
    adm.add_argument("--max-sweep-gpus", action="append", type=_ceiling, default=[], metavar="[NAMESPACE=]N",
                     help="most GPUs one sweep may hold at once: N in every namespace, NAMESPACE=N in one "
                     "(repeatable; default: no ceiling)")  # fmt: skip
    adm.add_argument("--max-gpu-hours-without-budget", type=float, default=pol.DEFAULT_MAX_GPU_HOURS_WITHOUT_BUDGET,
                     help="GPU-hours a plan may use without spec.cost.budgetUsd "
                     "(default $MINISERIES_MAX_GPU_HOURS_WITHOUT_BUDGET or %(default)s)")  # fmt: skip


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str]) -> Any:
    """The operator's settings (control/settings.OperatorSettings), built once from its flags and the
    environment (the timings, $MINISERIES_BACKENDS, $POD_NAMESPACE); ValueError names a bad value."""
    from miniseries.control.settings import OperatorSettings, parse_backends

    try:
        policy = policy_from_args(args)
    except ValueError as e:
        raise ValueError(f"admission policy: {e}") from None
    given: dict[str, Any] = {
        "policy": policy,
        "kubeconfig": args.kubeconfig,
        "all_namespaces": args.all_namespaces,
        "namespaces": () if args.all_namespaces else tuple(args.namespace or [environ.get("POD_NAMESPACE", "default")]),
        "optional_peering": None if args.all_namespaces else args.peering,
    }
    if args.backend:
        given["backends"] = parse_backends(args.backend)
    return OperatorSettings.from_environment(environ, **given)


def policy_from_args(args: argparse.Namespace) -> Any:
    """The admission policy the flags say (api/policy.Policy); ValueError names a bad value."""
    from miniseries.api import policy as pol
    from miniseries.contract.store import parse_roots

    def listed(values: list[str] | None, any_: bool, default: tuple[str, ...]) -> tuple[str, ...] | None:
        return None if any_ else tuple(values) if values is not None else default

    priority = listed(args.allowed_priority_class, args.allow_any_priority_class, pol.DEFAULT_ALLOWED_PRIORITY_CLASSES)
    runtimes = listed(
        args.allowed_training_runtime, args.allow_any_training_runtime, pol.DEFAULT_ALLOWED_TRAINING_RUNTIMES
    )
    return pol.Policy(
        allowed_image_prefixes=()
        if args.allow_any_image
        else tuple(args.allowed_image_prefix or ()) or pol.DEFAULT_ALLOWED_IMAGE_PREFIXES,
        secret_opt_in_label="" if args.allow_any_secret else args.secret_opt_in_label,
        max_gpu_hours_without_budget=args.max_gpu_hours_without_budget,
        allowed_priority_classes=priority,
        allowed_training_runtimes=runtimes,
        max_sweep_gpus=tuple(dict(args.max_sweep_gpus).items()),
        store_roots=tuple(r for value in args.store_root for r in parse_roots(value)),
        any_store=args.allow_any_store,
    )


def register(subparsers: Any) -> None:
    from miniseries.api.spec import Backend  # the choices of --backend: every backend a sweep may name

    p = subparsers.add_parser("operator", help="run the ScalingSweep operator (kopf)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG/~/.kube/config)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--namespace", action="append", help="watch this namespace (repeatable; default $POD_NAMESPACE)")
    where.add_argument("--all-namespaces", action="store_true", help="watch every namespace")
    p.add_argument("--metrics-port", type=int, default=9300, help="Prometheus /metrics port (0: off; default 9300)")
    p.add_argument("--liveness-port", type=int, default=8080, help="/healthz port (0: off; default 8080)")
    p.add_argument("--peering", help="kopf peering object name; replicas sharing it elect one active operator")
    p.add_argument("--priority", type=int, help="peering priority (default: random per replica)")
    _policy_flags(p)
    p.add_argument("--backend", action="append", choices=[b.value for b in Backend], default=None,
                   help="a job backend to serve: pytorchjob (kubeflow.org PyTorchJob) or trainjob (Kubeflow Trainer "
                   "v2 TrainJob); repeatable; default $MINISERIES_BACKENDS (comma-separated) or pytorchjob. "
                   "Its jobs are watched and listed, and a sweep may choose it (spec.resources.backend)")  # fmt: skip
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_operator)
