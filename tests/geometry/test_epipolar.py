import math

import numpy as np
import pytest
import torch

from relook.errors import ConfigError, ShapeError
from relook.geometry.epipolar import (
    crop_intrinsics,
    crop_resize_intrinsics,
    epipolar_indicator,
    epipolar_plane_angles,
    fundamental_from_cameras,
    grid_centers,
    random_fundamental,
    resize_intrinsics,
    symmetric_epipolar_distance,
)


def rot(rng):
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))


def look_at(center, target=np.zeros(3), up=np.array([0.0, 1.0, 0.0])):
    z = target - center
    z /= np.linalg.norm(z)
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])  # world -> camera rows
    return R, -R @ center


def two_cameras(seed=0, size=(224, 224)):
    rng = np.random.default_rng(seed)
    H, W = size
    K1 = np.array([[250.0, 0, W / 2 + 3], [0, 260.0, H / 2 - 5], [0, 0, 1]])
    K2 = np.array([[230.0, 0, W / 2 - 4], [0, 235.0, H / 2 + 2], [0, 0, 1]])
    ang = rng.uniform(0.5, 1.2)
    R1, t1 = look_at(np.array([0.0, 0.3, -4.0]))
    R2, t2 = look_at(np.array([4.0 * math.sin(ang), -0.2, -4.0 * math.cos(ang)]))
    pts = rng.uniform(-0.8, 0.8, size=(50, 3))
    return K1, R1, t1, K2, R2, t2, pts


def project(K, R, t, X):
    x = (K @ (R @ X.T + t[:, None])).T
    return x[:, :2] / x[:, 2:]


def test_fundamental_projected_points():
    K1, R1, t1, K2, R2, t2, X = two_cameras()
    F = fundamental_from_cameras(K1, R1, t1, K2, R2, t2)
    x1, x2 = project(K1, R1, t1, X), project(K2, R2, t2, X)
    assert symmetric_epipolar_distance(F, x1, x2).max() < 1e-8
    # and it is a real constraint: shuffled correspondences are far off
    assert symmetric_epipolar_distance(F, x1, x2[::-1].copy()).median() > 1.0


def test_fundamental_after_crop_resize():
    K1, R1, t1, K2, R2, t2, X = two_cameras(1)
    x1, x2 = project(K1, R1, t1, X), project(K2, R2, t2, X)
    box1, box2 = (20, 13, 150, 180), (7, 30, 200, 160)
    out = (112, 96)
    K1c, K2c = crop_resize_intrinsics(K1, box1, out), crop_resize_intrinsics(K2, box2, out)
    # move the pixels through the same crop and resize as cv2.resize does (pixel centres at integers)
    y1 = (x1 - np.array(box1[:2]) + 0.5) * np.array([out[1] / box1[2], out[0] / box1[3]]) - 0.5
    y2 = (x2 - np.array(box2[:2]) + 0.5) * np.array([out[1] / box2[2], out[0] / box2[3]]) - 0.5
    # the adjusted intrinsics project the 3D points exactly to the moved pixels
    assert np.allclose(project(K1c.numpy(), R1, t1, X), y1)
    F = fundamental_from_cameras(K1c, R1, t1, K2c, R2, t2)
    assert symmetric_epipolar_distance(F, y1, y2).max() < 1e-8
    F_unadjusted = fundamental_from_cameras(K1, R1, t1, K2, R2, t2)
    assert symmetric_epipolar_distance(F_unadjusted, y1, y2).median() > 1.0


def test_intrinsics_hand_computed():
    K = torch.tensor([[100.0, 0, 50], [0, 120.0, 40], [0, 0, 1]], dtype=torch.float64)
    assert torch.allclose(crop_intrinsics(K, 10, 5)[:2, 2], torch.tensor([40.0, 35.0], dtype=torch.float64))
    Kr = resize_intrinsics(K, 0.5, 2.0)
    # principal point: (50 + 0.5) * 0.5 - 0.5 = 24.75 and (40 + 0.5) * 2 - 0.5 = 80.5
    assert torch.allclose(Kr, torch.tensor([[50.0, 0, 24.75], [0, 240.0, 80.5], [0, 0, 1]], dtype=torch.float64))
    # batched
    Kb = crop_intrinsics(K.expand(3, 3, 3), torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3))
    assert torch.allclose(Kb[:, 0, 2], torch.tensor([49.0, 48.0, 47.0], dtype=torch.float64))


