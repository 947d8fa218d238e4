"""A sweep owns its data (issue 15): store keys with the namespace, the store manifest and its
claim, deleting only what is the sweep's, migration from the layout before namespaces, store
roots and '..', and the retry policy that rides out a store outage. Pure parts, on a real
file:// store where a store is needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from miniseries import cli
from miniseries.api.errors import SpecError
from miniseries.api.spec import ScalingSweepSpec
from miniseries.api.sweepfile import parse_sweep
from miniseries.contract.layout import (
    ClaimRefused,
    LayoutError,
    SweepIdentity,
    SweepLayout,
    claim,
    delete_owned,
    migrate_legacy,
    read_manifest,
)
from miniseries.contract.store import (
    LocalStore,
    RetryingStore,
    RetryPolicy,
    StoreError,
    StoreNotFound,
    open_store,
    root_problem,
)
from tests.support.synthetic import spec_from

A = SweepIdentity(namespace="team-a", name="s1", uid="uid-a", created="2025-01-01T00:00:00Z")
B = SweepIdentity(namespace="team-b", name="s1", uid="uid-b")


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "store")


# ---------------------------------------------------------------- layout


def test_keys_carry_the_namespace_and_no_component_can_escape() -> None:
    assert SweepLayout("team-a", "s1").run("d2").results == "team-a/s1/d2/results.json"
    assert SweepLayout("team-a", "s1").root != SweepLayout("team-b", "s1").root
    for ns, name in [("..", "s1"), ("a/b", "s1"), ("team-a", ".."), ("team-a", "s1/x"), ("", "s1"), ("A", "s1")]:
        with pytest.raises(LayoutError, match="cannot be part of a store key"):
            SweepLayout(ns, name)
    with pytest.raises(LayoutError, match="run id"):
        SweepLayout("team-a", "s1").run("../d2")


# ---------------------------------------------------------------- claim


def test_first_claim_writes_the_manifest_and_a_second_sweep_is_refused_naming_both(store: LocalStore) -> None:
    layout = SweepLayout("team-a", "s1")
    m = claim(store, layout, A, ["d1", "d2"])
    assert m.owner == A and m.runs == ["d1", "d2"]
    doc = json.loads(store.read_bytes("team-a/s1/store-manifest.json"))
    assert doc["owner"]["uid"] == "uid-a" and doc["owner"]["namespace"] == "team-a" and doc["owner"]["name"] == "s1"
    assert claim(store, layout, A, ["d1"]).runs == ["d1", "d2"]  # idempotent
    assert claim(store, layout, A, ["d3"]).runs == ["d1", "d2", "d3"]  # added depths are recorded
    again = SweepIdentity(namespace="team-a", name="s1", uid="uid-recreated")
    with pytest.raises(ClaimRefused) as e:
        claim(store, layout, again, ["d1"])
    assert e.value.reason == "StoreOwnedByAnotherSweep"
    assert "team-a/s1 (uid uid-a" in e.value.message and "uid uid-recreated" in e.value.message
    assert "spec.store.uri" in e.value.message and "miniseries.dev/adopt-store=uid-a" in e.value.message
    assert read_manifest(store, layout).owner == A  # type: ignore[union-attr]  # not overwritten


def test_adoption_is_explicit_and_recorded(store: LocalStore) -> None:
    layout = SweepLayout("team-a", "s1")
    claim(store, layout, A, ["d1"])
    new = SweepIdentity(namespace="team-a", name="s1", uid="uid-new")
    with pytest.raises(ClaimRefused):
        claim(store, layout, new, ["d1"], adopt_uid="uid-someone-else")
    m = claim(store, layout, new, ["d1", "d2"], adopt_uid="uid-a")
    assert m.owner == new and [o.uid for o in m.adopted_from] == ["uid-a"] and m.runs == ["d1", "d2"]


def test_unclaimed_results_under_the_key_are_not_adopted(store: LocalStore) -> None:
    layout = SweepLayout("team-a", "s1")
    store.write_bytes(layout.run("d1").results, b"{}")
    with pytest.raises(ClaimRefused) as e:
        claim(store, layout, A, ["d1"])
    assert e.value.reason == "StorePrefixNotEmpty" and "team-a/s1/d1/results.json" in e.value.message
    assert not store.exists(layout.manifest)


def test_a_sweep_whose_store_lies_inside_another_sweeps_key_is_refused(tmp_path: Path) -> None:
    outer = open_store((tmp_path / "store").as_uri())
    claim(outer, SweepLayout("team-a", "s1"), A, ["d1"])
    inner = open_store((tmp_path / "store" / "team-a").as_uri())  # its key team-a/s1/d1/ is s1's run d1
    with pytest.raises(ClaimRefused) as e:
        claim(inner, SweepLayout("s1", "d1"), B, ["d1"])
    assert e.value.reason == "StoreInsideAnotherSweep" and "team-a/s1/store-manifest.json" in e.value.message


def test_an_unreadable_manifest_stops_everything(store: LocalStore) -> None:
    layout = SweepLayout("team-a", "s1")
    store.write_bytes(layout.manifest, b'{"owner": ')
    with pytest.raises(ClaimRefused, match="not a readable store manifest"):
        claim(store, layout, A, ["d1"])
    with pytest.raises(ClaimRefused):
        delete_owned(store, layout, A)
    assert store.exists(layout.manifest)


def test_concurrent_first_claims_one_wins(store: LocalStore) -> None:
    layout = SweepLayout("team-a", "s1")
    assert store.create_exclusive(layout.manifest, b"first")
    assert not store.create_exclusive(layout.manifest, b"second")
    assert store.read_bytes(layout.manifest) == b"first"


# ---------------------------------------------------------------- delete


def test_delete_removes_only_what_the_manifest_says_is_the_sweeps(store: LocalStore) -> None:
    layout = SweepLayout("team-a", "s1")
    store.write_bytes("team-a/s1/NOTES.txt", b"a person's notes, there before the sweep")
    store.write_bytes("team-a/s1-other/d1/results.json", b"{}")  # a sweep whose name starts the same
    store.write_bytes("team-b/s1/d1/results.json", b"{}")  # the same name in another namespace
    store.write_bytes("s1/d1/results.json", b"{}")  # outside the key altogether
    m = claim(store, layout, A, ["d1", "d2"])
    assert m.preexisting == ["team-a/s1/NOTES.txt"]
    for key in ["sweep.json", "d1/results.json", "d1/ckpt/step_00000010/model.pt", "tokenizer/tokenizer.json",
                "report/report.md", "d2/progress.json"]:  # fmt: skip
        store.write_bytes(layout.root + key, b"x")
    store.write_bytes("team-a/s1/d9/results.json", b"a run this sweep never planned")
    deleted, kept = delete_owned(store, layout, A)
    assert deleted == 7 and kept == 2  # six objects + the manifest; NOTES.txt and d9 stay
    assert store.list("team-a/s1/") == ["team-a/s1/NOTES.txt", "team-a/s1/d9/results.json"]
    assert store.list("team-a/s1-other/") and store.list("team-b/s1/") and store.exists("s1/d1/results.json")


def test_delete_by_another_sweep_or_without_a_manifest_deletes_nothing(store: LocalStore) -> None:
    layout = SweepLayout("team-a", "s1")
    store.write_bytes("team-a/s1/foreign.bin", b"x")
    assert delete_owned(store, layout, A) == (0, 1)
    claim(store, layout, A, ["d1"])
    store.write_bytes(layout.run("d1").results, b"{}")
    with pytest.raises(ClaimRefused, match="nothing deleted"):
        delete_owned(store, layout, SweepIdentity(namespace="team-a", name="s1", uid="uid-other"))
    assert store.exists(layout.run("d1").results) and store.exists(layout.manifest)


def test_delete_never_enters_another_sweeps_key_nested_inside(tmp_path: Path) -> None:
    """A sweep created before the inside-another check (or by another operator) whose key is a run prefix."""
    outer = LocalStore(tmp_path / "store")
    layout = SweepLayout("team-a", "s1")
    claim(outer, layout, A, ["d1"])
    outer.write_bytes("team-a/s1/d1/results.json", b"{}")
    inner = LocalStore(tmp_path / "store" / "team-a" / "s1")
    inner.write_bytes("d1/store-manifest.json", b"{}")  # someone else's key team-a/s1/d1/
    inner.write_bytes("d1/d2/results.json", b"{}")
    store_json = "team-a/s1/sweep.json"
    outer.write_bytes(store_json, b"{}")
    delete_owned(outer, layout, A)
    # The whole subtree under the other manifest is left alone (ownership there is ambiguous: keep).
    assert outer.list("team-a/s1/") == ["team-a/s1/d1/d2/results.json", "team-a/s1/d1/results.json",
                                        "team-a/s1/d1/store-manifest.json"]  # fmt: skip
    assert not outer.exists(store_json)


# ---------------------------------------------------------------- migration


def test_old_layout_is_refused_with_the_command_and_the_command_moves_it(store: LocalStore, capsys) -> None:
    spec = spec_from({"depths": [1, 2]})
    store.write_bytes("s1/sweep.json", json.dumps(spec.wire()).encode())
    store.write_bytes("s1/d1/results.json", b"{}")
    store.write_bytes("s1/d1/ckpt/step_00000005/manifest.json", b"{}")
    store.write_bytes("s1/unrelated.txt", b"not the old layout's")
    layout = SweepLayout("team-a", "s1")
    with pytest.raises(ClaimRefused) as e:
        claim(store, layout, A, ["d1", "d2"])
    assert e.value.reason == "StoreLayoutOutdated"
    cmd = f"miniseries store migrate --store {store.uri} --namespace team-a --sweep s1 --uid uid-a"
    assert cmd in e.value.message
    assert cli.main(cmd.split()[1:]) == 0
    assert "moved 3 objects" in capsys.readouterr().out
    assert store.list("s1/") == ["s1/unrelated.txt"]
    assert set(store.list("team-a/s1/")) == {"team-a/s1/store-manifest.json", "team-a/s1/sweep.json",
                                            "team-a/s1/d1/results.json", "team-a/s1/d1/ckpt/step_00000005/manifest.json"}  # fmt: skip
    assert claim(store, layout, A, ["d1", "d2"]).owner.uid == "uid-a"
    with pytest.raises(ClaimRefused):  # and it is A's now, not B's
        claim(store, layout, SweepIdentity(namespace="team-a", name="s1", uid="uid-b"), ["d1"])


def test_migration_into_a_key_another_sweep_owns_is_refused(store: LocalStore) -> None:
    layout = SweepLayout("team-a", "s1")
    claim(store, layout, A, ["d1"])
    store.write_bytes("s1/d1/results.json", b"{}")
    with pytest.raises(ClaimRefused, match="belongs to sweep team-a/s1"):
        migrate_legacy(store, layout, SweepIdentity(namespace="team-a", name="s1", uid="uid-x"), ["d1"])
    assert store.exists("s1/d1/results.json")


# ---------------------------------------------------------------- store URIs and roots


DOTS = [
    "file:///data/a/victim/../victim2/../../b/victimroot",
    "file:///data/./a",
    "file:///data/%2e%2e/etc",
    "s3://bucket/teams/../other-team",
]


@pytest.mark.parametrize("uri", DOTS)
def test_dot_segments_are_refused_naming_the_field(uri: str) -> None:
    doc = {"apiVersion": "miniseries.dev/v1alpha1", "kind": "ScalingSweep", "metadata": {"name": "s1"},
           "spec": {**spec_from({"depths": [1]}).wire(), "store": {"uri": uri}}}  # fmt: skip
    with pytest.raises(SpecError) as e:
        parse_sweep(doc)
    assert e.value.fields == ["spec.store.uri"] and "path segment" in str(e.value) and uri in str(e.value)
    with pytest.raises(StoreError, match="path segment"):
        open_store(uri)


def test_offline_plan_refuses_a_dot_dot_store_path_like_the_operator(tmp_path: Path, capsys) -> None:
    doc = {"apiVersion": "miniseries.dev/v1alpha1", "kind": "ScalingSweep", "metadata": {"name": "s1"},
           "spec": {**spec_from({"depths": [1]}).wire(), "store": {"uri": DOTS[0]}}}  # fmt: skip
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps(doc))
    assert cli.main(["plan", str(path)]) != 0
    err = capsys.readouterr().err
    assert "spec.store.uri" in err and "'..' path segment" in err


def test_roots_contain_by_whole_segments_and_per_namespace(tmp_path: Path) -> None:
    roots = ["s3://shared/{namespace}", (tmp_path / "srv").as_uri()]
    assert root_problem("s3://shared/team-a", roots, "team-a") is None
    assert root_problem("s3://shared/team-a/sub", roots, "team-a") is None
    assert "outside the store roots" in (root_problem("s3://shared/team-b", roots, "team-a") or "")
    assert "outside" in (root_problem("s3://shared/team-ab", roots, "team-a") or "")
    assert "outside" in (root_problem("s3://other/team-a", roots, "team-a") or "")
    assert root_problem((tmp_path / "srv" / "x").as_uri(), roots, "team-a") is None
    assert "outside" in (root_problem((tmp_path / "srv2").as_uri(), roots, "team-a") or "")
    assert "path segment" in (root_problem((tmp_path / "srv" / ".." / "etc").as_uri(), roots, "a") or "")
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "link").symlink_to(tmp_path / "elsewhere")
    assert "outside" in (root_problem((tmp_path / "srv" / "link").as_uri(), roots, "team-a") or "")
    assert root_problem("s3://anything/at-all", [], "team-a") is None  # no roots configured: any


def test_the_spec_schema_accepts_the_uri_the_roots_then_judge() -> None:
    spec = ScalingSweepSpec.model_validate({**spec_from({"depths": [1]}).wire(), "store": {"uri": "s3://bkt/ok/x"}})
    assert spec.store.uri == "s3://bkt/ok/x"


# ---------------------------------------------------------------- riding out outages


class Flaky:
    """A store that fails `failures` times (as an outage) before answering."""

    def __init__(self, inner: LocalStore, failures: int) -> None:
        self.inner, self.failures, self.calls = inner, failures, 0
        self.uri = inner.uri

    def write_bytes(self, key: str, data: bytes) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreError(f"store {self.uri}/{key}: EndpointConnectionError (simulated)")
        self.inner.write_bytes(key, data)

    def read_bytes(self, key: str) -> bytes:
        self.calls += 1
        return self.inner.read_bytes(key)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_backoff_doubles_caps_and_stops_at_the_budget() -> None:
    p = RetryPolicy(budget_seconds=60, first_delay=1, max_delay=10)
    waited, delays = 0.0, []
    while (d := p.delay(len(delays) + 1, waited)) is not None:
        delays.append(d)
        waited += d
    assert delays[:5] == [1, 2, 4, 8, 10] and sum(delays) == 60 and delays[-1] <= 10
    assert RetryPolicy().budget_seconds == 300 and RetryPolicy().max_delay == 5  # the trainer's defaults


def test_a_write_rides_out_an_outage_within_the_budget(store: LocalStore) -> None:
    clock, seen = Clock(), []
    flaky = Flaky(store, failures=6)  # 1+2+4+8+10+10 = 35 s of outage
    rs = RetryingStore(flaky, RetryPolicy(budget_seconds=300, max_delay=10), sleep=clock.sleep, clock=clock,  # type: ignore[arg-type]
                       on_change=lambda h: seen.append((h.errors, h.outage_started is not None)))  # fmt: skip
    rs.write_bytes("a/ckpt", b"data")
    assert store.read_bytes("a/ckpt") == b"data"
    assert rs.health.errors == 6 and rs.health.waited_seconds == 35 and rs.health.longest_outage_seconds == 35
    assert rs.health.outage_started is None and seen[-1] == (6, False)  # recovered, and told


def test_a_write_gives_up_after_the_budget_with_the_cause(store: LocalStore) -> None:
    clock = Clock()
    rs = RetryingStore(Flaky(store, failures=10**6), RetryPolicy(budget_seconds=30), sleep=clock.sleep, clock=clock)  # type: ignore[arg-type]
    with pytest.raises(StoreError, match=r"EndpointConnectionError.*gave up on write a after 30 s"):
        rs.write_bytes("a", b"x")
    assert clock.t == 30


def test_missing_objects_are_answers_not_outages(store: LocalStore) -> None:
    clock = Clock()
    rs = RetryingStore(store, RetryPolicy(budget_seconds=300), sleep=clock.sleep, clock=clock)
    with pytest.raises(StoreNotFound):
        rs.read_bytes("nope")
    assert clock.t == 0 and rs.health.errors == 0


def test_advisory_writes_never_wait(store: LocalStore) -> None:
    clock = Clock()
    flaky = Flaky(store, failures=1)
    rs = RetryingStore(flaky, RetryPolicy(budget_seconds=300), sleep=clock.sleep, clock=clock)  # type: ignore[arg-type]
    assert rs.write_advisory("p.json", b"1") is False
    assert clock.t == 0 and rs.health.skipped_advisory == 1 and rs.health.outage_started == 0
    assert rs.write_advisory("p.json", b"2") is True and store.read_bytes("p.json") == b"2"
    assert rs.health.outage_started is None
