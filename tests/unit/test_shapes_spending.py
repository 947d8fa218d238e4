"""shapes.smallest_spending: which model of a family spends a compute figure (the report's depth column)."""

from __future__ import annotations

import pytest

from miniseries.contract import shapes

RATIO = 8.0
DIALS = {"aspect_ratio": 32, "head_dim": 32, "vocab_size": 2048, "sequence_len": 256}


def family(max_depth: int = 24) -> list[shapes.ModelShape]:
    return [shapes.model_shape(d, **DIALS) for d in range(1, max_depth + 1)]


def spend(shape: shapes.ModelShape) -> float:
    return shapes.training_flops(shape, shapes.tokens_for_ratio(shape, RATIO))


@pytest.mark.parametrize("depth", [1, 2, 7, 12, 24])
def test_a_depths_own_compute_names_that_depth_and_a_little_more_the_next(depth: int) -> None:
    shape = shapes.model_shape(depth, **DIALS)
    assert shapes.smallest_spending(family(), RATIO, spend(shape)).depth == depth  # type: ignore[union-attr]
    more = shapes.smallest_spending(family(), RATIO, spend(shape) * 1.000001)
    if depth == 24:
        assert more is None  # the family ends there
    else:
        assert more is not None and more.depth == depth + 1


def test_below_the_smallest_model_is_the_smallest_and_beyond_the_largest_is_none() -> None:
    assert shapes.smallest_spending(family(), RATIO, 1.0).depth == 1  # type: ignore[union-attr]
    assert shapes.smallest_spending(family(), RATIO, spend(family()[-1]) * 2) is None
    assert shapes.smallest_spending([], RATIO, 1.0) is None


def test_a_higher_ratio_reaches_the_same_compute_with_a_smaller_model() -> None:
    target = spend(shapes.model_shape(16, **DIALS))
    at_8 = shapes.smallest_spending(family(), 8.0, target)
    at_20 = shapes.smallest_spending(family(), 20.0, target)
    assert at_8 is not None and at_20 is not None and at_20.depth < at_8.depth


def test_the_scaling_count_is_the_matmul_count_and_kaplan_style() -> None:
    """One number, three uses: tokens = ratio x N, 6 FLOPs per matmul weight, nanochat's Kaplan-style count."""
    shape = shapes.model_shape(12, **DIALS)
    counts = shape.param_counts()
    assert counts["scaling"] == counts["kaplan_non_embedding"] == shape.scaling_params
    assert shape.scaling_params == counts["transformer_matrices"] + counts["lm_head"]
    assert shape.flops_per_token == 6 * shape.scaling_params + shape.attention_flops_per_token
    assert counts["chinchilla_all"] == counts["total"] == shape.scaling_params + counts["embedding"]
