"""The store's path layout, and who owns it: the one module every part uses to find an artifact.

Keys are relative to the store root (the sweep's `spec.store.uri`). A sweep's objects live
under its namespace and name, so that many teams share one bucket:

    <ns>/<sweep>/store-manifest.json             who owns this key: namespace, name, uid, runs (written first)
    <ns>/<sweep>/sweep.json                      the spec the runs were planned from (report, status)
    <ns>/<sweep>/tokenizer/                      trained BPE (tokenizer.json + manifest)
    <ns>/<sweep>/<run>/ckpt/step_<n>/            model, optimizer, loader state, RNG, manifest.json (written last)
    <ns>/<sweep>/<run>/progress.json             live progress, rewritten while training
    <ns>/<sweep>/<run>/loss_curve.jsonl          step, tokens, FLOPs, loss, lr per logged step
    <ns>/<sweep>/<run>/val_curve.jsonl           step, tokens, FLOPs, val bpb on a fixed slice, every N steps
    <ns>/<sweep>/<run>/results.json              final results (schema-versioned, see results.py)
    <ns>/<sweep>/report/                         report.json, report.md, plots

`ns` is the sweep's Kubernetes namespace; the local runner uses `local` (LOCAL_NAMESPACE).
`run` is the plan's run id (d12, or d12-f1e18 in isoflop mode).

Ownership (the design's "a sweep owns its data"): before anything else is written under
`<ns>/<sweep>/`, the sweep *claims* the key by writing its store manifest (`claim`). A sweep
that finds another sweep's manifest there (another uid: a sweep of the same name deleted
and recreated, or another cluster sharing the bucket) refuses to adopt or overwrite it
(`ClaimRefused`, which names both); data written by the layout before namespaces
(`<sweep>/...`) is refused with the command that moves it (`migrate_legacy`). Deleting
(`delete_owned`) removes only what the manifest says is the sweep's: its spec, tokenizer,
report and the prefixes of the runs it planned, never an object that was already there
when it claimed the key, never the subtree of another sweep's manifest nested inside.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from miniseries.contract.doc import Doc

if TYPE_CHECKING:
    from miniseries.contract.store import Store

STEP_DIR_DIGITS = 8  # zero-padded so that lexical order is step order
LOCAL_NAMESPACE = "local"  # the local runner's namespace (`miniseries run --local`)
MANIFEST_NAME = "store-manifest.json"
MANIFEST_KIND = "miniseries.dev/sweep-store"
MANIFEST_SCHEMA_VERSION = 1
#: A sweep that deliberately takes over the data another sweep (of this uid) left behind.
ADOPT_ANNOTATION = "miniseries.dev/adopt-store"

# Every component of a key is a DNS label or a run id: no '/', no '.', no '..', nothing to escape with.
_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_RUN_RE = re.compile(r"^[a-z0-9][-a-z0-9]{0,62}$")


class LayoutError(ValueError):
    """A namespace, sweep or run id that cannot be part of a store key."""


def _check(value: str, what: str, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        raise LayoutError(
            f"{what} {value!r} cannot be part of a store key: lowercase letters, digits and '-', "
            "starting and ending with a letter or digit, at most 63 characters"
        )
    return value


@dataclass(frozen=True)
class SweepLayout:
    namespace: str
    sweep: str

    def __post_init__(self) -> None:
        _check(self.namespace, "namespace", _LABEL_RE)
        _check(self.sweep, "sweep name", _LABEL_RE)

    @property
    def root(self) -> str:
        return f"{self.namespace}/{self.sweep}/"

    @property
    def manifest(self) -> str:
        return f"{self.root}{MANIFEST_NAME}"

    @property
    def spec(self) -> str:
        return f"{self.root}sweep.json"

    @property
    def tokenizer(self) -> str:
        return f"{self.root}tokenizer/"

    @property
    def report(self) -> str:
        return f"{self.root}report/"

    def run(self, run: str) -> RunLayout:
        return RunLayout(self.namespace, self.sweep, run)

    def owned_prefixes(self, runs: list[str]) -> list[str]:
        """What this sweep writes under its root: these keys and prefixes, nothing else."""
        return [self.manifest, self.spec, self.tokenizer, self.report, *(self.run(r).root for r in runs)]

    # ---- the layout before namespaces, for migration
    @property
    def legacy_root(self) -> str:
        return f"{self.sweep}/"

    @property
    def legacy_spec(self) -> str:
        # Never a key of the current layout: `<ns>/sweep.json` would need a sweep named "sweep.json".
        return f"{self.sweep}/sweep.json"


@dataclass(frozen=True)
class RunLayout:
    namespace: str
    sweep: str
    run: str

    def __post_init__(self) -> None:
        _check(self.namespace, "namespace", _LABEL_RE)
        _check(self.sweep, "sweep name", _LABEL_RE)
        _check(self.run, "run id", _RUN_RE)

    @property
    def root(self) -> str:
        return f"{self.namespace}/{self.sweep}/{self.run}/"

    @property
    def checkpoints(self) -> str:
        return f"{self.root}ckpt/"

    def checkpoint(self, step: int) -> str:
        return f"{self.checkpoints}step_{step:0{STEP_DIR_DIGITS}d}/"

    @property
    def progress(self) -> str:
        return f"{self.root}progress.json"

    @property
    def loss_curve(self) -> str:
        return f"{self.root}loss_curve.jsonl"

    @property
    def val_curve(self) -> str:
        return f"{self.root}val_curve.jsonl"

    @property
    def results(self) -> str:
        return f"{self.root}results.json"


def step_of_checkpoint_key(key: str) -> int | None:
    """The step number in a `.../ckpt/step_<n>/...` key, or None."""
    for part in key.split("/"):
        if part.startswith("step_") and part[5:].isdigit():
            return int(part[5:])
    return None


def join_uri(root_uri: str, key: str) -> str:
    return root_uri.rstrip("/") + "/" + key.lstrip("/")


# ---------------------------------------------------------------- ownership


@dataclass(kw_only=True)
class SweepIdentity(Doc):
    """Which sweep a store key belongs to: what the manifest records and a claim compares."""

    namespace: str
    name: str
    uid: str
    created: str | None = None  # metadata.creationTimestamp

    def describe(self) -> str:
        when = f", created {self.created}" if self.created else ""
        return f"{self.namespace}/{self.name} (uid {self.uid}{when})"


def local_identity(sweep: str) -> SweepIdentity:
    """The local runner's sweeps: one per name in its store directory."""
    return SweepIdentity(namespace=LOCAL_NAMESPACE, name=sweep, uid=f"{LOCAL_NAMESPACE}/{sweep}")