def slow_indicator(F, size1, size2, s, mode):
    """Per-cell geometric reference: densely sample the epipolar line and test each sample against cells."""
    F = np.asarray(F, dtype=np.float64)
    c1, c2 = grid_centers(size1, s).numpy(), grid_centers(size2, s).numpy()
    out = []
    for M, src, (H, W), dst in ((F, c1, size2, c2), (F.T, c2, size1, c1)):
        I = np.zeros((s * s, s * s))
        cw, ch = W / s, H / s
        for i, p in enumerate(src):
            a, b, c = M @ np.array([p[0], p[1], 1.0])
            for j, q in enumerate(dst):
                if mode == "distance":
                    # two points on the line, then distance = |cross| / |segment| (triangle height)
                    d = np.array([-b, a])
                    p0 = -c * np.array([a, b]) / (a * a + b * b)
                    p1 = p0 + 100.0 * d
                    u, v = p1 - p0, q - p0
                    dist = abs(u[0] * v[1] - u[1] * v[0]) / np.hypot(*u)
                    I[i, j] = dist <= 0.5 * math.hypot(cw, ch)
                else:
                    # does the segment of the line inside the cell exist? sample points along the line
                    x0, x1, y0, y1 = q[0] - cw / 2, q[0] + cw / 2, q[1] - ch / 2, q[1] + ch / 2
                    if abs(b) > abs(a):
                        xs = np.linspace(x0, x1, 2001)
                        ys = -(a * xs + c) / b
                        I[i, j] = np.any((ys >= y0 - 1e-9) & (ys <= y1 + 1e-9))
                    else:
                        ys = np.linspace(y0, y1, 2001)
                        xs = -(b * ys + c) / a
                        I[i, j] = np.any((xs >= x0 - 1e-9) & (xs <= x1 + 1e-9))
        out.append(I)
    return out


@pytest.mark.parametrize("mode", ["distance", "intersect"])
def test_indicator_matches_reference(mode):
    K1, R1, t1, K2, R2, t2, _ = two_cameras(2)
    s = 5
    size1, size2 = (224, 224), (200, 240)
    K2 = resize_intrinsics(K2, 240 / 224, 200 / 224)
    F = fundamental_from_cameras(K1, R1, t1, K2, R2, t2)
    I12, I21 = epipolar_indicator(F, size1, size2, s, mode=mode)
    R12, R21 = slow_indicator(F.numpy(), size1, size2, s, mode)
    assert I12.shape == (s * s, s * s) and I21.shape == (s * s, s * s)
    assert np.array_equal(I12.numpy(), R12)
    assert np.array_equal(I21.numpy(), R21)
    assert I12.sum() > s * s  # lines cross several cells


