"""`miniseries operator`: run the kopf operator (handlers in miniseries.control.handlers)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
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

    from miniseries.api.policy import Policy
    from miniseries.api.spec import Backend
    from miniseries.contract.store import STORE_URI_RE, parse_roots, uri_problem
    from miniseries.control import handlers
    from miniseries.control import metrics as opmetrics

    _setup_logging(args.verbose)
    try:
        handlers.POLICY = Policy(
            allowed_image_prefixes=tuple(args.allowed_image_prefix),
            secret_opt_in_label=args.secret_opt_in_label,
            max_gpu_hours_without_budget=args.max_gpu_hours_without_budget,
        )
    except ValueError as e:
        print(f"error: admission policy: {e}", file=sys.stderr)
        return 2
    logging.getLogger("miniseries.operator").info("admission policy: %s", handlers.POLICY)
    served = args.backend or args.backend_default
    try:
        handlers.watch_jobs([Backend(b) for b in served])
    except ValueError as e:
        print(f"error: --backend / MINISERIES_BACKENDS: {e}", file=sys.stderr)
        return 2
    logging.getLogger("miniseries.operator").info("backends served: %s", ", ".join(served))
    # Ownership of the config loading is with the startup handler (in-cluster first).
    handlers.KUBECONFIG = args.kubeconfig
    if args.store_root:
        handlers.STORE_ROOTS = [r for value in args.store_root for r in parse_roots(value)]
    for root in handlers.STORE_ROOTS:
        problem = uri_problem(root.replace("{namespace}", "ns")) or (
            None if STORE_URI_RE.fullmatch(root.replace("{namespace}", "ns")) else "is not an s3:// or file:/// URI"
        )
        if problem:
            print(f"error: store root {root!r}: {problem}", file=sys.stderr)
            return 2
    opmetrics.serve(args.metrics_port)
    namespaces = [] if args.all_namespaces else (args.namespace or [os.environ.get("POD_NAMESPACE", "default")])
    # kopf's peering: every replica announces itself with a priority; only the highest
    # acts, the others freeze. Equal priorities would both act, so each replica draws
    # its own unless one is given.
    priority = args.priority if args.priority is not None else random.randint(1, 2**31 - 1)
    kopf.run(
        clusterwide=args.all_namespaces,
        namespaces=namespaces,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=priority,
        liveness_endpoint=f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None,
    )
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("operator", help="run the ScalingSweep operator (kopf)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG/~/.kube/config)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--namespace", action="append", help="watch this namespace (repeatable; default $POD_NAMESPACE)")
    where.add_argument("--all-namespaces", action="store_true", help="watch every namespace")
    p.add_argument("--metrics-port", type=int, default=9300, help="Prometheus /metrics port (0: off; default 9300)")
    p.add_argument("--liveness-port", type=int, default=8080, help="/healthz port (0: off; default 8080)")
    p.add_argument("--peering", help="kopf peering object name; replicas sharing it elect one active operator")
    p.add_argument("--priority", type=int, help="peering priority (default: random per replica)")
    p.add_argument("--store-root", action="append", metavar="URI",
                   help="a store URI sweeps may write under, e.g. s3://shared/{namespace} ({namespace}: the "
                        "sweep's); repeatable; default $MINISERIES_STORE_ROOTS (comma-separated), empty: any")  # fmt: skip
    from miniseries.api.policy import DEFAULT_MAX_GPU_HOURS_WITHOUT_BUDGET, Policy

    env = Policy.from_env()
    adm = p.add_argument_group("admission policy (what a sweep may run; see the README's security section)")
    adm.add_argument("--allowed-image-prefix", action="append", default=list(env.allowed_image_prefixes),
                     help="a trainer image a sweep may name must start with one of these, fully qualified "
                     "(repeatable; default $MINISERIES_ALLOWED_IMAGE_PREFIXES, comma-separated; none: any image)")  # fmt: skip
    adm.add_argument("--secret-opt-in-label", default=env.secret_opt_in_label,
                     help='a Secret a sweep names must carry this label with value "true" '
                     "(default $MINISERIES_SECRET_OPT_IN_LABEL; empty: any Secret, none is read)")  # fmt: skip
    adm.add_argument("--max-gpu-hours-without-budget", type=float, default=DEFAULT_MAX_GPU_HOURS_WITHOUT_BUDGET,
                     help="GPU-hours a plan may use without spec.cost.budgetUsd "
                     "(default $MINISERIES_MAX_GPU_HOURS_WITHOUT_BUDGET or %(default)s)")  # fmt: skip
    backends = [b for b in os.environ.get("MINISERIES_BACKENDS", "pytorchjob").split(",") if b]
    p.add_argument("--backend", action="append", choices=["pytorchjob", "trainjob"], default=None,
                   help="a job backend to serve: pytorchjob (kubeflow.org PyTorchJob) or trainjob (Kubeflow Trainer "
                   "v2 TrainJob); repeatable; default $MINISERIES_BACKENDS (comma-separated) or pytorchjob. "
                   "Its jobs are watched and listed, and a sweep may choose it (spec.resources.backend)")  # fmt: skip
    p.add_argument("--verbose", action="store_true")
    p.set_defaults(func=cmd_operator, backend_default=backends)
