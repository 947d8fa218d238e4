"""StepLoader: a step trains on the same documents whatever the world size, and resumes exactly."""

from __future__ import annotations

import json
from typing import Any

import pytest

from miniseries.contract.store import open_store
from tests.support.tiny_training import Corpus

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


def loaders(corpus: Corpus, world: int, accum: int, state: Any = None) -> list[Any]:
    from miniseries_trainer.loader import StepLoader
    from miniseries_trainer.shards import list_shards
    from miniseries_trainer.tokenizer import load_tokenizer

    store, tok = open_store(corpus.shards_uri), load_tokenizer(corpus.tokenizer_uri)
    train = list_shards(store)[0]
    return [StepLoader(store, train, tok, batch_size=4, seq_len=64, rank=r, world_size=world, grad_accum=accum,
                       state=state) for r in range(world)]  # fmt: skip


def steps(ranks: list[Any], accum: int, n: int) -> list[list[torch.Tensor]]:
    """Each step's micro-batches as a global list: stream order (rank r's k-th is stream r + k x world)."""
    world = len(ranks)
    out = []
    for _ in range(n):
        micro: dict[int, torch.Tensor] = {}
        for k in range(accum):
            for r, loader in enumerate(ranks):
                micro[r + k * world] = next(loader)[0]
        out.append([micro[s] for s in sorted(micro)])
    return out


@pytest.mark.parametrize(("world", "accum", "one_accum"), [(2, 1, 2), (2, 2, 4), (4, 1, 4)])
def test_a_step_reads_the_same_documents_on_one_rank_as_on_several(
    corpus: Corpus, world: int, accum: int, one_accum: int
) -> None:
    one = steps(loaders(corpus, 1, one_accum), one_accum, 12)
    many = steps(loaders(corpus, world, accum), accum, 12)
    for a, b in zip(one, many, strict=True):
        assert len(a) == len(b) == world * accum
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)
    assert not torch.equal(one[0][0], one[0][1])  # the streams are different documents


def test_streams_resume_exactly_from_the_state(corpus: Corpus) -> None:
    (a,) = loaders(corpus, 1, 3)
    for _ in range(3 * 9 + 1):  # mid-step: the next stream is part of the state
        next(a)
    state = json.loads(json.dumps(a.state_dict()))
    assert len(state["streams"]) == 3 and state["next"] == 1
    (b,) = loaders(corpus, 1, 3, state)
    for _ in range(20):
        assert torch.equal(next(a)[0], next(b)[0])


def test_one_stream_keeps_the_token_loader_state(corpus: Corpus) -> None:
    """grad_accum 1 (and a checkpoint from before streams) is one TokenLoader, its state unchanged."""
    from miniseries_trainer.loader import TokenLoader
    from miniseries_trainer.shards import list_shards
    from miniseries_trainer.tokenizer import load_tokenizer

    store, tok = open_store(corpus.shards_uri), load_tokenizer(corpus.tokenizer_uri)
    plain = TokenLoader(store, list_shards(store)[0], tok, batch_size=4, seq_len=64, rank=1, world_size=2)
    _, step = loaders(corpus, 2, 1)
    for _ in range(5):
        assert torch.equal(next(plain)[0], next(step)[0])
    assert step.state_dict() == plain.state_dict()
    # a plain state with accumulation: the old one-stream-per-rank order, resumed where it was
    _, old = loaders(corpus, 2, 2, plain.state_dict())
    for _ in range(5):
        assert torch.equal(next(plain)[0], next(old)[0])


def test_a_state_of_other_streams_is_refused(corpus: Corpus) -> None:
    (a,) = loaders(corpus, 1, 3)
    with pytest.raises(ValueError, match="3 streams per rank, this run accumulates 2"):
        loaders(corpus, 1, 2, a.state_dict())
