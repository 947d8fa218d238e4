"""Events on a sweep, counted instead of repeated: one Event per (sweep, type, reason, message).

kopf.event creates a new Event object every call, so a handler that reports the same problem on
every poll filled the namespace (an invalid sweep: 104 identical Events in 5 minutes). Here, as
client-go's EventRecorder does, a repeat of the same event raises the existing one's `count` and
`lastTimestamp`. The name is a hash of what identifies the event, not a timestamp, so a restarted
operator finds the same object. Posting is best effort: a failure is logged, never raised, and
only (type, reason, message) are ever sent, so what goes in an Event is what the caller wrote.
"""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.rest import ApiException

from miniseries.control.io import kube

log = logging.getLogger("miniseries.operator")

COMPONENT = "miniseries-operator"
MAX_MESSAGE = 1024  # what kopf and the API server's events.k8s.io validation allow


def event_name(meta: dict[str, Any], type_: str, reason: str, message: str) -> str:
    """`<sweep>.<hash>`: the same object, the same event, the same name (a DNS subdomain)."""
    key = "\0".join((meta.get("uid", ""), type_, reason, message))
    return f"{meta['name']}.{hashlib.sha256(key.encode()).hexdigest()[:16]}"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def post(body: dict[str, Any], type_: str, reason: str, message: str) -> None:
    """Create the Event, or count one more of it if it exists."""
    meta = body["metadata"]
    namespace = meta["namespace"]
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    name = event_name(meta, type_, reason, message)
    now = _now()
    core = kube.core()
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "name": meta["name"],
            "namespace": namespace,
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message,
        "count": 1,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": os.environ.get("HOSTNAME", COMPONENT),
    }
    log.info("event %s %s on %s/%s: %s", type_, reason, namespace, meta["name"], message)
    try:
        try:
            core.create_namespaced_event(namespace, event)
        except ApiException as e:
            if e.status != 409:
                raise
            # Seen before: one patch reads the count (no `get` on events needed), one raises it.
            seen = core.patch_namespaced_event(name, namespace, {"lastTimestamp": now})
            core.patch_namespaced_event(name, namespace, {"count": (seen.count or 1) + 1})
    except Exception as e:  # an Event is a courtesy: never fail a reconcile over one
        log.warning("could not post event %s on %s/%s: %s", reason, namespace, meta["name"], e)