@dataclass(kw_only=True)
class StoreManifest(Doc):
    """`<ns>/<sweep>/store-manifest.json`: whose key this is and which objects under it are theirs."""

    schema_version: int = MANIFEST_SCHEMA_VERSION
    kind: str = MANIFEST_KIND
    owner: SweepIdentity
    claimed_at: float = 0.0
    runs: list[str] = field(default_factory=list)  # every run the sweep ever planned (their prefixes are its)
    preexisting: list[str] = field(default_factory=list)  # keys under the root before the claim: never deleted
    adopted_from: list[SweepIdentity] = field(default_factory=list)


class ClaimRefused(Exception):
    """This sweep may not write under its store key; `reason` is a condition/Event reason."""

    def __init__(self, reason: str, message: str):
        self.reason, self.message = reason, message
        super().__init__(message)


def owned_keys(layout: SweepLayout, manifest: StoreManifest, keys: list[str]) -> tuple[list[str], list[str]]:
    """Split `keys` (under layout.root) into (the sweep's, not the sweep's) per its manifest.

    The sweep's: under one of its owned prefixes, not there before its claim, and not inside
    a subtree that holds another store manifest (a sweep whose store URI points inside this one).
    """
    pre = set(manifest.preexisting)
    nested = {k[: -len(MANIFEST_NAME)] for k in keys if k.endswith("/" + MANIFEST_NAME) and k != layout.manifest}
    prefixes = layout.owned_prefixes(manifest.runs)
    mine, other = [], []
    for k in keys:
        ours = (
            k.startswith(layout.root)
            and k not in pre
            and any(k == p or (p.endswith("/") and k.startswith(p)) for p in prefixes)
            and not any(k.startswith(n) for n in nested)
        )
        (mine if ours else other).append(k)
    return mine, other


