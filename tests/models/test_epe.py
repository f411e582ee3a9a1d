import math

import numpy as np
import pytest
import torch

from relook.errors import ConfigError, ShapeError
from relook.geometry.epipolar import crop_intrinsics, fundamental_from_cameras
from relook.models.epe import EpipolarPositionalEncoding, angle_encoding, choose_fundamentals


def test_angle_encoding_octaves_hand_computed():
    """NeRF's octaves (Eq. (4) of [49]) on p = 2 theta / pi: sin/cos of 2 theta, 4 theta, 8 theta, 16 theta, then
    zeros; linear harmonics (2, 4, 6, 8 theta) would agree on the first two pairs only."""
    th = torch.tensor([0.3, 0.3 + math.pi], dtype=torch.float64)
    e = angle_encoding(th, 10, bands=4)
    want = torch.tensor(
        [
            0.564642473,
            0.825335615,  # sin, cos of 0.6
            0.932039086,
            0.362357754,  # 1.2
            0.675463181,
            -0.737393716,  # 2.4
            -0.996164609,
            0.087498983,  # 4.8
            0.0,
            0.0,
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(e[0], want, atol=1e-8, rtol=0)
    torch.testing.assert_close(e[1], want, atol=1e-8, rtol=0)  # theta + pi is the same plane
    assert angle_encoding(th, 6, bands=10).shape == (2, 6)  # bands capped at dim / 2
    with pytest.raises(ConfigError):
        angle_encoding(th, 7)


def _horizontal_rows(enc, s):
    """(B, 2 s^2, C) -> image-1 and image-2 encodings as (B, s, s, C) grids (rows, columns)."""
    B, _, C = enc.shape
    return enc[:, : s * s].reshape(B, s, s, C), enc[:, s * s :].reshape(B, s, s, C)


def test_encoding_of_horizontal_translation_depends_on_row_only():
    """Pure horizontal translation (x2^T F x1 = y1 - y2): the epipolar lines are the image rows, so every epipolar
    plane is one image row of both images. Its angle about the baseline (the x axis), seen by the nominal camera
    (f = 224, c_y = 111.5) from the reference row y0, is atan((y - c_y) / f) - atan((y0 - c_y) / f) (mod pi, sign
    set by the epipole's orientation): the encoding is constant along rows, equal for the same row of both
    images, and equals the hand-computed octaves of that angle."""
    F = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)[None]
    s, f, cy = 7, 224.0, 111.5
    epe = EpipolarPositionalEncoding(dim=128, grid=s, bands=10)
    enc = epe(F, (224, 224), (224, 224), ref_pixel=torch.tensor([[40.0, cy]], dtype=torch.float64))
    e1, e2 = _horizontal_rows(enc, s)
    rows = (torch.arange(s, dtype=torch.float64) + 0.5) * 224 / s - 0.5
    got = e1[0, :, 0]  # first column of each row
    for sign in (1.0, -1.0):
        theta = torch.remainder(sign * torch.atan((rows - cy) / f), math.pi)
        want = torch.zeros(s, 128, dtype=torch.float64)
        for k in range(10):
            want[:, 2 * k] = torch.sin(2.0 ** (k + 1) * theta)
            want[:, 2 * k + 1] = torch.cos(2.0 ** (k + 1) * theta)
        if torch.allclose(got.double(), want, atol=1e-4):
            break
    else:
        raise AssertionError("row encodings are not the octaves of the rows' plane angles")
    torch.testing.assert_close(e1, e1[:, :, :1].expand_as(e1))  # constant along each row
    torch.testing.assert_close(e2, e1)  # the same row of image 2 lies on the same plane
    assert (got[1:] - got[:-1]).abs().amax(-1).min() > 0.1  # rows differ
    # any reference pixel (default: random) shifts every angle alike: still a function of the row only
    enc = EpipolarPositionalEncoding(dim=128, grid=s, seed=3)(F, (224, 224), (224, 224))
    e1, e2 = _horizontal_rows(enc, s)
    torch.testing.assert_close(e1, e1[:, :, :1].expand_as(e1))
    torch.testing.assert_close(e2, e1)


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
