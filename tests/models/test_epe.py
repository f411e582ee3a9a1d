import math

import numpy as np
import pytest
import torch

from relook.errors import ShapeError
from relook.geometry.epipolar import crop_intrinsics, fundamental_from_cameras
from relook.models.epe import EpipolarPositionalEncoding, angle_encoding, choose_fundamentals


def test_angle_encoding_pi_periodic_hand_computed():
    th = torch.tensor([0.3, 0.3 + math.pi], dtype=torch.float64)
    e = angle_encoding(th, 4)
    assert torch.allclose(e[0], e[1])
    want = torch.tensor([math.sin(0.6), math.cos(0.6), math.sin(1.2), math.cos(1.2)], dtype=torch.float64)
    assert torch.allclose(e[0], want)


def _cams():
    K = np.array([[300.0, 0, 111.5], [0, 310.0, 110.0], [0, 0, 1]])
    c, s = np.cos(0.5), np.sin(0.5)
    R2 = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
    C2 = np.array([2.0, 0.2, 0.6])
    return K, np.eye(3), np.zeros(3), K, R2, -R2 @ C2


def test_corresponding_points_same_encoding():
    K1, R1, t1, K2, R2, t2 = _cams()
    X = np.array([[0.3, -0.2, 4.0], [-0.5, 0.4, 5.0], [0.1, 0.1, 3.0]])
    epe = EpipolarPositionalEncoding(dim=16, grid=1)
    for Xk in X:
        x1 = K1 @ Xk
        x1 = x1[:2] / x1[2]
        x2 = K2 @ (R2 @ Xk + t2)
        x2 = x2[:2] / x2[2]
        # 1x1 grid centred on the projections: shift both images so (111.5, 111.5) is the point
        Kc1, Kc2 = crop_intrinsics(K1, *(x1 - 111.5)), crop_intrinsics(K2, *(x2 - 111.5))
        F = fundamental_from_cameras(Kc1, R1, t1, Kc2, R2, t2)[None]
        enc = epe(F, (224, 224), (224, 224), K2=Kc2[None])
        assert enc.shape == (1, 2, 16)
        assert torch.allclose(enc[0, 0], enc[0, 1], atol=1e-5)
        # without intrinsics the nominal camera still gives equal encodings for a correspondence
        enc = epe(F, (224, 224), (224, 224))
        assert torch.allclose(enc[0, 0], enc[0, 1], atol=1e-5)


def test_shapes_seeded_and_empty():
    F = fundamental_from_cameras(*_cams()).expand(3, 3, 3).clone()
    a = EpipolarPositionalEncoding(dim=8, grid=4, seed=1)(F, (64, 64), (64, 80))
    b = EpipolarPositionalEncoding(dim=8, grid=4, seed=1)(F, (64, 64), (64, 80))
    c = EpipolarPositionalEncoding(dim=8, grid=4, seed=2)(F, (64, 64), (64, 80))
    assert a.shape == (3, 32, 8) and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all()
    assert EpipolarPositionalEncoding(dim=8, grid=4)(torch.zeros(0, 3, 3), (64, 64), (64, 64)).shape == (0, 32, 8)
    with pytest.raises(ShapeError):
        EpipolarPositionalEncoding()(torch.zeros(3, 3), (64, 64), (64, 64))


def test_choose_fundamentals_rank2_for_non_matches():
    Fgt = fundamental_from_cameras(*_cams()).expand(4, 3, 3).clone()
    is_match = torch.tensor([True, False, True, False])
    avail = torch.tensor([True, True, False, True])
    out = choose_fundamentals(is_match, Fgt, avail, torch.Generator().manual_seed(0))
    assert torch.allclose(out[0], Fgt[0] / Fgt[0].norm())
    for b in (1, 2, 3):
        sv = torch.linalg.svdvals(out[b])
        assert sv[2] < 1e-12 and sv[1] > 1e-6
        assert not torch.allclose(out[b], Fgt[b] / Fgt[b].norm())
