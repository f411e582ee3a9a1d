import pytest
import torch

from relook.models.dtop.elm import ELM, WaveBlock
from relook.models.dtop.fusion import FUSIONS, Fusion, orthogonal_fusion, project
from relook.models.dtop.pooling import Pooling


def test_orthogonal_per_token():
    torch.manual_seed(0)
    y, u = torch.randn(2, 5, 7, 16, dtype=torch.float64), torch.randn(2, 5, 7, 16, dtype=torch.float64)
    out = orthogonal_fusion(y, u)
    first, second = out[..., :16], out[..., 16:]
    assert torch.allclose((first * u).sum(-1), torch.zeros(2, 5, 7, dtype=torch.float64), atol=1e-10)
    assert torch.equal(second, u)
    assert torch.allclose(first + project(y, u), y)  # Gram-Schmidt keeps span{y, u}


def test_orthogonal_hand_case():
    y, u = torch.tensor([[3.0, 4.0]]), torch.tensor([[2.0, 0.0]])
    assert torch.allclose(orthogonal_fusion(y, u), torch.tensor([[0.0, 4.0, 2.0, 0.0]]))
    zero = orthogonal_fusion(y, torch.zeros(1, 2))
    assert torch.equal(zero[:, :2], y) and not torch.isnan(zero).any()


WIDTH = {"orthogonal": 32, "concat": 32, "none_wo_elm": 16, "none_w_elm": 16, "sum": 16, "hadamard": 16,
         "fast_normalized": 16}


@pytest.mark.parametrize("kind", FUSIONS)
def test_shapes(kind):
    f = Fusion(kind, 16)
    y, u = torch.randn(3, 4, 5, 16), torch.randn(3, 4, 5, 16)
    out = f(y, u)
    assert out.shape == (3, 4, 5, WIDTH[kind]) and f.out_dim == WIDTH[kind]
    expected = {"none_wo_elm": y, "none_w_elm": u, "sum": y + u, "hadamard": y * u,
                "fast_normalized": (y + u) / (2 + 1e-4)}.get(kind)
    if expected is not None:
        assert torch.allclose(out, expected, atol=1e-6)


@pytest.mark.parametrize("irb,aspp,wb", [(1, 1, 1), (0, 1, 1), (1, 0, 1), (1, 1, 0), (0, 0, 0)])
def test_elm_shapes(irb, aspp, wb):
    elm = ELM(16, bool(irb), bool(aspp), bool(wb)).eval()
    x = torch.randn(2, 16, 5, 7)
    assert elm(x).shape == x.shape


def test_waveblock():
    x = torch.ones(4, 3, 10, 6)
    wb = WaveBlock(band=0.3, factor=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(wb.eval()(x), x)
    y = wb.train()(x)
    rows = y[:, 0, :, 0]  # (B, h)
    assert ((rows == 1).sum(1) == 3).all() and ((rows == 2).sum(1) == 7).all()
    kept = (rows == 1).float().argmax(1)
    for b in range(4):  # the kept rows are one contiguous band
        assert (rows[b, kept[b]:kept[b] + 3] == 1).all()


def test_pooling_reference():
    x = torch.rand(2, 9, 4) + 0.1
    assert torch.allclose(Pooling("avg")(x), x.mean(1))
    assert torch.allclose(Pooling("max")(x), x.max(1).values)
    g = Pooling("gem", p=1.0)
    assert torch.allclose(g(x), x.mean(1), atol=1e-6)
