"""Synthetic benchmark: exact epipolar geometry, masks, depth, determinism (independent references)."""

import json

import cv2
import numpy as np
import pytest
from tests.shared_data import shared

from relook.datasets.co3d import read_co3d, read_jgz, read_ply_points
from relook.datasets.synthetic import generate_synthetic, synthetic_cameras
from relook.errors import ConfigError, DataError

HW = (96, 112)
TEX_HW = (160, 176)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate_synthetic(
        tmp_path_factory.mktemp("synth"), num_instances=3, num_views=4, image_size=HW, seed=3, num_points=400
    )


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
    for i, ((_cat, _seq), frs) in enumerate(sorted(read_co3d(synth).items(), key=lambda kv: kv[0][1])):
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


@pytest.fixture(scope="module")
def textured(tmp_path_factory):
    """Objects wearing real photos (Kodak24, read in place)."""
    return generate_synthetic(
        tmp_path_factory.mktemp("textured"),
        num_instances=2,
        num_views=4,
        image_size=TEX_HW,
        seed=3,
        num_points=3000,
        textures=shared("photos", "Kodak24"),
    )


def _visible_smooth(fr, X):
    """Sub-pixel projections of ``X`` into frame ``fr`` and which of them show that very point on a smooth
    patch: inside the image and the eroded mask, depth map = the point's depth, no depth step within
    2 px (not on an occluding edge) and a flat 3x3 grey patch (not on a texture or face edge)."""
    img = cv2.imread(str(fr.image_path)).astype(np.float32)
    depth = cv2.imread(str(fr.depth_path), cv2.IMREAD_UNCHANGED).view(np.float16).astype(np.float64)
    mask = cv2.imread(str(fr.mask_path), cv2.IMREAD_GRAYSCALE) > 127
    uv, z = _proj(X, fr.K, fr.R, fr.t), (X @ fr.R.T + fr.t)[:, 2]
    h, w = mask.shape
    c, r = np.round(uv).astype(int).T
    inside = (c >= 2) & (r >= 2) & (c < w - 2) & (r < h - 2)
    c, r = np.clip(c, 2, w - 3), np.clip(r, 2, h - 3)
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    std = np.sqrt(np.maximum(cv2.blur(grey**2, (3, 3)) - cv2.blur(grey, (3, 3)) ** 2, 0))
    step = cv2.dilate(depth, np.ones((5, 5))) + cv2.dilate(-depth, np.ones((5, 5)))  # max - min over 5x5
    inner = cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    ok = inside & inner[r, c] & (np.abs(depth[r, c] - z) < 0.01 * z) & (step[r, c] < 0.06 * z) & (std[r, c] < 8)
    colour = np.array([cv2.getRectSubPix(img, (1, 1), (float(x), float(y)))[0, 0] for x, y in uv])
    return colour, ok


def test_textured_views_match_cameras(textured):
    """A surface point projected with the stored cameras shows the same photo pixel in two views."""
    same, shuffled = [], []
    for (cat, seq), frs in read_co3d(textured).items():
        X = read_ply_points(textured / cat / seq / "pointcloud.ply")
        views = [_visible_smooth(fr, X) for fr in frs]
        for a, b in [(0, 1), (1, 2), (2, 3), (3, 0)]:
            sel = views[a][1] & views[b][1]
            ca, cb = views[a][0][sel], views[b][0][sel]
            same.append(np.abs(ca - cb).max(1))
            shuffled.append(np.abs(ca - np.roll(cb, 7, 0)).max(1))
    same, shuffled = np.concatenate(same), np.concatenate(shuffled)
    assert len(same) >= 40
    assert np.median(same) < 8 and np.mean(same < 15) > 0.9, np.percentile(same, [50, 90])
    assert np.mean(shuffled < 15) < 0.75  # the photos are not flat: a wrong pixel is seen


def _chromaticity(rgb):
    """Normalised 16x16 histogram of (r, g) / (r + g + b): blind to the faces' Lambert shading."""
    rgb = rgb.reshape(-1, 3).astype(np.float64)
    rg = rgb[:, :2] / (rgb.sum(1, keepdims=True) + 1e-6)
    hist = np.histogram2d(rg[:, 0], rg[:, 1], bins=16, range=[[0, 1], [0, 1]])[0]
    return hist / hist.sum()


def test_textured_photos(textured, tmp_path):
    """One photo per object, picked by the seed; its pixels, not procedural ones, cover the object."""
    meta = json.loads((textured / "synthetic.json").read_text())
    photos = meta["texture_photos"]
    assert sorted(photos) == ["0000_synth", "0001_synth"] and len(set(photos.values())) == 2
    kodak = {p.name: _chromaticity(cv2.imread(str(p))) for p in sorted(shared("photos", "Kodak24").glob("*.jpg"))}
    for (_cat, seq), frs in read_co3d(textured).items():
        pixels = []
        for fr in frs:
            mask = cv2.imread(str(fr.mask_path), cv2.IMREAD_GRAYSCALE) > 127
            mask = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
            pixels.append(cv2.imread(str(fr.image_path))[mask])
        seen = _chromaticity(np.concatenate(pixels))
        overlap = {name: np.minimum(seen, h).sum() for name, h in kodak.items()}
        # of the 24 Kodak photos, the colours on the object are those of the one it wears
        assert max(overlap, key=overlap.get) == photos[seq] and overlap[photos[seq]] > 0.5, overlap
    again = generate_synthetic(
        tmp_path / "a",
        num_instances=2,
        num_views=4,
        image_size=TEX_HW,
        seed=3,
        num_points=3000,
        textures=shared("photos", "Kodak24"),
    )
    rel = "synth_stack/0000_synth/images/frame000002.jpg"
    assert (again / rel).read_bytes() == (textured / rel).read_bytes()
    assert json.loads((again / "synthetic.json").read_text())["texture_photos"] == photos
    other = generate_synthetic(
        tmp_path / "o",
        num_instances=2,
        num_views=1,
        image_size=48,
        seed=4,
        num_points=10,
        textures=shared("photos", "Kodak24"),
    )
    assert json.loads((other / "synthetic.json").read_text())["texture_photos"] != photos
    # the cameras are those of the untextured generator, exactly
    for i, (_, frs) in enumerate(sorted(read_co3d(textured).items(), key=lambda kv: kv[0][1])):
        for fr, (K, R, t) in zip(frs, synthetic_cameras(3, i, 4, TEX_HW)):
            np.testing.assert_allclose(fr.K, K, atol=1e-9)
            np.testing.assert_allclose(fr.R, R, atol=1e-12)
            np.testing.assert_allclose(fr.t, t, atol=1e-12)


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
    (tmp_path / "no_photos").mkdir()
    with pytest.raises(DataError, match="no photos found"):
        generate_synthetic(tmp_path / "out", num_instances=1, textures=tmp_path / "no_photos")
    with pytest.raises(DataError, match="no such folder"):
        generate_synthetic(tmp_path / "out", num_instances=1, textures=tmp_path / "missing")


def test_empty(tmp_path):
    out = generate_synthetic(tmp_path, num_instances=0)
    assert read_jgz(out / "synth_stack" / "frame_annotations.jgz") == []
