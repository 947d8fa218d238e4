"""Checkpoints in the store: files first, manifest last, newest K kept, corrupt ones skipped loudly.

One checkpoint is `RunLayout(sweep, run).checkpoint(step)`:

    model.pt               weights (rank 0; identical on every rank)
    optim_replicated.pt    state of the optimizers every rank holds whole (AdamW), written once by rank 0
    optim_rank<r>.pt       state of the sharded optimizers (Muon's momentum) of rank r; None where replicated
    state_rank<r>.pt       loader position, RNG states, step, loss-curve length of rank r
    manifest.json          CheckpointManifest: sizes + sha256 of every file, written LAST

A reader only takes a checkpoint with a manifest, and verifies every hash it reads,
so a pod killed mid-write never resumes from half a checkpoint.

A checkpoint is data, never code: every file is read with `torch.load(weights_only=True)`, whose
unpickler builds only tensors, dtypes and plain containers (dict, list, tuple, str, numbers) and
refuses any other global. Whoever can write to a sweep's store (or a wsd trunk's) could otherwise
plant a pickle that runs inside the trainer, next to the store credentials. Everything saved here
already is such data (state_dict()s, RNG states as uint8 tensors, loader positions and loss rows as
dicts of numbers), so checkpoints written before this rule still load. A file that is not is
refused (UnsafeCheckpoint) and the run stops: it is tampering, not corruption, and no fallback to
an older checkpoint of the same store is trusted to be any better.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import sys
import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from miniseries.contract.layout import RunLayout
from miniseries.contract.results import (
    CheckpointFile,
    CheckpointManifest,
    Owners,
    checkpoint_steps,
    foreign,
    read_manifest,
)
from miniseries.contract.store import Store, open_store
from miniseries_trainer.dist import rank_world
from miniseries_trainer.optim import Muon


def _bytes_of(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


REPLICATED = "optim_replicated.pt"


def expected_files(world: int) -> set[str]:
    """The files a checkpoint written by `world` ranks holds, besides its manifest."""
    per_rank = {f"{kind}_rank{r}.pt" for kind in ("optim", "state") for r in range(world)}
    return {"model.pt", REPLICATED} | per_rank


def _sharded(opt: torch.optim.Optimizer) -> bool:
    """Muon's state lives only on the rank that owns each matrix; every other optimizer's state
    (AdamW on the embedding and lm_head, stepped with all-reduced gradients) is the same on all ranks,
    so one copy is enough: at d20 on 8 ranks, AdamW copies were 61% of an 8.85 GB checkpoint."""
    return isinstance(opt, Muon)


def _optimizer_files(rank: int, optimizers: list[torch.optim.Optimizer]) -> dict[str, bytes]:
    pairs = [(_sharded(opt), opt.state_dict()) for opt in optimizers]
    files = {f"optim_rank{rank}.pt": _bytes_of([sd if sharded else None for sharded, sd in pairs])}
    if rank == 0:
        files[REPLICATED] = _bytes_of([None if sharded else sd for sharded, sd in pairs])
    return files


def _read_optimizers(store: Store, prefix: str, manifest: CheckpointManifest, rank: int) -> list[dict[str, Any]]:
    """This rank's optimizer states: its shards merged with the replicated copy (a checkpoint from
    before the split has every state in optim_rank<r>.pt and no replicated file)."""
    mine = _read_verified(store, prefix, manifest, f"optim_rank{rank}.pt")
    if not any(f.name == REPLICATED for f in manifest.files):
        return mine
    shared = _read_verified(store, prefix, manifest, REPLICATED)
    return [own if own is not None else common for own, common in zip(mine, shared, strict=True)]


def save_checkpoint(
    store: Store,
    run: RunLayout,
    step: int,
    tokens: int,
    *,
    model: torch.nn.Module,
    optimizers: list[torch.optim.Optimizer],
    state: dict[str, Any],
    keep: int,
    pinned: tuple[int, ...] = (),
    sweep_uid: str | None = None,
) -> str:
    """Write this rank's files; rank 0 writes the manifest after every rank is done. Returns the prefix.

    The newest `keep` checkpoints are kept, and every one at a `pinned` step (a wsd trunk's branch points).
    The manifest names `sweep_uid`, the sweep this run belongs to: a re-created sweep of the same name
    never resumes from it (results.checkpoint_steps)."""
    rank, world = rank_world()
    prefix = run.checkpoint(step)
    files: dict[str, bytes] = {}
    if rank == 0:
        files["model.pt"] = _bytes_of(model.state_dict())
    files.update(_optimizer_files(rank, optimizers))
    files[f"state_rank{rank}.pt"] = _bytes_of(state)
    entries = []
    for name, data in files.items():
        store.write_bytes(prefix + name, data)
        entries.append(CheckpointFile(name=name, bytes=len(data), sha256=hashlib.sha256(data).hexdigest()))
    if world > 1:
        gathered: list[Any] = [None] * world
        dist.all_gather_object(gathered, [e.to_dict() for e in entries])
        entries = [CheckpointFile.from_dict(e) for part in gathered for e in part]
    if rank == 0:
        manifest = CheckpointManifest(step=step, tokens=tokens, world_size=world, files=entries, created_at=time.time(),
                                      sweep_uid=sweep_uid)  # fmt: skip
        store.write_bytes(prefix + "manifest.json", manifest.to_json())
        for old in checkpoint_steps(store, run, sweep_uid)[:-keep] if keep > 0 else []:
            if old not in pinned:
                store.delete_prefix(run.checkpoint(old))
    if world > 1:
        dist.barrier()
    return prefix


class WorldSizeMismatch(RuntimeError):
    """A checkpoint from a different number of ranks: a user decision, not corruption."""


class UnsafeCheckpoint(RuntimeError):
    """A checkpoint file holding objects other than tensors and plain containers: never unpickled."""


@dataclass
class LoadedCheckpoint:
    step: int
    tokens: int
    model: dict[str, Any]
    optimizers: list[dict[str, Any]]
    state: dict[str, Any]


def _read_verified(store: Store, prefix: str, manifest: CheckpointManifest, name: str) -> Any:
    entry = next((f for f in manifest.files if f.name == name), None)
    if entry is None:
        raise ValueError(f"{name} is not listed in the manifest")
    data = store.read_bytes(prefix + name)
    if len(data) != entry.bytes or hashlib.sha256(data).hexdigest() != entry.sha256:
        raise ValueError(f"{name} does not match its manifest (size {len(data)} vs {entry.bytes} or sha256 differs)")
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise UnsafeCheckpoint(
            f"{store.uri}/{prefix}{name} holds objects other than tensors and plain containers "
            f"({_refusal(e)}); a checkpoint is data, never code, so it was not loaded: "
            "delete this checkpoint or restore it from a trusted copy"
        ) from None


def _refusal(e: Exception) -> str:
    """What weights_only refused, e.g. "Unsupported global: GLOBAL io.open was not an allowed global by
    default", without torch's advice to load it with weights_only=False (exactly what must not happen)."""
    text = str(e)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    return text.strip().split(". ")[0].splitlines()[0][:300]


def load_checkpoint_uri(uri: str, owner_uid: Owners = None) -> LoadedCheckpoint:
    """The checkpoint at `uri` (a step_<n>/ prefix), verified; raises when it is missing or corrupt,
    or when another sweep than `owner_uid` wrote it (a predecessor of the same name)."""
    rank, world = rank_world()
    store = open_store(uri.rstrip("/"))
    manifest = CheckpointManifest.from_json(store.read_bytes("manifest.json"))
    if foreign(manifest.sweep_uid, owner_uid):
        raise ValueError(
            f"checkpoint {uri} was written by sweep uid {manifest.sweep_uid}, not this sweep ({owner_uid})"
        )
    if manifest.world_size != world:
        raise WorldSizeMismatch(
            f"checkpoint {uri} was written by {manifest.world_size} ranks, this run has {world}; "
            "start with the same number of ranks (Muon's optimizer state is sharded per rank)"
        )
    return LoadedCheckpoint(
        step=manifest.step,
        tokens=manifest.tokens,
        model=_read_verified(store, "", manifest, "model.pt"),
        optimizers=_read_optimizers(store, "", manifest, rank),
        state=_read_verified(store, "", manifest, f"state_rank{rank}.pt"),
    )


def load_latest_checkpoint(store: Store, run: RunLayout, owner_uid: Owners = None) -> LoadedCheckpoint | None:
    """The newest checkpoint every rank can read and verify; older ones if the newest is corrupt.
    With `owner_uid`, only the checkpoints that sweep wrote (results.checkpoint_steps)."""
    rank, world = rank_world()
    for step in reversed(checkpoint_steps(store, run, owner_uid)):
        prefix = run.checkpoint(step)
        loaded: LoadedCheckpoint | None = None
        problem, unsafe = "", False
        try:
            manifest = read_manifest(store, run, step)
            if manifest.world_size != world:
                raise WorldSizeMismatch(
                    f"checkpoint {store.uri}/{prefix} was written by {manifest.world_size} ranks, this run has {world}; "
                    "resume with the same number of ranks (Muon's optimizer state is sharded per rank)"
                )
            loaded = LoadedCheckpoint(
                step=manifest.step,
                tokens=manifest.tokens,
                model=_read_verified(store, prefix, manifest, "model.pt"),
                optimizers=_read_optimizers(store, prefix, manifest, rank),
                state=_read_verified(store, prefix, manifest, f"state_rank{rank}.pt"),
            )
        except WorldSizeMismatch:
            raise
        except UnsafeCheckpoint as e:
            problem, unsafe = str(e), True
        except Exception as e:  # unreadable pickle, missing file, bad JSON: all mean "do not trust it"
            problem = f"{type(e).__name__}: {e}"
        # 0 loaded, 1 corrupt (fall back), 2 unsafe (stop); every rank must make the same choice
        verdict = torch.tensor(2 if unsafe else 0 if loaded is not None else 1)
        if world > 1:
            dist.all_reduce(verdict, op=dist.ReduceOp.MAX)
        if verdict.item() == 0:
            return loaded
        if verdict.item() == 2:
            raise UnsafeCheckpoint(problem or f"another rank refused {store.uri}/{prefix} as unsafe")
        print(
            f"WARNING: checkpoint {store.uri}/{prefix} is corrupt or unreadable on rank {rank}: "
            f"{problem or 'another rank could not read it'}; falling back to the previous checkpoint",
            file=sys.stderr,
            flush=True,
        )
    return None


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