def read_manifest(store: Store, layout: SweepLayout) -> StoreManifest | None:
    """The key's manifest, None when there is none; ClaimRefused when it cannot be parsed."""
    from miniseries.contract.store import StoreNotFound

    try:
        raw = store.read_bytes(layout.manifest)
    except StoreNotFound:
        return None
    try:
        manifest = StoreManifest.from_dict(json.loads(raw))
    except ValueError as e:  # invalid JSON, or DocError
        raise ClaimRefused(
            "StoreManifestUnreadable",
            f"{join_uri(store.uri, layout.manifest)} is not a readable store manifest ({str(e)[:200]}); "
            "it says which sweep owns this key, so nothing is written or deleted until it is repaired or removed",
        ) from None
    if manifest.kind != MANIFEST_KIND or manifest.schema_version != MANIFEST_SCHEMA_VERSION:
        raise ClaimRefused(
            "StoreManifestUnreadable",
            f"{join_uri(store.uri, layout.manifest)} has kind {manifest.kind!r} schema {manifest.schema_version}; "
            f"this operator knows {MANIFEST_KIND!r} schema {MANIFEST_SCHEMA_VERSION}",
        )
    return manifest


def fenced(store: Store, layout: SweepLayout, uid: str) -> str | None:
    """Why a trainer of sweep `uid` may no longer write under `layout.root` (None: it may).

    A trainer checks this before each checkpoint and before results.json: once its sweep is deleted
    (its manifest gone) or the key is another sweep's (a new sweep of the same name), whatever it
    writes would be read as someone else's training. Readers fence too (results.foreign), for the
    write that races this check."""
    manifest = read_manifest(store, layout)
    if manifest is None:
        return f"{join_uri(store.uri, layout.manifest)} is gone: sweep uid {uid} was deleted"
    if manifest.owner.uid != uid:
        return f"{join_uri(store.uri, layout.root)} now belongs to sweep {manifest.owner.describe()}, not uid {uid}"
    return None


def lineage(store: Store, layout: SweepLayout, uid: str) -> frozenset[str]:
    """The uids whose checkpoints and results are sweep `uid`'s own: its uid, and the uids of the
    sweeps whose data it adopted on purpose (ADOPT_ANNOTATION, recorded in its store manifest)."""
    manifest = read_manifest(store, layout)
    if manifest is None or manifest.owner.uid != uid:
        return frozenset({uid})
    return frozenset({uid, *(a.uid for a in manifest.adopted_from)})


def migrate_command(store_uri: str, layout: SweepLayout, uid: str) -> str:
    return (
        f"miniseries store migrate --store {store_uri} --namespace {layout.namespace} --sweep {layout.sweep} "
        f"--uid {uid}"
    )


def _enclosing_manifest(store: Store, layout: SweepLayout) -> str | None:
    """A store manifest on the path above this sweep's root (its store URI points inside another sweep's key)."""
    from miniseries.contract.store import StoreError

    outer, prefix = store.outer()
    parts = (prefix + layout.root).strip("/").split("/")
    for i in range(1, len(parts)):
        key = "/".join(parts[:i]) + "/" + MANIFEST_NAME
        try:
            found = outer.exists(key)
        except (StoreError, OSError):  # credentials scoped to this prefix, an unreadable parent directory
            continue
        if found:
            return join_uri(outer.uri, key)
    return None


def claim(
    store: Store,
    layout: SweepLayout,
    owner: SweepIdentity,
    runs: list[str],
    *,
    adopt_uid: str | None = None,
    migrating: bool = False,
) -> StoreManifest:
    """Make `layout.root` this sweep's (or confirm it is), recording `runs`; ClaimRefused if it may not.

    Idempotent: a sweep that already owns the key only rewrites its manifest when its plan
    gained runs. `adopt_uid` (the ADOPT_ANNOTATION) takes over a key whose manifest names
    exactly that uid: retained data of an earlier sweep, adopted on purpose.
    """
    where = join_uri(store.uri, layout.root)
    for _ in range(3):  # a concurrent first claim: read what won and decide again
        manifest = read_manifest(store, layout)
        if manifest is not None:
            if manifest.owner.uid != owner.uid:
                if adopt_uid is None or adopt_uid != manifest.owner.uid:
                    raise ClaimRefused(
                        "StoreOwnedByAnotherSweep",
                        f"spec.store.uri: {where} belongs to sweep {manifest.owner.describe()}; this sweep "
                        f"{owner.describe()} will not adopt or overwrite it. Use another spec.store.uri, or, "
                        f"if that sweep is gone and its data is meant for this one, annotate this sweep with "
                        f"{ADOPT_ANNOTATION}={manifest.owner.uid}",
                    )
                adopted = dataclasses.replace(
                    manifest,
                    owner=owner,
                    adopted_from=[*manifest.adopted_from, manifest.owner],
                    runs=sorted(set(manifest.runs) | set(runs)),
                )
                store.write_bytes(layout.manifest, adopted.to_json())
                return adopted
            new_runs = sorted(set(runs) - set(manifest.runs))
            if not new_runs:
                return manifest
            _refuse_preexisting(store, layout, manifest.preexisting, new_runs)
            manifest = dataclasses.replace(manifest, runs=sorted(set(manifest.runs) | set(runs)))
            store.write_bytes(layout.manifest, manifest.to_json())
            return manifest
        if not migrating and store.exists(layout.legacy_spec):
            raise ClaimRefused(
                "StoreLayoutOutdated",
                f"spec.store.uri: {join_uri(store.uri, layout.legacy_root)} holds sweep {layout.sweep!r} in the "
                f"layout before namespaces (<sweep>/ instead of <namespace>/<sweep>/). If it is this sweep's, move "
                f"it with `{migrate_command(store.uri, layout, owner.uid)}`; if it is another namespace's sweep of the same "
                "name, use another spec.store.uri",
            )
        enclosing = _enclosing_manifest(store, layout)
        if enclosing is not None:
            raise ClaimRefused(
                "StoreInsideAnotherSweep",
                f"spec.store.uri: {where} lies inside the store key of the sweep whose manifest is {enclosing}; "
                "use a store URI outside every sweep's key",
            )
        existing = store.list(layout.root)
        _refuse_preexisting(store, layout, existing, runs)
        manifest = StoreManifest(owner=owner, claimed_at=time.time(), runs=sorted(set(runs)), preexisting=existing)
        if store.create_exclusive(layout.manifest, manifest.to_json()):
            return manifest
    raise ClaimRefused("StoreClaimRaced", f"{where}: its store manifest kept changing while claiming it")


