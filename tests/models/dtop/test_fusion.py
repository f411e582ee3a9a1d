import pytest
import torch
import torch.nn.functional as F

from relook.models.dtop.elm import ELM, WaveBlock
from relook.models.dtop.fusion import FUSIONS, Fusion, orthogonal_fusion
from relook.models.dtop.pooling import Pooling


def test_orthogonal_per_token():
    """Orthogonal fusion (Eq. A20), token by token, against an independent reference: the component of y
    orthogonal to u is the residual of the least-squares fit of y on u (numpy ``lstsq``, one token at a time),
    concatenated with u. A fusion that projects over the whole map instead of per token, or keeps the
    projection instead of the residual, fails."""
    import numpy as np

    g = torch.Generator().manual_seed(0)
    y = torch.randn(2, 5, 7, 16, generator=g, dtype=torch.float64)
    u = torch.randn(2, 5, 7, 16, generator=g, dtype=torch.float64) * torch.rand(2, 5, 7, 1, generator=g) * 3
    out = orthogonal_fusion(y, u).numpy()
    assert out.shape == (2, 5, 7, 32)
    yn, un = y.numpy(), u.numpy()
    for idx in np.ndindex(2, 5, 7):
        coef = np.linalg.lstsq(un[idx][:, None], yn[idx], rcond=None)[0]
        residual = yn[idx] - un[idx] * coef[0]
        np.testing.assert_allclose(out[idx][:16], residual, atol=1e-10)
        np.testing.assert_allclose(out[idx][16:], un[idx], atol=0)


def test_orthogonal_hand_case():
    y, u = torch.tensor([[3.0, 4.0]]), torch.tensor([[2.0, 0.0]])
    assert torch.allclose(orthogonal_fusion(y, u), torch.tensor([[0.0, 4.0, 2.0, 0.0]]))
    zero = orthogonal_fusion(y, torch.zeros(1, 2))
    assert torch.equal(zero[:, :2], y) and not torch.isnan(zero).any()


WIDTH = {
    "orthogonal": 32,
    "concat": 32,
    "none_wo_elm": 16,
    "none_w_elm": 16,
    "sum": 16,
    "hadamard": 16,
    "fast_normalized": 16,
}


@pytest.mark.parametrize("kind", FUSIONS)
def test_shapes(kind):
    f = Fusion(kind, 16)
    y, u = torch.randn(3, 4, 5, 16), torch.randn(3, 4, 5, 16)
    out = f(y, u)
    assert out.shape == (3, 4, 5, WIDTH[kind]) and f.out_dim == WIDTH[kind]
    expected = {
        "none_wo_elm": y,
        "none_w_elm": u,
        "sum": y + u,
        "hadamard": y * u,
        "fast_normalized": (y + u) / (2 + 1e-4),
    }.get(kind)
    if expected is not None:
        assert torch.allclose(out, expected, atol=1e-6)


def _randomise(module, seed=0):
    """Non-trivial BatchNorm statistics and affine parameters (fresh ones are the identity) and float64."""
    g = torch.Generator().manual_seed(seed)
    module.double()
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g, dtype=torch.float64) * 0.3)
            m.running_var.copy_(torch.rand(n, generator=g, dtype=torch.float64) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.randn(n, generator=g, dtype=torch.float64))
                m.bias.copy_(torch.randn(n, generator=g, dtype=torch.float64) * 0.5)
    return module.eval()


def _bn(x, bn):  # eval BatchNorm written out: (x - mean) / sqrt(var + eps) * gamma + beta, per channel
    v = lambda t: t[None, :, None, None]  # noqa: E731
    return (x - v(bn.running_mean)) / torch.sqrt(v(bn.running_var) + bn.eps) * v(bn.weight) + v(bn.bias)


def _relu6(x):
    return x.clamp(0, 6)


