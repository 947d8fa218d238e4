"""The GPT that every miniseries run trains: nanochat-class, shaped by `miniseries.contract.shapes`.

Decoder-only transformer with rotary position embeddings, QK-norm, parameter-free
RMSNorm, a 4x ReLU^2 MLP, no biases, an untied embedding and lm_head, and logit
soft-capping. Its parameters are exactly the ones `shapes.ModelShape` counts
(2 V d + 12 L d^2), which a test checks on the meta device for several depths,
so the planner's FLOPs and tokens:params arithmetic is about *this* model.

Learned from karpathy/nanochat `nanochat/gpt.py` (the original, before value
embeddings and residual scalars, which would add parameters shapes.py does not count).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from miniseries.contract.shapes import ModelShape, model_shape

#: Logits are squashed into (-15, 15) with tanh, as nanochat does: keeps early training stable.
LOGIT_SOFTCAP = 15.0
ROPE_BASE = 10000.0
#: Rotary tables cover this many times the training length, so evaluation can run a bit longer.
ROPE_LENGTH_FACTOR = 4
#: SDPA's fused CUDA kernels (flash, memory-efficient) take head dims that are multiples of 8; any
#: other even head dim the API allows (spec.model.headDim: 8..512, even) would fall back to the
#: math kernel, which materialises the T x T scores. So on CUDA such heads are zero-padded to the next
#: multiple of 8: zeros add nothing to q.k, the padded v channels come out zero and are cut off, and the
#: softmax scale stays 1/sqrt(real head dim). Exact, at the cost of the padded channels' FLOPs.
SDPA_HEAD_DIM_MULTIPLE = 8


def norm(x: Tensor) -> Tensor:
    """Parameter-free RMSNorm: no gain to learn, nothing for shapes.py to count."""
    return F.rms_norm(x, (x.size(-1),))


def attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None, pad_to: int | None = None) -> Tensor:
    """Scaled dot-product attention over (B, H, T, head_dim): causal, or under the caller's boolean mask.

    `pad_to`: zero-pad the head dim to a multiple of this first (default: SDPA_HEAD_DIM_MULTIPLE on
    CUDA, none on CPU, whose kernels take any head dim); the result has the real head dim."""
    head_dim = q.size(-1)
    pad = -head_dim % (pad_to or (SDPA_HEAD_DIM_MULTIPLE if q.is_cuda else 1))
    if pad:
        q, k, v = (F.pad(t, (0, pad)) for t in (q, k, v))
    scale = head_dim**-0.5
    if attn_mask is None:
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
    else:  # packed evaluation (core_eval): the mask already encodes causality
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, scale=scale)
    return y[..., :head_dim] if pad else y


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate channel pairs (first half, second half) of each head by a position angle."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos + x2 * sin, x2 * cos - x1 * sin], dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        d = shape.n_embd
        self.n_head, self.head_dim = shape.n_head, shape.head_dim
        self.c_q = nn.Linear(d, d, bias=False)
        self.c_k = nn.Linear(d, d, bias=False)
        self.c_v = nn.Linear(d, d, bias=False)
        self.c_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        B, T, C = x.shape
        q = self.c_q(x).view(B, T, self.n_head, self.head_dim)
        k = self.c_k(x).view(B, T, self.n_head, self.head_dim)
        v = self.c_v(x).view(B, T, self.n_head, self.head_dim)
        # QK-norm after rotary: bounds attention logits without a learned temperature.
        q, k = norm(apply_rotary(q, cos, sin)), norm(apply_rotary(k, cos, sin))
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        y = attention(q, k, v, attn_mask)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        d = shape.n_embd
        self.c_fc = nn.Linear(d, 4 * d, bias=False)
        self.c_proj = nn.Linear(4 * d, d, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.c_proj(F.relu(self.c_fc(x)).square())


class Block(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.attn = CausalSelfAttention(shape)
        self.mlp = MLP(shape)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(norm(x), cos, sin, attn_mask)
        return x + self.mlp(norm(x))


class GPT(nn.Module):
    def __init__(self, shape: ModelShape):
        super().__init__()
        self.shape = shape
        self.wte = nn.Embedding(shape.padded_vocab_size, shape.n_embd)
        self.blocks = nn.ModuleList([Block(shape) for _ in range(shape.n_layer)])
        self.lm_head = nn.Linear(shape.n_embd, shape.padded_vocab_size, bias=False)
        # Rotary tables are buffers (not parameters, not saved): recomputed by init_weights.
        rope_len = shape.sequence_len * ROPE_LENGTH_FACTOR
        self.register_buffer("cos", torch.empty(1, rope_len, 1, shape.head_dim // 2), persistent=False)
        self.register_buffer("sin", torch.empty(1, rope_len, 1, shape.head_dim // 2), persistent=False)

    # -- parameter groups: the optimizer and the shapes test both use these ------------------
    def embedding_params(self) -> list[nn.Parameter]:
        return [self.wte.weight]

    def lm_head_params(self) -> list[nn.Parameter]:
        return [self.lm_head.weight]

    def matrix_params(self) -> list[nn.Parameter]:
        return list(self.blocks.parameters())

    @torch.no_grad()
    def init_weights(self) -> None:
        """Explicit init after `to_empty`, so a model built on the meta device is never half-initialised."""
        d = self.shape.n_embd
        nn.init.normal_(self.wte.weight, mean=0.0, std=1.0)
        # A tiny head starts near uniform predictions (loss ~ ln V).
        nn.init.normal_(self.lm_head.weight, mean=0.0, std=0.001)
        # Uniform with the std of 1/sqrt(d); output projections start at zero so each block
        # begins as the identity (nanochat's choice).
        bound = 3**0.5 * d**-0.5
        for block in self.blocks:
            for lin in (block.attn.c_q, block.attn.c_k, block.attn.c_v, block.mlp.c_fc):
                nn.init.uniform_(lin.weight, -bound, bound)
            nn.init.zeros_(block.attn.c_proj.weight)
            nn.init.zeros_(block.mlp.c_proj.weight)
        cos, sin = rotary_tables(self.cos.size(1), self.shape.head_dim, self.cos.device)
        self.cos.copy_(cos)
        self.sin.copy_(sin)

    def forward(self, idx: Tensor, targets: Tensor | None = None, reduction: str = "mean") -> Tensor:
        logits = self.logits(self.hidden_states(idx))
        if targets is None:
            return logits
        return F.cross_entropy(
            logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1, reduction=reduction
        ).view(-1 if reduction == "none" else ())

    def hidden_states(self, idx: Tensor, positions: Tensor | None = None, attn_mask: Tensor | None = None) -> Tensor:
        """Final normed hidden states (B, T, d). `positions` (B, T) and a boolean `attn_mask` (B, 1, T, T)
        let core_eval pack several sequences into one row, sharing their common prefix; without them
        this is the ordinary causal forward with positions 0..T-1."""
        _B, T = idx.shape
        n_pos = T if positions is None else int(positions.max()) + 1
        if self.cos.size(1) < n_pos:
            raise ValueError(f"sequence of {n_pos} positions is longer than the rotary tables ({self.cos.size(1)})")
        dtype = self.wte.weight.dtype
        if positions is None:
            cos, sin = self.cos[:, :T].to(dtype), self.sin[:, :T].to(dtype)
        else:  # per-token angles: (B, T, 1, head_dim/2)
            cos, sin = self.cos[0, positions].to(dtype), self.sin[0, positions].to(dtype)
        x = norm(self.wte(idx))
        for block in self.blocks:
            x = block(x, cos, sin, attn_mask)
        return norm(x)

    def logits(self, h: Tensor) -> Tensor:
        """Soft-capped fp32 logits over the real vocabulary for hidden states of any leading shape."""
        logits = self.lm_head(h)
        logits = logits[..., : self.shape.vocab_size].float()
        return LOGIT_SOFTCAP * torch.tanh(logits / LOGIT_SOFTCAP)


def rotary_tables(length: int, head_dim: int, device: torch.device | str) -> tuple[Tensor, Tensor]:
    inv_freq = 1.0 / (ROPE_BASE ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim))
    angles = torch.outer(torch.arange(length, dtype=torch.float32, device=device), inv_freq)
    return angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]


def shape_from_flags(args: Any) -> ModelShape:
    """The shape named by the trainer's flags (--depth, --aspect-ratio, --head-dim, --vocab-size,
    --seq-len), which core_eval's CLI and the benchmarks take under the same names."""
    return model_shape(
        args.depth,
        aspect_ratio=args.aspect_ratio,
        head_dim=args.head_dim,
        vocab_size=args.vocab_size,
        sequence_len=args.seq_len,
    )


def build_model(shape: ModelShape, device: torch.device | str) -> GPT:
    """Construct on the meta device (no memory, no wasted init), then materialise and init."""
    with torch.device("meta"):
        model = GPT(shape)
    model.to_empty(device=device)
    model.init_weights()
    return model
