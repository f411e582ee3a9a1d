import math

import numpy as np
import pytest
import torch
from pytorch_metric_learning.losses import ArcFaceLoss

from relook.errors import ShapeError
from relook.losses.arcface import ArcFace, arcface_loss


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_reference(seed):
    torch.manual_seed(seed)
    b, d, c = 12, 8, 5
    emb = torch.randn(b, d, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, c, (b,))
    ours = ArcFace(d, c, margin=0.15, scale=30.0).double()
    ref = ArcFaceLoss(num_classes=c, embedding_size=d, margin=math.degrees(0.15), scale=30.0)
    ref.W.data = ours.weight.detach().t().clone()  # PML stores W as (D, C); margin in degrees
    with torch.no_grad():  # one embedding near the opposite of its centre: the monotonic branch
        emb[0] = -ours.weight[labels[0]] * 3
    loss = ours(emb, labels)
    loss_ref = ref(emb, labels)
    assert torch.allclose(loss, loss_ref, atol=1e-8)
    (g,) = torch.autograd.grad(loss, emb)
    (g_ref,) = torch.autograd.grad(loss_ref, emb)
    assert torch.allclose(g, g_ref, atol=1e-8)


def test_hand_case():
    """Two classes, embedding at angle 0 to its centre and pi/2 to the other."""
    w = torch.eye(2)
    loss = arcface_loss(torch.tensor([[2.0, 0.0]]), w, torch.tensor([0]), margin=0.15, scale=30.0)
    target, other = 30 * math.cos(0.15), 0.0
    assert abs(float(loss) - (-target + np.log(np.exp(target) + np.exp(other)))) < 1e-5


def test_empty():
    assert float(arcface_loss(torch.zeros(0, 4), torch.randn(3, 4), torch.zeros(0, dtype=torch.long))) == 0.0


def test_bad_input():
    with pytest.raises(ShapeError):
        arcface_loss(torch.randn(2, 4), torch.randn(3, 5), torch.tensor([0, 1]))