def test_indicator_true_correspondences_on_line():
    """A 3D point's projections: the cell containing x2 is on the line of... x1 itself, i.e. F x1 passes near x2."""
    K1, R1, t1, K2, R2, t2, X = two_cameras(3)
    F = fundamental_from_cameras(K1, R1, t1, K2, R2, t2)
    s, size = 7, (224, 224)
    I12, _ = epipolar_indicator(F, size, size, s, mode="intersect")
    # a point at a cell centre of image 1: its 3D ray hits the line through every depth -> cell of x2 is on
    c1 = grid_centers(size, s)
    for i in (10, 24, 30):
        ray = np.linalg.inv(K1) @ np.array([*c1[i].numpy(), 1.0])
        Xw = R1.T @ (3.5 * ray - t1)
        x2 = project(K2, R2, t2, Xw[None])[0]
        if 0 <= x2[0] < 224 and 0 <= x2[1] < 224:
            j = int((x2[1] + 0.5) // 32) * s + int((x2[0] + 0.5) // 32)
            assert I12[i, j] == 1


def test_indicator_batched_and_bad_input():
    F = random_fundamental(4, seed=1)
    I12, I21 = epipolar_indicator(F, (64, 64), (64, 64), 4)
    assert I12.shape == (4, 16, 16) and I21.shape == (4, 16, 16)
    for b in range(4):
        a12, _ = epipolar_indicator(F[b], (64, 64), (64, 64), 4)
        assert torch.equal(a12, I12[b])
    with pytest.raises(ShapeError):
        epipolar_indicator(torch.zeros(3, 4), (64, 64), (64, 64), 4)
    with pytest.raises(ConfigError):
        epipolar_indicator(F, (64, 64), (64, 64), 4, mode="bogus")


def test_random_fundamental_rank2_seeded():
    F = random_fundamental(16, seed=5)
    sv = torch.linalg.svdvals(F)
    assert (sv[:, 2] < 1e-12).all() and (sv[:, 1] > 1e-6).all()
    assert torch.equal(F, random_fundamental(16, seed=5))
    assert not torch.equal(F, random_fundamental(16, seed=6))
    assert random_fundamental(seed=1).shape == (3, 3)


def test_plane_angles_equal_for_correspondences():
    K1, R1, t1, K2, R2, t2, X = two_cameras(4)
    F = fundamental_from_cameras(K1, R1, t1, K2, R2, t2)
    s, size = 7, (224, 224)
    th1, th2 = epipolar_plane_angles(F, size, size, s, ref_pixel=torch.tensor([30.0, 40.0]), K2=K2)
    assert th1.shape == (49,) and th2.shape == (49,)
    assert ((th1 >= 0) & (th1 < math.pi)).all()
    # angle of the true 3D epipolar plane of a cell centre of image 1 (camera-1 frame) vs the reference plane
    C1, C2 = -R1.T @ t1, -R2.T @ t2
    base = (C2 - C1) / np.linalg.norm(C2 - C1)

    def plane_normal(K, R, t, px):
        d = R.T @ np.linalg.inv(K) @ np.array([px[0], px[1], 1.0])  # world ray direction
        return np.cross(base, d)

    n0 = plane_normal(K1, R1, t1, (30.0, 40.0))
    c1 = grid_centers(size, s).numpy()
    for i in (0, 17, 48):
        n = plane_normal(K1, R1, t1, c1[i])
        ref = math.atan2(np.dot(np.cross(n0, n), base), np.dot(n0, n)) % math.pi
        d = abs(th1[i].item() - ref)
        assert min(d, math.pi - d) < 1e-8
    # the projection of a point in image 2 gets the same angle as its image-1 projection
    x1, x2 = project(K1, R1, t1, X), project(K2, R2, t2, X)
    for k in range(5):
        # a 1x1 grid whose centre sits on the point: shift each image frame so (111.5, 111.5) is the point
        Kc1 = crop_intrinsics(K1, x1[k, 0] - 111.5, x1[k, 1] - 111.5)
        Kc2 = crop_intrinsics(K2, x2[k, 0] - 111.5, x2[k, 1] - 111.5)
        Fk = fundamental_from_cameras(Kc1, R1, t1, Kc2, R2, t2)
        ref = torch.tensor([30.0 - (x1[k, 0] - 111.5), 40.0 - (x1[k, 1] - 111.5)])
        u1, u2 = epipolar_plane_angles(Fk, size, size, 1, ref_pixel=ref, K2=Kc2)
        d = abs(u1.item() - u2.item())
        assert min(d, math.pi - d) < 1e-6


def corner_sign_indicator(F, size1, size2, s):
    """Literal Sec. 3.3 rule, per cell: the line a x + b y + c = 0 passes through a cell iff the four corners
    of the cell's pixel rectangle do not all lie strictly on one side of it."""
    F = np.asarray(F, dtype=np.float64)
    out = []
    for M, (H1, W1), (H, W) in ((F, size1, size2), (F.T, size2, size1)):
        I = np.zeros((s * s, s * s))
        for i in range(s * s):
            r, c = divmod(i, s)
            x = np.array([(c + 0.5) * W1 / s - 0.5, (r + 0.5) * H1 / s - 0.5, 1.0])
            a, b, cc = M @ x
            for j in range(s * s):
                rj, cj = divmod(j, s)
                xs = [cj * W / s - 0.5, (cj + 1) * W / s - 0.5]
                ys = [rj * H / s - 0.5, (rj + 1) * H / s - 0.5]
                v = [a * u + b * w + cc for u in xs for w in ys]
                I[i, j] = min(v) <= 0 <= max(v)
        out.append(I)
    return out


def test_indicator_default_is_cells_the_line_passes_through():
    K1, R1, t1, K2, R2, t2, _ = two_cameras(4)
    size1, size2 = (224, 224), (200, 240)
    F = fundamental_from_cameras(K1, R1, t1, resize_intrinsics(K2, 240 / 224, 200 / 224), R2, t2)
    for s in (5, 7):
        I12, I21 = epipolar_indicator(F, size1, size2, s)  # no mode: the default rule
        R12, R21 = corner_sign_indicator(F.numpy(), size1, size2, s)
        S12, S21 = slow_indicator(F.numpy(), size1, size2, s, "intersect")  # dense line sampling
        assert np.array_equal(I12.numpy(), R12) and np.array_equal(I21.numpy(), R21)
        assert np.array_equal(R12, S12) and np.array_equal(R21, S21)
        D12, _ = epipolar_indicator(F, size1, size2, s, mode="distance")  # the option: a superset here
        assert (D12.numpy() >= R12).all() and D12.sum() > I12.sum()
