"""What one operator is configured with: one frozen value, built once by `miniseries operator`.

Everything a reconcile depends on beyond the sweep and the cluster is here (the admission policy
with its store roots, the backends it serves, how often it polls and retries, where it logs in, which
namespaces it watches), and it is handed to the handlers (control/io/handlers.register) and from
them down to observe and act. No module of control/ is configured by assigning its globals, so two
operators built in one process (tests/unit/test_settings.py) each keep their own.

Pure: no kopf, no Kubernetes client; the environment is read only by `from_environment`, with the
names the chart and the test harness (tests/harness/operator_process.py) set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from miniseries.api.policy import Policy
from miniseries.api.spec import Backend
from miniseries.control.decide.observations import DEFAULT_RETRY, RetryTimings

#: The environment variables `from_environment` reads (tests shorten the timings; production keeps
#: the defaults). MINISERIES_BACKENDS is the chart's list of served backends, comma-separated.
POLL_ENV = "MINISERIES_POLL_SECONDS"
RETRY_BASE_ENV = "MINISERIES_RETRY_BASE_SECONDS"
STORE_DENIED_RETRY_ENV = "MINISERIES_STORE_DENIED_RETRY_SECONDS"
STORE_RETRY_ENV = "MINISERIES_STORE_RETRY_SECONDS"
BACKENDS_ENV = "MINISERIES_BACKENDS"


def parse_backends(names: Iterable[str], where: str = "--backend") -> tuple[Backend, ...]:
    """Backend names (flags or MINISERIES_BACKENDS) as the enum, first mention first, each once;
    ValueError names the value and the allowed ones."""
    out: list[Backend] = []
    for name in (n.strip() for n in names):
        if not name:  # "pytorchjob," in MINISERIES_BACKENDS
            continue
        try:
            backend = Backend(name)
        except ValueError:
            allowed = ", ".join(b.value for b in Backend)
            raise ValueError(f"{where}: {name!r} is not a backend; allowed: {allowed}") from None
        if backend not in out:
            out.append(backend)
    if not out:
        raise ValueError(f"{where}: no backend given; allowed: {', '.join(b.value for b in Backend)}")
    return tuple(out)


def _seconds(environ: Mapping[str, str], name: str, default: float, zero: bool = True) -> float:
    """A duration from the environment (unset or empty: `default`); `zero`: 0 is allowed."""
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    allowed = "a number of seconds >= 0" if zero else "a number of seconds > 0"
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not (value >= 0 if zero else value > 0):  # NaN fails both
        raise ValueError(f"${name}: {raw!r} is not {allowed}")
    return value


@dataclass(frozen=True)
class OperatorSettings:
    #: The admission policy, store roots included (api/policy.py); the defaults are the chart's.
    policy: Policy = field(default_factory=Policy)
    #: The backends served: the job kinds listed for every sweep and watched, and the ones a sweep may
    #: choose (spec.resources.backend); the backends' registry maps each to its job kind.
    backends: tuple[Backend, ...] = (Backend.pytorchjob,)
    #: `--kubeconfig`; None: in-cluster first, then the client's default.
    kubeconfig: str | None = None
    #: The namespaces watched; empty with `all_namespaces`.
    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    #: The peering object's name when listed namespaces are watched with `--peering`: optional peering
    #: there, not kopf's mandatory mode (handlers.Operator.configure says why).
    optional_peering: str | None = None
    #: How often a sweep with something still moving polls its store.
    poll_seconds: float = 10.0
    #: Failed runs' and a denied store's retry pace, handed to the decisions (Observations.retry).
    retry: RetryTimings = DEFAULT_RETRY
    #: An unreachable store (a wrong URI, bucket or credentials, or an outage) is retried at this pace.
    store_retry_seconds: float = 30.0
    #: Store errors while deleting a sweep's artifacts are retried this long after its writers are gone.
    store_delete_seconds: float = 60.0

    def __post_init__(self) -> None:
        if not self.backends:
            raise ValueError("backends: none given; an operator serves at least one")

    @property
    def store_roots(self) -> tuple[str, ...]:
        return self.policy.store_roots

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], **given: Any) -> OperatorSettings:
        """The settings `given` (from flags), with the timings and, unless given, the served backends
        from the environment; ValueError names the variable, its value and what is allowed."""
        base = cls(**given)
        if "backends" not in given and environ.get(BACKENDS_ENV):
            base = replace(base, backends=parse_backends(environ[BACKENDS_ENV].split(","), f"${BACKENDS_ENV}"))
        retry = RetryTimings(
            base_seconds=_seconds(environ, RETRY_BASE_ENV, base.retry.base_seconds),
            store_denied_seconds=_seconds(environ, STORE_DENIED_RETRY_ENV, base.retry.store_denied_seconds),
        )
        return replace(
            base,
            poll_seconds=_seconds(environ, POLL_ENV, base.poll_seconds, zero=False),
            retry=retry,
            store_retry_seconds=_seconds(environ, STORE_RETRY_ENV, base.store_retry_seconds),
        )
