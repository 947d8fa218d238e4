"""The dashboards as the Grafana Foundation SDK builds them: what Grafana does with the JSON on load.

tests/unit/test_dashboards.py checks the committed JSON is the generator's output and reads
only documented metrics; here: the panels say which Grafana schema their options follow (else
Grafana migrates them again), the XY chart's series find the fields its queries produce, the
legends are shown, and every field we ship is one Grafana's schema (as the SDK models it) knows.
"""

from __future__ import annotations

import json
import re
from importlib import metadata
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as dm

from miniseries.api.spec import MAX_DEPTH, MIN_DEPTH
from tests.support.dashboards import ROOT, gen

BOARDS = sorted(gen.DASHBOARDS)


def committed(name: str) -> dict[str, Any]:
    return dict(json.loads((ROOT / "charts" / "miniseries-operator" / "dashboards" / name).read_text()))


def test_the_grafana_version_is_the_pinned_sdks() -> None:
    pinned = re.search(r"^grafana-foundation-sdk==(\S+)", (ROOT / "requirements-dev.txt").read_text(), re.MULTILINE)
    assert pinned, "requirements-dev.txt pins grafana-foundation-sdk"
    assert metadata.version("grafana-foundation-sdk") == pinned.group(1), "the venv has another SDK: run `make venv`"
    assert pinned.group(1).rpartition("!")[2] == gen.GRAFANA_VERSION
    assert re.fullmatch(r"\d+\.\d+\.\d+", gen.GRAFANA_VERSION)


@pytest.mark.parametrize("name", BOARDS)
def test_every_panel_says_which_schema_its_options_follow(name: str) -> None:
    # Grafana migrates the options of a panel without a pluginVersion as if they were older.
    for panel in committed(name)["panels"]:
        if panel["type"] != "row":
            assert panel.get("pluginVersion") == gen.GRAFANA_VERSION, panel["title"]


def test_the_xy_chart_pairs_each_depths_tokens_with_its_loss_in_the_joined_frame() -> None:
    xy = next(p for p in committed("miniseries-sweep.json")["panels"] if p["type"] == "xychart")
    # Grafana 11.1+ re-migrates an XY chart older than 11.1 (the 10.x format gave the n-th
    # manual series frame n, which does not exist after one join): this one is newer.
    assert tuple(map(int, xy["pluginVersion"].split(".")[:2])) >= (11, 1)
    assert [t["id"] for t in xy["transformations"]] == ["joinByField"]  # the two queries become frame 0
    legends = {t["refId"]: t["legendFormat"] for t in xy["targets"]}
    assert legends == {"A": "tokens d{{depth}}", "B": "loss d{{depth}}"}
    assert xy["options"]["mapping"] == "manual"
    series = xy["options"]["series"]
    assert [s["name"]["fixed"] for s in series] == [f"d{d}" for d in range(MIN_DEPTH, MAX_DEPTH + 1)]
    for s in series:
        depth = s["name"]["fixed"].removeprefix("d")
        assert s["frame"]["matcher"] == {"id": "byIndex", "options": 0}
        assert s["x"]["matcher"] == {"id": "byName", "options": legends["A"].replace("{{depth}}", depth)}
        assert s["y"]["matcher"] == {"id": "byName", "options": legends["B"].replace("{{depth}}", depth)}


@pytest.mark.parametrize("name", BOARDS)
def test_legends_are_shown_where_a_panel_has_series(name: str) -> None:
    # The SDK's legend model defaults to showLegend false: a panel must ask for it.
    for panel in committed(name)["panels"]:
        if panel["type"] in ("timeseries", "xychart"):
            assert panel["options"]["legend"]["showLegend"] is True, panel["title"]


def _missing(shipped: Any, known: Any, where: str = "") -> list[str]:
    """Paths of `shipped` that `known` lacks (dict keys and list items, recursively)."""
    if isinstance(shipped, dict):
        if not isinstance(known, dict):
            return [where or "/"]
        return [
            p
            for k, v in shipped.items()
            for p in ([f"{where}/{k}"] if k not in known else _missing(v, known[k], f"{where}/{k}"))
        ]
    if isinstance(shipped, list):
        if not isinstance(known, list) or len(known) != len(shipped):
            return [where or "/"]
        return [p for i, (a, b) in enumerate(zip(shipped, known, strict=True)) for p in _missing(a, b, f"{where}/{i}")]
    return [] if shipped == known else [where or "/"]


@pytest.mark.parametrize("name", BOARDS)
def test_grafanas_schema_knows_every_field_we_ship(name: str) -> None:
    register_default_plugins()  # the panel and query types, so options are read as their plugin's
    board = committed(name)
    read_back = json.loads(json.dumps(dm.Dashboard.from_json(board), cls=JSONEncoder))
    assert _missing(board, read_back) == []
    board["panels"][1]["options"]["notAnOption"] = True  # the check can fail
    read_back = json.loads(json.dumps(dm.Dashboard.from_json(board), cls=JSONEncoder))
    assert _missing(board, read_back) == ["/panels/1/options/notAnOption"]
