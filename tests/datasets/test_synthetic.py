"""Synthetic benchmark: exact epipolar geometry, masks, depth, determinism (independent references)."""
import json

import cv2
import numpy as np
import pytest

from relook.datasets.co3d import read_co3d, read_jgz, read_ply_points
from relook.datasets.synthetic import generate_synthetic, synthetic_cameras
from relook.errors import ConfigError

HW = (96, 112)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate_synthetic(tmp_path_factory.mktemp("synth"), num_instances=3, num_views=4, image_size=HW, seed=3,
                              num_points=400)


def _fundamental(K1, R1, t1, K2, R2, t2):
    """F with x2^T F x1 = 0, from the relative pose (Hartley & Zisserman eq. 9.2), written independently."""
    Rr = R2 @ R1.T
    tr = t2 - Rr @ t1
    tx = np.array([[0, -tr[2], tr[1]], [tr[2], 0, -tr[0]], [-tr[1], tr[0], 0]])
    return np.linalg.inv(K2).T @ tx @ Rr @ np.linalg.inv(K1)


def _proj(X, K, R, t):
    p = (X @ R.T + t) @ K.T
    return p[:, :2] / p[:, 2:]


def _epi_dist(F, x1, x2):
    h1, h2 = np.c_[x1, np.ones(len(x1))], np.c_[x2, np.ones(len(x2))]
    lines = h1 @ F.T
    return np.abs(np.sum(h2 * lines, 1)) / np.linalg.norm(lines[:, :2], axis=1)


def test_smoke(synth):
    frames = read_co3d(synth)
    assert len(frames) == 3 and all(len(v) == 4 for v in frames.values())
    img = cv2.imread(str(frames[next(iter(frames))][0].image_path))
    assert img.shape == (*HW, 3)
    assert json.loads((synth / "synthetic.json").read_text())["note"].startswith("synthetic")


def test_cameras_recovered_exactly(synth):
    for i, ((cat, seq), frs) in enumerate(sorted(read_co3d(synth).items(), key=lambda kv: kv[0][1])):
        for fr, (K, R, t) in zip(frs, synthetic_cameras(3, i, 4, HW)):
            np.testing.assert_allclose(fr.K, K, atol=1e-9)
            np.testing.assert_allclose(fr.R, R, atol=1e-12)
            np.testing.assert_allclose(fr.t, t, atol=1e-12)


def test_matches_reference_epipolar(synth):
    for (cat, seq), frs in read_co3d(synth).items():
        X = read_ply_points(synth / cat / seq / "pointcloud.ply")
        assert X.shape == (400, 3)
        for a, b in [(0, 1), (1, 2), (0, 3)]:
            f1, f2 = frs[a], frs[b]
            F = _fundamental(f1.K, f1.R, f1.t, f2.K, f2.R, f2.t)
            x1, x2 = _proj(X, f1.K, f1.R, f1.t), _proj(X, f2.K, f2.R, f2.t)
            assert np.max(_epi_dist(F, x1, x2)) < 0.05  # float32 ply points: far below a pixel
            # the check can fail: mismatched points are far from their epipolar lines
            assert np.median(_epi_dist(F, x1, x2[::-1])) > 1.0


def test_masks_and_depth_cover_points(synth):
    for (cat, seq), frs in read_co3d(synth).items():
        X = read_ply_points(synth / cat / seq / "pointcloud.ply")
        for fr in frs:
            mask = cv2.imread(str(fr.mask_path), cv2.IMREAD_GRAYSCALE) > 127
            depth = cv2.imread(str(fr.depth_path), cv2.IMREAD_UNCHANGED).view(np.float16).astype(np.float64)
            uv = _proj(X, fr.K, fr.R, fr.t)
            z = (X @ fr.R.T + fr.t)[:, 2]
            ij = np.round(uv).astype(int)
            assert (ij >= 0).all() and (ij[:, 0] < HW[1]).all() and (ij[:, 1] < HW[0]).all()
            grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            assert grown[ij[:, 1], ij[:, 0]].all()
            d = depth[ij[:, 1], ij[:, 0]]
            # nothing is seen behind a surface point; many points are the visible surface itself
            assert np.mean(z >= d - 0.02 * z) > 0.95
            assert np.mean(np.abs(z - d) < 0.02 * z) > 0.3
            assert 0.02 < mask.mean() < 0.8


def test_seeded(tmp_path):
    a = generate_synthetic(tmp_path / "a", num_instances=2, num_views=2, image_size=48, seed=5, num_points=10)
    b = generate_synthetic(tmp_path / "b", num_instances=2, num_views=2, image_size=48, seed=5, num_points=10)
    c = generate_synthetic(tmp_path / "c", num_instances=2, num_views=2, image_size=48, seed=6, num_points=10)
    rel = "synth_stack/0000_synth/images/frame000001.jpg"
    assert (a / rel).read_bytes() == (b / rel).read_bytes() != (c / rel).read_bytes()
    assert read_jgz(a / "synth_stack/frame_annotations.jgz") == read_jgz(b / "synth_stack/frame_annotations.jgz")


def test_bad_input(tmp_path):
    with pytest.raises(ConfigError):
        generate_synthetic(tmp_path, num_instances=1, num_views=0)
    with pytest.raises(ConfigError):
        generate_synthetic(tmp_path, num_instances=1, image_size=4)


def test_empty(tmp_path):
    out = generate_synthetic(tmp_path, num_instances=0)
    assert read_jgz(out / "synth_stack" / "frame_annotations.jgz") == []
