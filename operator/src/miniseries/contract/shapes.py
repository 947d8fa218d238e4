"""Depth -> model shape, parameter counts, FLOPs and the training horizon.

This is the one place where miniseries does its arithmetic. It is torch-free so
that the control plane (planning, cost, fits) and the trainer (which builds the
model from it) share exactly one source of truth; a test instantiates the
trainer's model on the meta device and checks that its parameter count equals
what this module predicts.

The model is a nanochat-class decoder-only GPT with one dial, ``depth``:

    width      d = depth x aspect_ratio, rounded up to a multiple of head_dim
                   (so every head has exactly head_dim channels; nanochat does the same)
    heads      h = d / head_dim
    layers     L = depth
    vocab      V = vocab_size padded up to a multiple of 64 (tensor-core friendly rows)

Per layer the weights are four d x d attention matrices (q, k, v, out) and a 4x
ReLU^2 MLP (d x 4d and 4d x d): 12 d^2. No biases, parameter-free RMSNorm, and
rotary embeddings (no position table). Embedding and head are untied: V x d each.

    total params      = 2 V d + 12 L d^2
    scaling params    = 12 L d^2 + V d      (transformer matrices + lm_head)

"Scaling params" follows nanochat's convention (dev/LOG.md, Jan 27 2026): the
matrices that take part in matmuls with the token stream, the lm_head included
and the embedding lookup excluded. It is the N in tokens = ratio x N, and the
convention gives the cleanest scaling laws at this scale. It is one number with
three uses, computed once (`scaling_params`): the N of the tokens:params ratio,
the weights that cost matmul FLOPs (`flops_per_token`), and Kaplan-style
non-embedding counting, which nanochat's log labels "kaplan_matmul_incl_lm_head_no_embeddings"
(`param_counts()["kaplan_non_embedding"]`). `param_counts` also reports Chinchilla's
convention (all parameters, `total`) and the transformer matrices alone, the other
two countings nanochat's log compares, so a fit can use any of them.

FLOPs per token for one forward+backward pass (PaLM appendix B / nanochat):

    flops_per_token = 6 x (12 L d^2 + V d) + 12 x L x d x T

The first term is 2 FLOPs per matmul weight in the forward pass and 4 in the
backward. The second is attention's QK^T and AV matmuls: per layer 2 x 2 x d x T
in the forward (each query meets T keys in a full causal window, counted as nanochat
counts it, without halving for causality), x3 for forward+backward.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass

#: nanochat's reference point for hyper-parameter transfer: batch size and
#: learning rates were tuned at depth 12, where 2**19 tokens is the optimal batch.
REFERENCE_DEPTH = 12
REFERENCE_BATCH_TOKENS = 2**19
#: The optimal batch grows as D^0.383 with the token horizon D (nanochat's fit).
BATCH_TOKENS_EXPONENT = 0.383
#: Embedding rows are padded to a multiple of this, as nanochat does.
VOCAB_PAD_MULTIPLE = 64

#: The name of the parameter-counting convention that `scaling_params` uses.
SCALING_PARAMS_CONVENTION = "transformer_matrices+lm_head"


@dataclass(frozen=True)
class ModelShape:
    """Everything about one depth's model that does not need torch."""

    depth: int
    n_layer: int
    n_embd: int
    n_head: int
    head_dim: int
    vocab_size: int
    padded_vocab_size: int
    sequence_len: int

    @property
    def embedding_params(self) -> int:
        """The token embedding table (a lookup, no matmul FLOPs)."""
        return self.padded_vocab_size * self.n_embd

    @property
    def lm_head_params(self) -> int:
        return self.padded_vocab_size * self.n_embd

    @property
    def transformer_matrix_params(self) -> int:
        """Attention (4 d^2) plus MLP (8 d^2) per layer."""
        return 12 * self.n_layer * self.n_embd**2

    @property
    def total_params(self) -> int:
        return self.embedding_params + self.lm_head_params + self.transformer_matrix_params

    @property
    def scaling_params(self) -> int:
        """N in tokens = ratio x N (see SCALING_PARAMS_CONVENTION): the weights that multiply the
        token stream, 2 forward FLOPs each (the embedding lookup does no matmul)."""
        return self.transformer_matrix_params + self.lm_head_params

    @property
    def attention_flops_per_token(self) -> int:
        return 12 * self.n_layer * self.n_embd * self.sequence_len

    @property
    def flops_per_token(self) -> int:
        """Training FLOPs (forward + backward) per token."""
        return 6 * self.scaling_params + self.attention_flops_per_token

    def param_counts(self) -> dict[str, int]:
        """All conventions side by side, for tables and fits."""
        return {
            "total": self.total_params,
            "embedding": self.embedding_params,
            "lm_head": self.lm_head_params,
            "transformer_matrices": self.transformer_matrix_params,
            "scaling": self.scaling_params,
            "kaplan_non_embedding": self.scaling_params,  # the same count (see the module docstring)
            "chinchilla_all": self.total_params,
        }

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def padded_vocab(vocab_size: int) -> int:
    return math.ceil(vocab_size / VOCAB_PAD_MULTIPLE) * VOCAB_PAD_MULTIPLE


