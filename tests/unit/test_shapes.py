"""The depth -> shape/params/FLOPs arithmetic, checked against hand-derived numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from miniseries.contract import shapes


def test_d12_by_hand() -> None:
    # d12 at nanochat's defaults: width 12 x 64 = 768 = 6 heads of 128; V = 32768 (already a multiple of 64).
    s = shapes.model_shape(12)
    assert (s.n_layer, s.n_embd, s.n_head, s.head_dim) == (12, 768, 6, 128)
    # transformer matrices: 12 layers x 12 x 768^2 = 144 x 589_824
    assert s.transformer_matrix_params == 84_934_656
    # embedding and lm_head: 32_768 x 768 each
    assert s.embedding_params == s.lm_head_params == 25_165_824
    assert s.total_params == 84_934_656 + 2 * 25_165_824 == 135_266_304
    assert s.scaling_params == 84_934_656 + 25_165_824 == 110_100_480
    # FLOPs/token: 6 x 110_100_480 (matmuls) + 12 x 12 layers x 768 x 2048 (attention)
    assert s.flops_per_token == 660_602_880 + 226_492_416 == 887_095_296


def test_d20_by_hand() -> None:
    # d20: 1280 = 10 heads of 128; matrices 12 x 20 x 1280^2 = 393_216_000; head 32_768 x 1280 = 41_943_040
    s = shapes.model_shape(20)
    assert (s.n_embd, s.n_head) == (1280, 10)
    assert s.scaling_params == 393_216_000 + 41_943_040
    assert s.flops_per_token == 6 * 435_159_040 + 12 * 20 * 1280 * 2048


def test_width_rounds_up_to_whole_heads() -> None:
    # d11: 11 x 64 = 704 is 5.5 heads of 128, so the width is nudged up to 768 (6 heads), as nanochat does.
    s = shapes.model_shape(11)
    assert (s.n_embd, s.n_head) == (768, 6)


def test_vocab_is_padded_to_64() -> None:
    s = shapes.model_shape(2, aspect_ratio=32, head_dim=32, vocab_size=2050)
    assert s.padded_vocab_size == 2112
    assert s.embedding_params == 2112 * 64


def test_d12_ratio_8_horizon_is_exactly_1680_steps_of_2_19() -> None:
    # 8 x 110_100_480 = 880_803_840 = 1680 x 524_288: at d12 the auto batch is exactly 2^19.
    s = shapes.model_shape(12)
    target = shapes.tokens_for_ratio(s, 8)
    assert target == 880_803_840
    batch = shapes.auto_total_batch_tokens(target, target)
    assert batch == 2**19
    h = shapes.horizon(target, batch, device_batch_size=32, sequence_len=2048, world_size=8)
    assert (h.steps, h.grad_accum_steps, h.training_tokens) == (1680, 1, 880_803_840)


def test_auto_batch_grows_as_d_to_0383() -> None:
    # 8x the horizon -> 8^0.383 = 2.22x the batch -> rounds to 2^20 (log2 = 19 + 1.149 -> 20)
    assert shapes.auto_total_batch_tokens(8 * 10**9, 10**9) == 2**20
    # 1/64 of the horizon -> 2^19 x 64^-0.383 = 2^(19-2.298) -> 2^17
    assert shapes.auto_total_batch_tokens(10**9 // 64, 10**9) == 2**17


def test_batch_must_be_whole_micro_batches() -> None:
    with pytest.raises(ValueError, match="not a multiple of one micro-batch"):
        shapes.horizon(10**6, 3000, device_batch_size=4, sequence_len=256, world_size=1)
    assert shapes.fit_batch_to_micro_batch(3000, 1024) == 3072
    assert shapes.fit_batch_to_micro_batch(10, 1024) == 1024


def test_budget_tokens() -> None:
    s = shapes.model_shape(12)
    assert shapes.tokens_for_budget(s, 1e18) == round(1e18 / 887_095_296)


@pytest.mark.parametrize("bad", [dict(depth=0), dict(depth=4, head_dim=31)])
def test_invalid_shape_arguments(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        shapes.model_shape(**bad)


depths = st.integers(min_value=1, max_value=63)


@given(depths)
def test_params_flops_tokens_grow_with_depth(d: int) -> None:
    a, b = shapes.model_shape(d), shapes.model_shape(d + 1)
    assert b.scaling_params > a.scaling_params
    assert b.total_params > a.total_params
    assert b.flops_per_token > a.flops_per_token
    assert shapes.tokens_for_ratio(b, 8) > shapes.tokens_for_ratio(a, 8)


@given(depths, st.floats(min_value=0.5, max_value=100, allow_nan=False))
def test_ratio_mode_gives_the_ratio(d: int, ratio: float) -> None:
    s = shapes.model_shape(d)
    tokens = shapes.tokens_for_ratio(s, ratio)
    # exact up to rounding to a whole token
    assert abs(tokens - ratio * s.scaling_params) <= 0.5
    assert tokens / s.scaling_params == pytest.approx(ratio, abs=1 / s.scaling_params)


@given(depths, st.sampled_from([16, 32, 64, 128]), st.sampled_from([32, 64, 128]))
def test_whole_heads(d: int, aspect: int, head_dim: int) -> None:
    s = shapes.model_shape(d, aspect_ratio=aspect, head_dim=head_dim)
    assert s.n_embd == s.n_head * s.head_dim
    assert s.n_embd >= d * aspect > s.n_embd - head_dim
