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

import os
import platform
from importlib import metadata
from pathlib import Path

import torch

from miniseries.contract import shapes
from miniseries.contract.results import BUILTIN_TRAINER, Provenance
from miniseries.contract.store import Store
from miniseries_trainer import precision as numerics
from miniseries_trainer.origins import dataset_hash, git_commit, tokenizer_hash

FLOPS_CONVENTION = "6*(matmul params)+12*L*d*T per token, forward+backward (PaLM appendix B, nanochat)"


def source_commit() -> str | None:
    """The trainer source's git commit, from the image build or a checkout; None when unknown."""
    if commit := os.environ.get("MINISERIES_SOURCE_COMMIT"):
        return commit
    return git_commit(Path(__file__).resolve().parent)


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