def model_shape(
    depth: int,
    *,
    aspect_ratio: int = 64,
    head_dim: int = 128,
    vocab_size: int = 32768,
    sequence_len: int = 2048,
) -> ModelShape:
    """The model for one depth: width = depth x aspect_ratio, nudged up to whole heads."""
    if depth < 1:
        raise ValueError(f"depth must be >= 1, got {depth}")
    if aspect_ratio < 1 or head_dim < 1:
        raise ValueError(f"aspect_ratio and head_dim must be >= 1, got {aspect_ratio}, {head_dim}")
    if head_dim % 2:
        raise ValueError(f"head_dim must be even (rotary embeddings rotate channel pairs), got {head_dim}")
    base_width = depth * aspect_ratio
    n_embd = math.ceil(base_width / head_dim) * head_dim
    return ModelShape(
        depth=depth,
        n_layer=depth,
        n_embd=n_embd,
        n_head=n_embd // head_dim,
        head_dim=head_dim,
        vocab_size=vocab_size,
        padded_vocab_size=padded_vocab(vocab_size),
        sequence_len=sequence_len,
    )


def tokens_for_ratio(shape: ModelShape, tokens_per_param: float) -> int:
    """The compute-optimal horizon: tokens = ratio x scaling params."""
    return round(tokens_per_param * shape.scaling_params)


def tokens_for_budget(shape: ModelShape, flops: float) -> int:
    """The horizon that spends an isoFLOP budget: tokens = C / flops_per_token."""
    return round(flops / shape.flops_per_token)


def micro_batch_tokens(device_batch_size: int, sequence_len: int, world_size: int) -> int:
    """Tokens in one forward/backward across all ranks."""
    return device_batch_size * sequence_len * world_size


def auto_total_batch_tokens(target_tokens: int, reference_tokens: int) -> int:
    """nanochat's batch rule: B = 2^19 x (D / D_ref)^0.383, rounded to a power of two.

    D_ref is the compute-optimal horizon of the depth-12 reference model, so at
    d12 the batch is exactly 2^19 tokens and it grows slowly with the horizon.
    """
    predicted = REFERENCE_BATCH_TOKENS * (target_tokens / reference_tokens) ** BATCH_TOKENS_EXPONENT
    return 2 ** round(math.log2(predicted))


def fit_batch_to_micro_batch(total_batch_tokens: int, micro_tokens: int) -> int:
    """Round a wanted batch to a whole number (>= 1) of micro-batches.

    Gradient accumulation can only reach multiples of one micro-batch, so an
    automatic batch that is too small or off-grid is moved to the nearest multiple.
    """
    return max(1, round(total_batch_tokens / micro_tokens)) * micro_tokens


@dataclass(frozen=True)
class Horizon:
    """How long one run trains and how each step is split across ranks."""

    target_tokens: int
    total_batch_tokens: int
    steps: int
    grad_accum_steps: int

    @property
    def training_tokens(self) -> int:
        """Tokens actually trained: whole steps only (never more than the target)."""
        return self.steps * self.total_batch_tokens


def horizon(
    target_tokens: int,
    total_batch_tokens: int,
    *,
    device_batch_size: int,
    sequence_len: int,
    world_size: int,
) -> Horizon:
    """Split a token target into whole optimizer steps and micro-batches.

    The batch must be a whole number of micro-batches (device batch x sequence
    length x ranks); the steps are rounded down, as nanochat does, so a run never
    trains past its compute-optimal horizon.
    """
    micro = micro_batch_tokens(device_batch_size, sequence_len, world_size)
    if total_batch_tokens % micro:
        raise ValueError(
            f"total batch of {total_batch_tokens} tokens is not a multiple of one micro-batch "
            f"(device batch {device_batch_size} x sequence {sequence_len} x {world_size} ranks = {micro})"
        )
    return Horizon(
        target_tokens=target_tokens,
        total_batch_tokens=total_batch_tokens,
        steps=target_tokens // total_batch_tokens,
        grad_accum_steps=total_batch_tokens // micro,
    )


def training_flops(shape: ModelShape, tokens: int) -> float:
    return float(shape.flops_per_token) * tokens


def smallest_spending(candidates: Iterable[ModelShape], tokens_per_param: float, flops: float) -> ModelShape | None:
    """The first of `candidates` (in order of size) whose run at `tokens_per_param` spends at least
    `flops` training FLOPs, or None when none does.

    Answers "which model of this family would that be" for a compute figure (the report's
    extrapolation), in the unit a user dials: depth. Counts the target tokens (ratio x N), not
    the whole optimizer steps a run rounds them down to.
    """
    for shape in candidates:
        if training_flops(shape, tokens_for_ratio(shape, tokens_per_param)) >= flops:
            return shape
    return None
