"""The CRD's own checks (pattern, maxLength, CEL) are the operator's, rendered from the same definitions.

What the API server refuses at `kubectl apply` must be exactly what the operator would refuse later
for a store URI (never less, or the API server lets through what the operator then refuses; never
more, or a spec the operator takes cannot be written), and at most what it refuses for the other
fields (a check that needs no other object). Here in Python, on a table and on random URIs: the
CRD's pattern and length with `re` plus the CEL rule's steps (`has_dot_segment`) against
`StoreSpec`'s validator. tests/integration/test_crd_api_server.py asks the real API server the
same table (its RE2 and its CEL).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from miniseries.api import grammar
from miniseries.api import spec as api
from miniseries.api.crd import crd
from miniseries.contract.store.uri import MAX_URI_LENGTH, STORE_URI_RE, dot_segment_rule, has_dot_segment, uri_problem
from tests.support.store_uris import URIS


def operator_accepts(uri: str) -> bool:
    try:
        api.StoreSpec(uri=uri)
    except ValidationError:
        return False
    return True


def api_server_accepts(uri: str) -> bool:
    """The CRD's checks, read as the API server reads them (pattern, maxLength, then the CEL rule)."""
    return len(uri) <= MAX_URI_LENGTH and STORE_URI_RE.fullmatch(uri) is not None and not has_dot_segment(uri)


@pytest.mark.parametrize(("uri", "ok"), URIS, ids=[repr(u[:40]) for u, _ in URIS])
def test_the_table(uri: str, ok: bool) -> None:
    assert operator_accepts(uri) is ok
    assert api_server_accepts(uri) is ok


def test_random_uris_get_the_same_verdict() -> None:
    rng = random.Random(7)
    pieces = ["a", "b", ".", "..", "%2e", "%2E", "%2f", "%2F", "%25", "%", "2", "e", "/", "//", "?", "#", "é", " "]
    disagree, refused, accepted = [], 0, 0
    for _ in range(20000):
        uri = rng.choice(["file:///", "s3://bucket/", "s3://b.c-d/"]) + "".join(
            rng.choice(pieces) for _ in range(rng.randint(0, 8))
        )
        mine = api_server_accepts(uri)
        if mine != operator_accepts(uri):
            disagree.append(uri)
        if STORE_URI_RE.fullmatch(uri) and has_dot_segment(uri) != (uri_problem(uri) is not None):
            disagree.append(uri)
        refused += not mine
        accepted += mine
    assert disagree == [], disagree[:20]
    assert refused > 3000 and accepted > 3000  # both verdicts reached


def _find(node: Any, path: list[str]) -> dict[str, Any]:
    for key in path:
        node = node["properties"][key]
    return node  # type: ignore[no-any-return]


URI_FIELDS = [["store", "uri"], ["data", "shardsUri"], ["data", "tokenizerUri"], ["data", "evalBundleUri"]]


def test_the_crd_carries_the_operators_definitions() -> None:
    root = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = root["properties"]["spec"]
    for path in URI_FIELDS:
        field = _find(spec, path)
        assert field["pattern"] == STORE_URI_RE.pattern and field["maxLength"] == MAX_URI_LENGTH, path
        assert [v["rule"] for v in field["x-kubernetes-validations"]] == [dot_segment_rule()], path
    name = root["properties"]["metadata"]["properties"]["name"]
    assert name["pattern"] == api.SWEEP_NAME_RE.pattern and name["maxLength"] == api.MAX_SWEEP_NAME
    resources = spec["properties"]["resources"]["properties"]
    assert resources["queueName"]["pattern"] == grammar.DNS1123_LABEL_SCHEMA["pattern"]
    assert resources["cpu"]["pattern"] == resources["memory"]["pattern"] == grammar.QUANTITY_SCHEMA["pattern"]
    assert resources["nodeSelector"]["additionalProperties"]["pattern"] == grammar.LABEL_VALUE_SCHEMA["pattern"]


def test_the_sweep_name_leaves_room_for_every_job_name() -> None:
    from miniseries.control.backends.manifests import MAX_NAME
    from miniseries.plan.wsd_branches import MAX_RUN_NAME

    assert api.MAX_SWEEP_NAME + 1 + MAX_RUN_NAME == MAX_NAME
    assert api.SWEEP_NAME_RE.fullmatch("a" * api.MAX_SWEEP_NAME)
    assert not api.SWEEP_NAME_RE.fullmatch("a" * (api.MAX_SWEEP_NAME + 1))
    assert not api.SWEEP_NAME_RE.fullmatch("tiny\n")


