import math

import pytest
import torch

from relook.errors import ShapeError
from relook.geometry.epipolar import epipolar_indicator, random_fundamental
from relook.losses.epipolar import epipolar_attention_share, epipolar_loss, max_epipolar_loss


def sig(x):
    return 1.0 / (1.0 + math.exp(-x))


def bce(p, y):
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def data(B=3, H=4, s=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = s * s
    A12 = torch.randn(B, H, n, n, generator=g, dtype=torch.float64)
    A21 = torch.randn(B, H, n, n, generator=g, dtype=torch.float64)
    I12, I21 = epipolar_indicator(random_fundamental(B, seed=seed), (64, 64), (64, 64), s)
    return A12, A21, I12, I21


def slow_offset(I, kind, prior):
    """logit of the constant that minimises the loss of a pattern-free map, by counting (0 if not prior)."""
    if not prior:
        return 0.0
    n, m = I.shape
    ones = sum(float(I[i, j]) for i in range(n) for j in range(m))
    if kind == "epi":
        rho = ones / (n * m)
    else:
        rows = sum(1 for i in range(n) if any(float(I[i, j]) == 1 for j in range(m)))
        rho = rows / (rows + n * m - ones)
    rho = min(max(rho, 0.5 / (n * m)), 1 - 0.5 / (n * m))
    return math.log(rho / (1 - rho))


def slow_epi(A12, A21, I12, I21, valid, prior=True):
    per = []
    for b in range(A12.shape[0]):
        if not valid[b]:
            continue
        tot = 0.0
        for A, I in ((A12[b], I12[b]), (A21[b], I21[b])):
            o = slow_offset(I, "epi", prior)
            for i in range(A.shape[0]):
                for j in range(A.shape[1]):
                    tot += bce(sig(float(A[i, j]) + o), float(I[i, j]))
        per.append(tot)
    return sum(per) / len(per)


def slow_maxepi(A12, A21, I12, I21, valid, prior=True):
    per = []
    for b in range(A12.shape[0]):
        if not valid[b]:
            continue
        tot = 0.0
        for A, I in ((A12[b], I12[b]), (A21[b], I21[b])):
            o = slow_offset(I, "maxepi", prior)
            for i in range(A.shape[0]):
                line = [sig(float(A[i, j]) + o) for j in range(A.shape[1]) if I[i, j] == 1]
                if line:
                    tot += bce(max(line), 1.0)
                for j in range(A.shape[1]):
                    if I[i, j] == 0:
                        tot += bce(sig(float(A[i, j]) + o), 0.0)
        per.append(tot)
    return sum(per) / len(per)


def test_epi_matches_reference():
    A12, A21, I12, I21 = data()
    valid = torch.tensor([True, False, True])
    got = epipolar_loss(A12, A21, I12, I21, valid)
    # per-head logits in, one W_Q / W_K in Eq. 1: the full-width logit is the SUM of the heads' logits
    want = slow_epi(sum(A12[:, h] for h in range(4)), sum(A21[:, h] for h in range(4)), I12, I21, valid)
    assert abs(got.item() - want) < 1e-9
    # per-head option = mean over heads of each head's loss
    got_h = epipolar_loss(A12, A21, I12, I21, valid, per_head=True)
    want_h = sum(slow_epi(A12[:, h], A21[:, h], I12, I21, valid) for h in range(4)) / 4
    assert abs(got_h.item() - want_h) < 1e-9
    # offset "zero" = the literal Eq. (1)
    got_z = epipolar_loss(A12, A21, I12, I21, valid, offset="zero")
    want_z = slow_epi(sum(A12[:, h] for h in range(4)), sum(A21[:, h] for h in range(4)), I12, I21, valid, False)
    assert abs(got_z.item() - want_z) < 1e-9


def test_maxepi_matches_reference():
    A12, A21, I12, I21 = data(seed=1)
    I12[0, 3] = 0  # an empty line: no L_max term for that row
    valid = torch.tensor([True, True, False])
    got = max_epipolar_loss(A12, A21, I12, I21, valid)
    want = slow_maxepi(sum(A12[:, h] for h in range(4)), sum(A21[:, h] for h in range(4)), I12, I21, valid)
    assert abs(got.item() - want) < 1e-9
    got_h = max_epipolar_loss(A12, A21, I12, I21, valid, per_head=True)
    want_h = sum(slow_maxepi(A12[:, h], A21[:, h], I12, I21, valid) for h in range(4)) / 4
    assert abs(got_h.item() - want_h) < 1e-9
    got_z = max_epipolar_loss(A12, A21, I12, I21, valid, offset="zero")
    want_z = slow_maxepi(sum(A12[:, h] for h in range(4)), sum(A21[:, h] for h in range(4)), I12, I21, valid, False)
    assert abs(got_z.item() - want_z) < 1e-9


@pytest.mark.parametrize("fn", [epipolar_loss, max_epipolar_loss])
def test_prior_offset_puts_no_evidence_at_zero(fn):
    """With the prior offset, the best constant map (no position information) is A = 0 (scipy's scalar
    minimiser over the literal loss, offset "zero", finds logit(rho) instead)."""
    from scipy.optimize import minimize_scalar

    _, _, I12, I21 = data(B=1, s=7)

    def loss(a, offset):
        A12, A21 = torch.full_like(I12, a), torch.full_like(I21, a)
        return float(fn(A12, A21, I12, I21, offset=offset))

    best = minimize_scalar(lambda a: loss(a, "prior"), bounds=(-10, 10), method="bounded", options={"xatol": 1e-8})
    assert abs(best.x) < 1e-3
    lit = minimize_scalar(lambda a: loss(a, "zero"), bounds=(-10, 10), method="bounded", options={"xatol": 1e-8})
    assert lit.x < -1.0


def test_maxepi_gradient_only_max_on_line():
    A12, A21, I12, I21 = data(B=2, H=1, seed=2)
    A12 = A12[:, 0].requires_grad_()
    A21 = A21[:, 0].requires_grad_()
    max_epipolar_loss(A12, A21, I12, I21).backward()
    for A, I in ((A12, I12), (A21, I21)):
        g = A.grad
        on = I > 0.5
        for b in range(2):
            for i in range(I.shape[1]):
                line = on[b, i]
                if not line.any():
                    continue
                nz = (g[b, i] != 0) & line
                jmax = torch.where(line, A[b, i].detach(), torch.tensor(-1e9, dtype=A.dtype)).argmax()
                assert nz.sum() == 1 and nz[jmax]  # only the max element of the line gets gradient
                assert g[b, i, jmax] < 0  # pushed up
                # every off-line entry is pushed down by L_zero
                assert (g[b, i][~line] > 0).all()


def test_invalid_pairs_and_empty():
    A12, A21, I12, I21 = data(B=2, H=1, seed=3)
    A12 = A12[:, 0].requires_grad_()
    loss = epipolar_loss(A12, A21[:, 0], I12, I21, torch.tensor([False, False]))
    assert loss.item() == 0.0
    loss.backward()
    assert (A12.grad == 0).all()
    e = torch.zeros(0, 16, 16)
    assert epipolar_loss(e, e, e, e).item() == 0.0
    assert max_epipolar_loss(e, e, e, e).item() == 0.0


def test_bad_input():
    A12, A21, I12, I21 = data(B=2, H=1)
    with pytest.raises(ShapeError):
        epipolar_loss(A12[:, 0, :, :5], A21[:, 0], I12, I21)
    with pytest.raises(ShapeError):
        max_epipolar_loss(A12, A21, I12, I21, valid=torch.ones(3, dtype=torch.bool))


def test_attention_share():
    att = torch.tensor([[[0.5, 0.5], [0.0, 1.0]]])
    ind = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    assert torch.allclose(epipolar_attention_share(att, ind), torch.tensor([0.75]))
