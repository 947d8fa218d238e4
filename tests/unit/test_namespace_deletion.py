"""Issue 27 item 2: kopf's namespace bookkeeping, as control/handlers.serve_terminating_namespaces assumes it.

kopf never adds a listed namespace that is pending termination (marked for deletion, content left): an
operator started during the deletion never served it, and the namespace hung on its sweeps' finalizers.
The patch adds such a namespace; a fully deleted one is still dropped. If a kopf upgrade changes the
function, this fails first (the real-API-server test is tests/integration/test_faults.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from kopf._core.reactor import observation

from miniseries.control.io.handlers import serve_terminating_namespaces

PENDING = {"metadata": {"name": "team-a", "deletionTimestamp": "2026-12-07T09:00:00Z"},
           "status": {"phase": "Terminating", "conditions": [
               {"type": "NamespaceContentRemaining", "status": "True", "reason": "SomeResourcesRemain",
                "message": "scalingsweeps.miniseries.dev has 2 resource instances"}]}}  # fmt: skip
LIVE = {"metadata": {"name": "team-b"}, "status": {"phase": "Active"}}


def revise(*bodies: dict[str, Any], events: tuple[dict[str, Any], ...] = (), start: set[str] | None = None) -> set[str]:
    insights = SimpleNamespace(namespaces=set(start or ()))
    observation.revise_namespaces(insights=insights, namespaces=["team-a", "team-b"], raw_bodies=list(bodies),
                                  raw_events=list(events))  # fmt: skip
    return insights.namespaces  # type: ignore[no-any-return]


def test_a_namespace_pending_termination_is_served_from_the_operators_start() -> None:
    original = observation.revise_namespaces
    try:
        assert revise(PENDING, LIVE) == {"team-b"}  # kopf as it is: the terminating namespace is never added
        serve_terminating_namespaces()
        serve_terminating_namespaces()  # idempotent
        assert revise(PENDING, LIVE) == {"team-a", "team-b"}
        done = {**PENDING, "status": {"phase": "Terminating", "conditions": [
            {"type": "NamespaceContentRemaining", "status": "False"}]}}  # fmt: skip
        assert revise(done, start={"team-a"}) == set()  # nothing left to serve: dropped as before
    finally:
        observation.revise_namespaces = original
