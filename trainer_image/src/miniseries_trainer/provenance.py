"""Provenance, written by the trainer (read by science/provenance.py): what results.json records about where a row came from (contract.results.Provenance).

Collected once per run, on rank 0, from what the trainer already has: its package version,
the source commit (MINISERIES_SOURCE_COMMIT, set by an image build, or `git rev-parse HEAD`
when the source lies in a checkout), torch and CUDA versions, the device and rank count,
the precision the loop runs in, the data's shard manifest and the tokenizer's manifest
(content hashes, not names: a dataset re-prepared under the same URI gets a new hash),
the parameter and FLOP conventions of contract.shapes, the seed and the LR schedule (contract.schedule.schedule_record: warmup, the warmdown's shape,
linear or (1-sqrt), its steps and fraction).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from miniseries.contract import shapes
from miniseries.contract.results import BUILTIN_TRAINER, Provenance
from miniseries.contract.store import Store, StoreError
from miniseries_trainer import precision as numerics

#: The manifest `miniseries data prepare` writes next to the shards (miniseries.data.prepare.MANIFEST).
SHARD_MANIFEST = "_manifest.json"
#: The tokenizer's manifest (miniseries_trainer.tokenizer.MANIFEST): holds the artifact's sha256.
TOKENIZER_MANIFEST = "manifest.json"
FLOPS_CONVENTION = "6*(matmul params)+12*L*d*T per token, forward+backward (PaLM appendix B, nanochat)"


def source_commit() -> str | None:
    """The trainer source's git commit, from the image build or a checkout; None when unknown."""
    if commit := os.environ.get("MINISERIES_SOURCE_COMMIT"):
        return commit
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None


def dataset_hash(data_store: Store) -> tuple[str | None, str | None]:
    """(sha256, kind): of the shard manifest when there is one, else of the sorted shard listing."""
    try:
        if data_store.exists(SHARD_MANIFEST):
            return hashlib.sha256(data_store.read_bytes(SHARD_MANIFEST)).hexdigest(), "manifest"
        keys = sorted(k for k in data_store.list("") if k.endswith(".parquet"))
    except StoreError:
        return None, None
    return hashlib.sha256("\n".join(keys).encode()).hexdigest(), "listing"


def tokenizer_hash(tokenizer_store: Store) -> str | None:
    try:
        manifest = json.loads(tokenizer_store.read_bytes(TOKENIZER_MANIFEST))
    except (StoreError, ValueError):
        return None
    sha = manifest.get("sha256") if isinstance(manifest, dict) else None
    return sha if isinstance(sha, str) else None


def collect(
    *,
    device: torch.device,
    precision: str,
    world_size: int,
    data_uri: str,
    data_store: Store,
    tokenizer_uri: str,
    tokenizer_store: Store,
    seed: int,
    lr_schedule: dict[str, object],
) -> Provenance:
    try:
        version: str | None = metadata.version("miniseries-trainer")
    except metadata.PackageNotFoundError:
        version = None
    data_sha, data_kind = dataset_hash(data_store)
    return Provenance(
        trainer=BUILTIN_TRAINER,
        trainer_version=version,
        source_commit=source_commit(),
        python_version=platform.python_version(),
        torch_version=torch.__version__,
        cuda_version=torch.version.cuda if device.type == "cuda" else None,
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        device_count=world_size,
        precision=numerics.label(device, precision),
        dataset_uri=data_uri,
        dataset_manifest_sha256=data_sha,
        dataset_manifest_kind=data_kind,
        tokenizer_uri=tokenizer_uri,
        tokenizer_sha256=tokenizer_hash(tokenizer_store),
        params_convention=shapes.SCALING_PARAMS_CONVENTION,
        flops_convention=FLOPS_CONVENTION,
        seed=seed,
        lr_schedule=lr_schedule,
    )