# Names and quantities: the CRD's pattern may take more than the operator (which also checks values,
# such as a negative request), never less: whatever the operator accepts, the API server must.
NAMES = ["a", "q-1", "x" * 63, "a.b", "A", "-a", "a-", "a_b", "a..b", "é", "a" * 64, ""]
QUANTITIES = ["16", "500m", "200Gi", "1.5e9", "-1", "1e1.5", "lots", "1K", "", "+"]
LABEL_VALUES = ["", "a", "A.b_c-d", "-a", "a" * 63, "a" * 64, "a b"]


def _accepts(check: Any, value: str) -> bool:
    try:
        check(value)
    except grammar.GrammarError:
        return False
    return True


@pytest.mark.parametrize(
    ("schema", "check", "values"),
    [
        (grammar.DNS1123_LABEL_SCHEMA, grammar.check_dns1123_label, NAMES),
        (grammar.DNS1123_SUBDOMAIN_SCHEMA, grammar.check_dns1123_subdomain, [*NAMES, "a." * 127 + "a"]),
        (grammar.QUANTITY_SCHEMA, grammar.check_request_quantity, QUANTITIES),
        (grammar.LABEL_VALUE_SCHEMA, grammar.check_label_value, LABEL_VALUES),
    ],
    ids=["label", "subdomain", "quantity", "label-value"],
)
def test_name_and_quantity_patterns_never_refuse_what_the_operator_takes(
    schema: dict[str, Any], check: Any, values: list[str]
) -> None:
    pattern = re.compile(schema["pattern"])
    for value in values:
        crd_ok = pattern.fullmatch(value) is not None and len(value) <= schema.get("maxLength", len(value))
        if _accepts(check, value):
            assert crd_ok, value
    assert any(not pattern.fullmatch(v) for v in values)  # and it refuses something


# ---------------------------------------------------------------- the patterns in Go's regexp

GO_PATTERN = Path(__file__).parent / "go_pattern"


def _patterns(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["pattern"]} if isinstance(node.get("pattern"), str) else set()
        return found.union(*(_patterns(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_patterns(v) for v in node))
    return set()


@pytest.fixture(scope="module")
def go_regexp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/unit/go_pattern (standard library only) built here: a build error fails, it never skips."""
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        pytest.skip("no Go toolchain (scripts/build-binaries.sh installs one)")
    work = tmp_path_factory.mktemp("go_pattern")
    for f in GO_PATTERN.iterdir():
        shutil.copy(f, work / f.name)
    env = {**os.environ, "GOPROXY": "off", "GOFLAGS": "-mod=mod", "CGO_ENABLED": "0"}
    proc = subprocess.run([go, "build", "-o", "judge", "."], cwd=work, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return work / "judge"


@pytest.mark.slow
def test_every_crd_pattern_reads_the_same_in_go(go_regexp: Path) -> None:
    """The API server matches `pattern` with Go's regexp; the operator with Python's `re` (fullmatch)."""
    patterns = sorted(_patterns(crd()))
    assert STORE_URI_RE.pattern in patterns and api.SWEEP_NAME_RE.pattern in patterns
    rng = random.Random(11)
    alphabet = "aZ09.-_/:%é \t\n\x00\x7f\x85\xa0\u2028+eEiKkMG"
    corpus = [u for u, _ in URIS] + NAMES + QUANTITIES + LABEL_VALUES + ["tiny\n", "file:///a\n", "1Gi\n"]
    corpus += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    corpus += [p + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for p in ("s3://bucket/", "file:///") for _ in range(1000)]  # fmt: skip
    pairs = [(p, s) for p in patterns for s in corpus]
    out = subprocess.run([str(go_regexp)], input="".join(json.dumps(pair) + "\n" for pair in pairs),
                         capture_output=True, text=True, timeout=300, check=True).stdout.split()  # fmt: skip
    assert len(out) == len(pairs)
    disagree = [(p, s, go) for (p, s), go in zip(pairs, out, strict=True) if (go == "true") != bool(re.fullmatch(p, s))]
    assert disagree == [], disagree[:20]
