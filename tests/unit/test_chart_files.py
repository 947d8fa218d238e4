"""The chart ships the same CRD bytes as crds/ (`make crd` copies them)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "miniseries-operator"


def test_chart_crd_is_the_generated_crd() -> None:
    source = ROOT / "crds" / "scalingsweeps.miniseries.dev.yaml"
    copy = CHART / "crds" / source.name
    assert copy.read_bytes() == source.read_bytes(), (
        f"{copy} is stale: run `make crd` (or cp {source.relative_to(ROOT)} {copy.relative_to(ROOT)})"
    )


def test_kopf_peering_crds_match_what_kopf_watches() -> None:
    docs = list(yaml.safe_load_all((CHART / "crds" / "kopf-peering.yaml").read_text()))
    by_name = {d["metadata"]["name"]: d for d in docs}
    assert set(by_name) == {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"}
    assert by_name["clusterkopfpeerings.kopf.dev"]["spec"]["scope"] == "Cluster"
    assert by_name["kopfpeerings.kopf.dev"]["spec"]["scope"] == "Namespaced"
    for d in docs:
        assert d["spec"]["group"] == "kopf.dev" and d["spec"]["versions"][0]["name"] == "v1"
