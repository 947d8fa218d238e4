"""The trainer's model has exactly the parameters miniseries.contract.shapes counts (meta device: no memory)."""

from __future__ import annotations

import pytest

from miniseries.contract.shapes import model_shape

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


@pytest.mark.parametrize(
    "depth,kwargs",
    [
        (1, {"aspect_ratio": 32, "head_dim": 32, "vocab_size": 512, "sequence_len": 64}),
        (2, {"aspect_ratio": 48, "head_dim": 32, "vocab_size": 1000, "sequence_len": 128}),
        (10, {}),
        (12, {}),
        (16, {}),
        (20, {}),
        (26, {"vocab_size": 65536}),
    ],
)
def test_param_count_and_groups_match_shapes(depth: int, kwargs: dict[str, int]) -> None:
    from miniseries_trainer.model import GPT

    shape = model_shape(depth, **kwargs)
    with torch.device("meta"):
        model = GPT(shape)
    count = lambda ps: sum(p.numel() for p in ps)  # noqa: E731
    assert count(model.parameters()) == shape.total_params
    assert count(model.embedding_params()) == shape.embedding_params
    assert count(model.lm_head_params()) == shape.lm_head_params
    assert count(model.matrix_params()) == shape.transformer_matrix_params
    # every parameter is in exactly one optimizer group
    grouped = model.embedding_params() + model.lm_head_params() + model.matrix_params()
    assert {id(p) for p in grouped} == {id(p) for p in model.parameters()}
    assert len(grouped) == len(list(model.parameters()))
    assert all(p.ndim == 2 for p in model.matrix_params())
    assert model.shape is shape