def _conv(x, seq, dilation=1):
    """A (conv, BN[, ReLU6]) stage of elm._conv_bn from its weight tensors: F.conv2d with 'same' padding."""
    conv, bn = seq[0], seq[1]
    k, groups = conv.weight.shape[-1], x.shape[1] // conv.weight.shape[1]
    y = _bn(F.conv2d(x, conv.weight, None, padding=dilation * (k // 2), dilation=dilation, groups=groups), bn)
    return _relu6(y) if len(seq) > 2 else y


def _irb_ref(x, irb):
    """MobileNetV2 block at stride 1: x + BN(1x1(ReLU6(BN(dw3x3(ReLU6(BN(1x1(x)))))))), identity shortcut."""
    e, d, p = irb.body
    return x + _conv(_conv(_conv(x, e), d), p)


def _aspp_ref(x, aspp, rates):
    """Depth-wise ASPP: mean of [1x1 branch, atrous 3x3 at each rate, global-average image pooling]; the
    projected one: concat in that order -> ReLU(BN(1x1)), its pooling branch ReLU(1x1(mean))."""
    br = aspp.branches
    if aspp.project is None:
        outs = [_conv(x, br[0])] + [_conv(x, br[i + 1], r) for i, r in enumerate(rates)]
        outs.append(x.mean((2, 3), keepdim=True).expand_as(x))
        return sum(outs) / len(outs)
    outs = [_conv(x, br[0])] + [_conv(_conv(x, br[i + 1][0], r), br[i + 1][1]) for i, r in enumerate(rates)]
    pooled = F.relu(F.conv2d(x.mean((2, 3), keepdim=True), aspp.pool[1].weight))
    outs.append(pooled.expand(-1, -1, x.shape[2], x.shape[3]))
    return F.relu(_bn(F.conv2d(torch.cat(outs, 1), aspp.project[0].weight), aspp.project[1]))


def test_irb_values():
    from relook.models.dtop.elm import InvertedResidual

    irb = _randomise(InvertedResidual(16, expansion=0.5))
    x = torch.randn(2, 16, 5, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 2
    with torch.no_grad():
        torch.testing.assert_close(irb(x), _irb_ref(x, irb))


@pytest.mark.parametrize(
    "width,rates,hw", [(None, (1, 2, 3), (5, 7)), (None, (6, 12, 18), (19, 21)), (8, (1, 2, 3), (5, 7))]
)
def test_aspp_values(width, rates, hw):
    from relook.models.dtop.elm import ASPP

    aspp = _randomise(ASPP(16, width, rates), seed=1)
    x = torch.randn(2, 16, *hw, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 2
    with torch.no_grad():
        torch.testing.assert_close(aspp(x), _aspp_ref(x, aspp, rates))


@pytest.mark.parametrize("irb,aspp,wb", [(1, 1, 1), (0, 1, 1), (1, 0, 1), (1, 1, 0), (0, 0, 0)])
def test_elm_values(irb, aspp, wb):
    """Eval ELM = ASPP(IRB(Y)) (WaveBlock is the identity at eval), each disabled part the identity."""
    rates = (1, 2, 3)
    elm = _randomise(ELM(16, bool(irb), bool(aspp), bool(wb), expansion=0.5, rates=rates), seed=2)
    x = torch.randn(2, 16, 5, 7, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2
    ref = x
    if irb:
        ref = _irb_ref(ref, elm.irb)
    if aspp:
        ref = _aspp_ref(ref, elm.aspp, rates)
    with torch.no_grad():
        torch.testing.assert_close(elm(x), ref)


def test_waveblock():
    x = torch.ones(4, 3, 10, 6)
    wb = WaveBlock(band=0.3, factor=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(wb.eval()(x), x)
    y = wb.train()(x)
    rows = y[:, 0, :, 0]  # (B, h)
    assert ((rows == 1).sum(1) == 3).all() and ((rows == 2).sum(1) == 7).all()
    kept = (rows == 1).float().argmax(1)
    for b in range(4):  # the kept rows are one contiguous band
        assert (rows[b, kept[b] : kept[b] + 3] == 1).all()


def test_pooling_reference():
    x = torch.rand(2, 9, 4) + 0.1
    assert torch.allclose(Pooling("avg")(x), x.mean(1))
    assert torch.allclose(Pooling("max")(x), x.max(1).values)
    g = Pooling("gem", p=1.0)
    assert torch.allclose(g(x), x.mean(1), atol=1e-6)
