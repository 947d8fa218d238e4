"""miniseries_trainer.adapters.nanochat_eval: the rows that make two tokenizers' val bpb be over the same
bytes (every token after the first BOS is a target exactly once), on a toy byte tokenizer."""

from __future__ import annotations

import torch

from miniseries_trainer.adapters.nanochat_eval import document_rows
from miniseries_trainer.bpb import evaluate_bpb

BOS = 0


def test_rows_make_each_document_byte_a_target_once() -> None:
    docs = ["hello world", "a", "tokenizers cut text differently"]
    ids = [[b + 1 for b in d.encode()] for d in docs]  # a byte tokenizer: id = byte + 1, BOS = 0
    rows = document_rows(ids, BOS, seq_len=8, batch_size=3)
    ys = torch.cat([y for _x, y in rows]).flatten()
    targets = ys[(ys >= 0) & (ys != BOS)]
    assert sorted(targets.tolist()) == sorted(t for doc in ids for t in doc)
    xs = torch.cat([x for x, _y in rows]).flatten().tolist()
    assert xs[:13] == [BOS, *ids[0], BOS]  # x is the stream, y the stream shifted by one

    class Uniform(torch.nn.Module):  # bits per byte of a uniform model over 257 ids: log2(257) per byte
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.zeros(*x.shape, 257)

    token_bytes = torch.tensor([0] + [1] * 256)
    assert (
        abs(evaluate_bpb(Uniform(), rows, token_bytes, "cpu") - torch.log2(torch.tensor(257.0)).item()) < 1e-6
    )  # float32 logits