def _refuse_preexisting(store: Store, layout: SweepLayout, keys: list[str], runs: list[str]) -> None:
    """Objects already at places this sweep would read as its own (results, checkpoints, spec): refuse."""
    probe = StoreManifest(owner=SweepIdentity(namespace="-", name="-", uid="-"), runs=runs)
    would_adopt, _ = owned_keys(layout, probe, keys)
    if would_adopt:
        raise ClaimRefused(
            "StorePrefixNotEmpty",
            f"spec.store.uri: {len(would_adopt)} object(s) under {join_uri(store.uri, layout.root)} that no sweep "
            f"claimed (e.g. {would_adopt[0]}) lie where this sweep keeps its own data, and would be read as its "
            "results; move or delete them, or use another spec.store.uri",
        )


def delete_owned(store: Store, layout: SweepLayout, owner: SweepIdentity) -> tuple[int, int]:
    """Delete what the manifest says is this sweep's, the manifest last; (deleted, kept) object counts.

    Nothing is deleted when the key has no manifest or another sweep's (ClaimRefused says which).
    """
    manifest = read_manifest(store, layout)
    if manifest is None:
        return 0, len(store.list(layout.root))
    if manifest.owner.uid != owner.uid:
        raise ClaimRefused(
            "StoreOwnedByAnotherSweep",
            f"{join_uri(store.uri, layout.root)} belongs to sweep {manifest.owner.describe()}, not to "
            f"{owner.describe()}: nothing deleted",
        )
    mine, other = owned_keys(layout, manifest, store.list(layout.root))
    mine = [k for k in mine if k != layout.manifest]
    deleted = store.delete_keys(mine)
    store.delete_keys([layout.manifest])
    return deleted + 1, len(other)


def migrate_legacy(store: Store, layout: SweepLayout, owner: SweepIdentity, runs: list[str]) -> int:
    """Move a sweep's objects from `<sweep>/` (the layout before namespaces) to `<ns>/<sweep>/`, owned by `owner`.

    The new key is claimed first (so the moved objects are the owner's, and a key another
    sweep owns is refused), then only what the old layout wrote for this sweep moves:
    sweep.json, tokenizer/, report/ and the prefixes of `runs`; a subtree holding a store
    manifest (a namespace named like the sweep) is never touched. Returns the objects moved.
    """
    claim(store, layout, owner, runs, migrating=True)
    keys = store.list(layout.legacy_root)
    nested = {k[: -len(MANIFEST_NAME)] for k in keys if k.endswith("/" + MANIFEST_NAME)}
    wanted = [layout.legacy_root + p[len(layout.root) :] for p in layout.owned_prefixes(runs)[1:]]
    moving = [
        k
        for k in keys
        if any(k == w or (w.endswith("/") and k.startswith(w)) for w in wanted)
        and not any(k.startswith(n) for n in nested)
    ]
    for k in moving:
        store.copy(k, layout.root + k[len(layout.legacy_root) :])
    store.delete_keys(moving)
    return len(moving)
