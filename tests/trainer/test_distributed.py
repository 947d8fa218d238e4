"""Two ranks (gloo, real torch.distributed) train exactly what one rank trains with the same global batch.

The 2-rank run is the real trainer under torchrun-style env (RANK, WORLD_SIZE, MASTER_ADDR/PORT).
Documents are split across ranks, so the single-rank reference reads the same two
document streams (rank 0's and rank 1's loaders) as two micro-batches of one step with
gradient accumulation, built from the trainer's own model, optimizer and train_step.
Tolerance: the sums run in a different order (all-reduce vs accumulation), so losses
agree to a relative 1e-4, not bitwise.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from miniseries.contract.layout import LOCAL_NAMESPACE, RunLayout
from miniseries.contract.results import read_loss_curve
from miniseries.contract.store import open_store
from tests.harness.processes import free_port
from tests.support.tiny_training import Corpus, train_argv, trainer_env

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch
STEPS = 12


def reference_losses(corpus: Corpus, argv: list[str]) -> list[float]:
    from miniseries_trainer.loader import TokenLoader
    from miniseries_trainer.model import build_model, shape_from_flags
    from miniseries_trainer.optim import build_optimizers, lr_multiplier, set_schedule
    from miniseries_trainer.shards import list_shards
    from miniseries_trainer.tokenizer import load_tokenizer
    from miniseries_trainer.train import build_parser, train_step

    args = build_parser().parse_args(argv)
    store, tok = open_store(corpus.shards_uri), load_tokenizer(corpus.tokenizer_uri)
    train_keys = list_shards(store)[0]
    loaders = [
        TokenLoader(
            store, train_keys, tok, batch_size=args.device_batch_size, seq_len=args.seq_len, rank=r, world_size=2
        )
        for r in (0, 1)
    ]

    def alternate():  # micro-batch k of a step comes from rank k's document stream
        while True:
            for loader in loaders:
                yield next(loader)

    torch.manual_seed(args.seed)
    shape = shape_from_flags(args)
    model = build_model(shape, "cpu")
    opts = build_optimizers(
        model,
        total_batch_tokens=args.total_batch_tokens,
        matrix_lr=args.matrix_lr,
        embedding_lr=args.embedding_lr,
        unembedding_lr=args.unembedding_lr,
    )
    batches = alternate()
    losses = []
    import contextlib

    for step in range(STEPS):
        set_schedule(opts, step, lr_multiplier(step, STEPS, args.warmup_steps, args.warmdown_ratio))
        losses.append(train_step(model, model, opts, batches, 2, contextlib.nullcontext, 1).item())
    return losses


def test_two_gloo_ranks_match_one_rank_with_the_same_global_batch(corpus: Corpus, tmp_path: Path) -> None:
    port = free_port()
    # depth 1 has six Muon matrices: each rank orthogonalizes three and broadcasts them
    argv = train_argv(
        corpus,
        tmp_path,
        depth=1,
        target_tokens=512 * STEPS,
        total_batch_tokens=512,
        device_batch_size=4,
        checkpoint_every=6,
        deterministic=True,
    )
    procs = []
    for rank in (0, 1):
        env = trainer_env() | {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "miniseries_trainer.train", *argv],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outs = [p.communicate(timeout=240)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    run = RunLayout(LOCAL_NAMESPACE, "t", "d1")  # the trainer's default --namespace
    two = [p["loss"] for p in read_loss_curve(open_store(tmp_path.as_uri()), run)]
    one = reference_losses(corpus, argv)
    assert len(two) == len(one) == STEPS
    assert two == pytest.approx(one, rel=1e-4), (two, one)
    assert two[-1] < two[0]
    # the checkpoint holds one optimizer shard per rank, and AdamW's replicated state once
    from miniseries_trainer.checkpoint import expected_files

    names = {p.name for p in (tmp_path / run.checkpoint(6)).iterdir()}
    assert names == expected_files(2) | {"manifest.json"}
