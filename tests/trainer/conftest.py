"""Fixtures for the trainer tests: the tiny corpus (tests/support/tiny_training.py), built once per session."""

from __future__ import annotations

import pytest

from tests.support.tiny_training import Corpus, make_corpus

torch = pytest.importorskip("torch")

# One thread per process: on a shared 2-core box more threads only fight each other.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Real English text shards and a 512-token BPE trained on them."""
    return make_corpus(tmp_path_factory.mktemp("corpus"))
