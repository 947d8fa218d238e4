"""Dashboard PromQL as Prometheus sees it: Grafana's variables substituted, run against
a real server's HTTP API."""

from __future__ import annotations

import re
import time
from typing import Any

import requests


def _regex(value: str) -> str:
    """`value` matched literally by a PromQL regex in a double-quoted string: regex metacharacters
    escaped, and each backslash doubled for the string (PromQL knows no `\\-`: Python's re.escape
    escapes the hyphens of every namespace name)."""
    return re.escape(value).replace("\\-", "-").replace("\\", "\\\\")


def substitute(expr: str, *, namespace: str, sweep: str, run: str, rate_interval: str = "1m") -> str:
    """What Grafana sends for a dashboard whose namespace/sweep/run are chosen and depth is All."""
    values = {"namespace": _regex(namespace), "sweep": _regex(sweep), "run": _regex(run), "depth": ".*",
              "__rate_interval": rate_interval}  # fmt: skip
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


def query_range(base_url: str, expr: str, start: float, end: float | None = None, step: str = "1s") -> list[Any]:
    """The result of a range query (Grafana's timeseries call); raises on a PromQL error."""
    rsp = requests.get(
        f"{base_url}/api/v1/query_range",
        params={"query": expr, "start": start, "end": end or time.time(), "step": step},
        timeout=10,
    )
    body = rsp.json()
    if body.get("status") != "success":
        raise AssertionError(f"{expr}: {body.get('errorType')}: {body.get('error')}")
    return body["data"]["result"]


def series_names(base_url: str) -> set[str]:
    rsp = requests.get(f"{base_url}/api/v1/label/__name__/values", timeout=10)
    rsp.raise_for_status()
    return set(rsp.json()["data"])


def wait_for_samples(base_url: str, expr: str, start: float, timeout: float = 60.0) -> list[Any]:
    """Poll until `expr` has data (scrapes are every second in the tests)."""
    deadline = time.time() + timeout
    while True:
        result = query_range(base_url, expr, start)
        if result or time.time() > deadline:
            return result
        time.sleep(1.0)


def wait_for_panels(
    base_url: str,
    panels: list[tuple[str, str, str]],
    start: float,
    *,
    namespace: str,
    sweep: str,
    run: str,
    timeout: float = 90.0,
) -> None:
    """Poll until every (dashboard, title, expr) panel returns data; at the deadline, fail naming the
    panels still empty. A rate() panel needs two scrapes of its counter after the first: waiting
    for that state, not a fixed pause, holds on a slow machine and costs nothing on a fast one."""
    from tests.harness.processes import NotYet, wait_for

    def all_have_data() -> bool:
        empty = [f"{name} / {title}: {expr}" for name, title, expr in panels
                 if not query_range(base_url, substitute(expr, namespace=namespace, sweep=sweep, run=run), start)]  # fmt: skip
        if empty:
            raise NotYet("panels without data:\n" + "\n".join(empty))
        return True

    wait_for(f"every one of {len(panels)} panels with data", all_have_data, timeout)
