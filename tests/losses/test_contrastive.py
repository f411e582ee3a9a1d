"""In-batch pair losses against pytorch-metric-learning (the independent reference) and hand cases."""

import pytest
import torch
from pytorch_metric_learning.losses import ContrastiveLoss, MultiSimilarityLoss

from relook.errors import ShapeError
from relook.losses.contrastive import PAIR_LOSSES, contrastive_loss, multi_similarity_loss


def _batch(seed, b=16, d=8, classes=5):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(b, d, generator=g, dtype=torch.float64).requires_grad_(True)
    return emb, torch.randint(0, classes, (b,), generator=g)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margins", [(0.0, 1.0), (0.2, 1.3), (0.1, 0.5)])
def test_matches_reference_contrastive(seed, margins):
    emb, labels = _batch(seed)
    ours = contrastive_loss(emb, labels, *margins)
    ref = ContrastiveLoss(pos_margin=margins[0], neg_margin=margins[1])(emb, labels)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    (g,) = torch.autograd.grad(ours, emb)
    (g_ref,) = torch.autograd.grad(ref, emb)
    torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("params", [(2.0, 50.0, 0.5), (1.0, 10.0, 0.8)])
def test_matches_reference_multi_similarity(seed, params):
    emb, labels = _batch(seed)
    ours = multi_similarity_loss(emb, labels, *params)
    a, b, base = params
    ref = MultiSimilarityLoss(alpha=a, beta=b, base=base)(emb, labels)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    (g,) = torch.autograd.grad(ours, emb)
    (g_ref,) = torch.autograd.grad(ref, emb)
    torch.testing.assert_close(g, g_ref, rtol=1e-8, atol=1e-10)


def test_hand_case():
    """Two unit vectors at 90 degrees, one positive pair each way: d = sqrt(2)."""
    emb = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    same, diff = torch.tensor([0, 0]), torch.tensor([0, 1])
    assert float(contrastive_loss(emb, same, 0.0, 1.0)) == pytest.approx(2**0.5)
    assert float(contrastive_loss(emb, diff, 0.0, 1.0)) == 0.0  # d > neg margin: no active pair
    assert float(contrastive_loss(emb, diff, 0.0, 2.0)) == pytest.approx(2 - 2**0.5)
    # MS: S = 0 for both anchors; one negative each: 1/beta log(1 + exp(-beta base))
    want = torch.log1p(torch.exp(torch.tensor(-50 * 0.5))) / 50
    assert float(multi_similarity_loss(emb, diff)) == pytest.approx(float(want))


def test_empty():
    for name, (fn, _) in PAIR_LOSSES.items():
        emb = torch.zeros(0, 4, requires_grad=True)
        out = fn(emb, torch.zeros(0, dtype=torch.long))
        assert float(out.detach()) == 0.0 and out.requires_grad, name
        one = torch.randn(1, 4, requires_grad=True)
        assert float(fn(one, torch.tensor([3])).detach()) == 0.0, name


def test_bad_input():
    with pytest.raises(ShapeError):
        contrastive_loss(torch.randn(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ShapeError):
        multi_similarity_loss(torch.randn(3), torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_matches_reference_softmax(seed, temperature):
    """Eq. SM1 (the official SOP global's temperature-0.05 softmax) against pytorch-metric-learning SupConLoss."""
    from pytorch_metric_learning.losses import SupConLoss

    from relook.losses.contrastive import softmax_contrastive_loss

    emb, labels = _batch(seed)
    ours = softmax_contrastive_loss(emb, labels, temperature)
    ref = SupConLoss(temperature=temperature)(emb, labels)
    torch.testing.assert_close(ours, ref.to(ours.dtype), rtol=1e-6, atol=1e-8)
    (g,) = torch.autograd.grad(ours, emb)
    (g_ref,) = torch.autograd.grad(ref, emb)
    torch.testing.assert_close(g, g_ref.to(g.dtype), rtol=1e-5, atol=1e-7)
    assert PAIR_LOSSES["softmax"][1] == {"temperature": 0.05}
