"""The node agent (tests/harness/node_agent.py) moves a pod's declared metrics port to a free one of this
host: its pods share the host's network, and two test sessions' trainers side by side would both bind
the operator's 9400 (issue 30: the e2e files run on several workers)."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest

from tests.harness import node_agent, ports


def _spec(*named: tuple[str, int]) -> SimpleNamespace:
    return SimpleNamespace(ports=[SimpleNamespace(name=n, container_port=p) for n, p in named])


def test_the_metrics_port_moves_in_every_argument_that_names_it() -> None:
    argv = ["python", "-m", "miniseries_trainer.train", "--metrics-port=9400", "--port", "9400", "--steps=94000"]
    moved = node_agent.moved_metrics_port(argv, _spec(("metrics", 9400), ("pytorchjob-port", 23456)))
    new = moved[3].split("=")[1]
    assert new != "9400" and moved[5] == new and moved[:3] == argv[:3] and moved[4] == "--port"
    assert moved[6] == "--steps=94000"  # a number that only contains it is not the port
    port = int(new)
    for k in range(node_agent.METRICS_RANKS):  # rank 0 and the local ranks after it can bind
        assert ports.bindable(port + k)
    with socket.socket() as s:  # a trainer binds it as start_http_server does
        s.bind(("0.0.0.0", port))


def test_two_pods_get_two_ports_and_a_pod_without_a_metrics_port_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINISERIES_PARALLEL", "2")  # ports from this process's slot, handed out in turn
    spec = _spec(("metrics", 9400))
    a = node_agent.moved_metrics_port(["--metrics-port=9400"], spec)
    b = node_agent.moved_metrics_port(["--metrics-port=9400"], spec)
    assert a != b
    argv = ["--metrics-port=9400"]
    assert node_agent.moved_metrics_port(argv, _spec(("pytorchjob-port", 23456))) == argv
    assert node_agent.moved_metrics_port(argv, SimpleNamespace(ports=None)) == argv
