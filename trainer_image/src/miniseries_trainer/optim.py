"""Muon for the hidden matrices, AdamW for the embedding and lm_head, and the LR schedule.

Muon (Keller Jordan, 2024; as nanochat uses it): Nesterov momentum on the gradient,
then the update is replaced by the nearest semi-orthogonal matrix (all singular
values ~1), computed with a few Polar Express iterations (Amsel et al. 2025, the
coefficients nanochat uses) in bf16 on CUDA and fp32 on CPU. Embedding and lm_head
are not hidden matrices (a lookup table and a classifier), so they get AdamW.

Distributed: gradients are averaged over ranks first (the trainer all-reduces them),
so every rank holds the same gradient. AdamW then runs identically on every rank
(cheap, element-wise). Muon's orthogonalization is the costly part, so each
rank orthogonalizes only the matrices it owns (matrix i belongs to rank i % world)
and broadcasts the new weights from the owner. That keeps the math exactly the
single-rank math (no approximation) while splitting the work, and each rank keeps
only its own matrices' momentum (ZeRO-1-style sharded state: checkpoints save
optimizer state per rank).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist
from torch import Tensor

from miniseries.contract.schedule import lr_multiplier  # the one definition, shared with the forecast

#: Polar Express coefficients for 5 iterations (Amsel et al. 2025, as in nanochat/optim.py).
POLAR_EXPRESS_COEFFS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)

#: nanochat tuned its learning rates at width 768 and a 2^19-token batch; other shapes scale from there.
REFERENCE_WIDTH = 768
REFERENCE_BATCH_TOKENS = 2**19


def orthogonalize(g: Tensor, steps: int = 5) -> Tensor:
    """The nearest semi-orthogonal matrix to g (U V^T of its SVD), approximately."""
    dtype = torch.bfloat16 if g.is_cuda else torch.float32
    x = g.to(dtype)
    tall = x.size(-2) > x.size(-1)
    if tall:  # iterate on the smaller Gram matrix
        x = x.mT
    # Scale so every singular value is <= 1, where the polynomial iteration converges.
    x = x / (x.norm(dim=(-2, -1), keepdim=True) * 1.01 + 1e-7)
    for a, b, c in POLAR_EXPRESS_COEFFS[:steps]:
        gram = x @ x.mT
        x = a * x + (b * gram + c * gram @ gram) @ x
    if tall:
        x = x.mT
    return x.to(g.dtype)


class Muon(torch.optim.Optimizer):
    """Momentum-orthogonalized updates for 2-D weight matrices; sharded over ranks."""

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 0.02,
        momentum: float = 0.95,
        weight_decay: float = 0.0,
        compile: bool = False,
    ):
        params = list(params)
        if any(p.ndim != 2 for p in params):
            raise ValueError("Muon only handles 2-D matrices")
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay))
        # The orthogonalization is Muon's cost (5 iterations of three batched matmuls); compiled, its
        # scaling and polynomial steps fuse. One graph per matrix shape (a model has three).
        self.orthogonalize = torch.compile(orthogonalize, dynamic=False) if compile else orthogonalize

    @torch.no_grad()
    def step(self, closure: None = None) -> None:  # type: ignore[override]
        distributed = dist.is_available() and dist.is_initialized()
        rank, world = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
        for group in self.param_groups:
            by_shape: dict[torch.Size, list[Tensor]] = {}
            for p in group["params"]:
                by_shape.setdefault(p.shape, []).append(p)
            for same_shape in by_shape.values():
                # Matrix i of a shape belongs to rank i % world; the owner's matrices are
                # orthogonalized together as one batched matmul chain (fewer, larger kernels).
                mine = [p for i, p in enumerate(same_shape) if i % world == rank and p.grad is not None]
                if mine:
                    updates = []
                    for p in mine:
                        state = self.state[p]
                        if "momentum_buffer" not in state:
                            state["momentum_buffer"] = torch.zeros_like(p)
                        buf = state["momentum_buffer"]
                        buf.lerp_(p.grad, 1 - group["momentum"])
                        updates.append(p.grad.lerp(buf, group["momentum"]))  # Nesterov
                    orthogonal = self.orthogonalize(torch.stack(updates))
                    # An orthogonal d_out x d_in update has RMS 1/sqrt(max dim); this
                    # restores a per-element size independent of the aspect ratio.
                    scale = max(1.0, mine[0].size(-2) / mine[0].size(-1)) ** 0.5
                    for p, update in zip(mine, orthogonal, strict=True):
                        if group["weight_decay"]:
                            p.mul_(1 - group["lr"] * group["weight_decay"])
                        p.add_(update, alpha=-group["lr"] * scale)
                if world > 1:
                    for i, p in enumerate(same_shape):
                        dist.broadcast(p, src=i % world)


def build_optimizers(
    model: torch.nn.Module,
    *,
    total_batch_tokens: int,
    matrix_lr: float = 0.02,
    embedding_lr: float = 0.2,
    unembedding_lr: float = 0.004,
    weight_decay: float = 0.0,
    compile: bool = False,
) -> list[torch.optim.Optimizer]:
    """[AdamW(embedding, lm_head), Muon(matrices)] with nanochat's width and batch LR scaling.
    `compile`: torch.compile Muon's orthogonalization (the trainer's --compile)."""
    width = model.shape.n_embd  # type: ignore[attr-defined]
    # AdamW LRs were tuned at width 768: scale as 1/sqrt(d) (nanochat).
    width_scale = (width / REFERENCE_WIDTH) ** -0.5
    # Batch: eta ~ sqrt(B / B_ref), the standard rule for adaptive optimizers (nanochat).
    batch_scale = (total_batch_tokens / REFERENCE_BATCH_TOKENS) ** 0.5
    adam_groups = [
        dict(params=model.lm_head_params(), lr=unembedding_lr * width_scale * batch_scale),  # type: ignore[operator]
        dict(params=model.embedding_params(), lr=embedding_lr * width_scale * batch_scale),  # type: ignore[operator]
    ]
    # fused on CUDA: one kernel launch for all of AdamW's element-wise work; the plain loop on CPU
    on_cuda = model.lm_head.weight.is_cuda  # type: ignore[union-attr]
    adamw = torch.optim.AdamW(adam_groups, betas=(0.8, 0.95), eps=1e-10, weight_decay=0.0, fused=on_cuda)
    muon = Muon(model.matrix_params(), lr=matrix_lr * batch_scale, momentum=0.95, weight_decay=weight_decay,  # type: ignore[operator]
                compile=compile)  # fmt: skip
    optimizers: list[torch.optim.Optimizer] = [adamw, muon]
    for opt in optimizers:
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return optimizers


def muon_momentum(step: int) -> float:
    """Muon's momentum ramps 0.85 -> 0.95 over the first 300 steps (nanochat)."""
    frac = min(step / 300, 1.0)
    return (1 - frac) * 0.85 + frac * 0.95


def set_schedule(optimizers: list[torch.optim.Optimizer], step: int, lrm: float) -> None:
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["initial_lr"] * lrm
            if isinstance(opt, Muon):
                group["momentum"] = muon_momentum(step)


def singular_values(x: Tensor) -> Tensor:
    """For tests and diagnostics."""
    return torch.linalg.svdvals(x.float())


__all__ = [
    "Muon",
    "build_optimizers",
    "lr_multiplier",
    "orthogonalize",
    "set_schedule",
    "singular_values",
]
