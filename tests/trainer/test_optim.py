from __future__ import annotations

import itertools

import pytest

from miniseries.contract.shapes import model_shape

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch


@pytest.mark.parametrize("rows,cols", [(64, 256), (256, 64), (32, 96)])
def test_orthogonalize_gives_singular_values_near_one(rows: int, cols: int) -> None:
    from miniseries_trainer.optim import orthogonalize, singular_values

    g = torch.randn(rows, cols, generator=torch.Generator().manual_seed(rows * cols))
    sv = singular_values(orthogonalize(g))
    # 5 Polar Express steps from a Gaussian matrix: every singular value within ~15% of 1
    assert sv.min() > 0.8 and sv.max() < 1.2, sv
    # and the input's spread was far wider
    raw = singular_values(g)
    assert raw.max() / raw.min() > 2


def test_orthogonalize_square_matrix_lifts_all_but_the_tiniest_directions() -> None:
    """A square Gaussian matrix has singular values down to ~1e-3 of its largest; five
    iterations cannot lift those (Muon's known approximation), but 90% land near 1."""
    from miniseries_trainer.optim import orthogonalize, singular_values

    g = torch.randn(128, 128, generator=torch.Generator().manual_seed(3))
    sv = singular_values(orthogonalize(g)).sort().values
    assert sv.max() < 1.2
    assert sv[13:].min() > 0.7, sv[:20]


def test_muon_update_is_orthogonal() -> None:
    """The change Muon makes to a weight (no momentum history, lr 1) is an orthogonal matrix."""
    from miniseries_trainer.optim import Muon, singular_values

    w = torch.nn.Parameter(torch.zeros(48, 96))
    opt = Muon([w], lr=1.0, momentum=0.0)
    w.grad = torch.randn(48, 96, generator=torch.Generator().manual_seed(1))
    opt.step()
    sv = singular_values(-w.detach())
    assert sv.min() > 0.8 and sv.max() < 1.2, sv
    # direction: the update descends (negative inner product with the gradient)
    assert (w.detach() * w.grad).sum() < 0


def test_lr_schedule_warmup_constant_warmdown() -> None:
    from miniseries_trainer.optim import lr_multiplier

    m = [lr_multiplier(s, 100, 10, 0.2) for s in range(100)]
    assert m[0] == pytest.approx(0.1) and m[9] == pytest.approx(1.0)
    assert all(x == 1.0 for x in m[10:80])
    assert m[80] == pytest.approx(1.0) and m[90] == pytest.approx(0.5) and m[99] == pytest.approx(0.05)
    assert all(a >= b for a, b in itertools.pairwise(m[80:]))


def test_optimizer_groups_and_lr_scaling() -> None:
    from miniseries_trainer.model import GPT
    from miniseries_trainer.optim import Muon, build_optimizers

    shape = model_shape(12, vocab_size=512, sequence_len=64)  # width 768: width scale 1
    with torch.device("meta"):
        model = GPT(shape)
    adamw, muon = build_optimizers(model, total_batch_tokens=2**19)
    assert isinstance(muon, Muon)
    assert [g["lr"] for g in adamw.param_groups] == pytest.approx([0.004, 0.2])
    assert muon.param_groups[0]["lr"] == pytest.approx(0.02)
    # 4x smaller batch -> half the LRs; 4x wider model -> AdamW LRs halve again
    shape4 = model_shape(48, vocab_size=512, sequence_len=64)
    with torch.device("meta"):
        model4 = GPT(shape4)
    adamw4, muon4 = build_optimizers(model4, total_batch_tokens=2**17)
    assert [g["lr"] for g in adamw4.param_groups] == pytest.approx([0.001, 0.05])
    assert muon4.param_groups[0]["lr"] == pytest.approx(0.01)
