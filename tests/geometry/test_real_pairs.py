"""Real pairs with ground-truth geometry (``../shared/data/geometry``): readers, H and F from relook's
matchers, and the epipolar indicator / crop-adjusted F on real ScanNet cameras.

Features are those of ``tests/real_geometry.py`` (480 px, 1024 keypoints; cached per session and shared
with ``test_gv_lightglue`` / ``test_learned_local``). Measured when written (corner error, px of the
original images): ALIKED + LightGlue on v_churchill 1-6 2.8, v_wormhole 1-6 3.8, graf 1-5 ~3; SIFT +
mutual NN on v_churchill 1-2 1.2, v_wormhole 1-3 0.8, graf 1-2 1.1. ScanNet pseudo-GT F (ALIKED +
LightGlue) inliers under the true F: median 3-9 px on the pairs below; under the transposed F 85-860 px.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from relook.datasets.geometry_pairs import (
    load_geometry_set,
    parse_scannet_line,
    read_evd,
    read_magsac_homography,
    read_matrix,
    read_scannet,
    read_vpts,
)
from relook.errors import ConfigError, DataError
from relook.geometry.epipolar import (
    crop_resize_intrinsics,
    epipolar_indicator,
    fundamental_from_cameras,
    symmetric_epipolar_distance,
)
from relook.geometry.robust import estimate_fundamental
from relook.rerank.two_view import TwoViewMatcher, corner_error, estimate_homography, virtual_correspondences
from tests.real_geometry import features
from tests.shared_data import shared

ROOT = shared("geometry")
CONF = {"resize": 480, "max_keypoints": 1024}  # as tests/real_geometry users: one extraction per image
SIFT_CONF = {"num_features": 1024, "max_image_size": 480}
SCANNET_PAIRS = (0, 3, 4, 5)  # scene0711, 0722, 0726, 0737: the pairs with most LightGlue matches


def rel(path) -> str:
    return str(path.relative_to(ROOT))


def by_name(set_name: str) -> dict:
    return {p.name: p for p in load_geometry_set(set_name, ROOT)}


def test_readers_shapes():
    """Every set reads: pair counts, 3x3 H, (N, 2) correspondences, images on disk, hand-checked values."""
    counts = {"hpatches": 10, "graf": 5, "evd": 15, "magsac-h": 16, "kusvod2": 24, "scannet": 15}
    for name, n in counts.items():
        pairs = load_geometry_set(name, ROOT)
        assert len(pairs) == n, (name, len(pairs))
        for p in pairs:
            assert p.image1.is_file() and p.image2.is_file() and p.image1 != p.image2
            if hasattr(p, "H"):
                assert p.H.shape == (3, 3) and np.isfinite(p.H).all()
    # the first row of v_churchill H_1_2, as in the file
    np.testing.assert_allclose(by_name("hpatches")["v_churchill 1-2"].H[0], [2.3594, 0.0026252, -116.05])
    np.testing.assert_allclose(by_name("graf")["graf 1-3"].H[2], read_matrix(ROOT / "oxford_graf_affnet/H1to3p")[2])
    assert by_name("evd")["adam"].image1.name == "adam.png"
    kyoto = by_name("kusvod2")["Kyoto"]
    assert kyoto.x1.shape == kyoto.x2.shape == (10, 2) and kyoto.meta["imsize"] == (1944, 2592)
    np.testing.assert_allclose(kyoto.x1[0], [911.118377, 469.023494], atol=1e-5)
    np.testing.assert_allclose(kyoto.x2[0], [1478.50528, 652.256074], atol=1e-4)
    s = load_geometry_set("scannet", ROOT)[0]
    assert s.image1.name == "scene0711_00_frame-001680.jpg" and s.image2.name == "scene0711_00_frame-001995.jpg"
    np.testing.assert_allclose(s.K1[0], [1163.45, 0, 653.626])
    np.testing.assert_allclose(s.t, [-1.51061, -0.05367, 0.056])
    np.testing.assert_allclose(s.R[0], [0.78593, -0.35128, 0.50884])


def test_scannet_reader_order(tmp_path):
    """K0 is image 1's, K1 image 2's, T_0to1 maps camera 1 to 2 (ScanNet's K0 == K1, so a made-up line)."""
    (tmp_path / "images").mkdir()
    for n in ("a.jpg", "b.png"):
        (tmp_path / "images" / n).write_bytes(b"")
    K0, K1 = "100 0 50 0 100 40 0 0 1", "200 0 60 0 210 45 0 0 1"
    T = "0 -1 0 1 1 0 0 2 0 0 1 3 0 0 0 1"
    (tmp_path / "gt.txt").write_text(f"a.jpg b.jpg 0 0 {K0} {K1} {T}\n")
    (p,) = read_scannet(tmp_path, "gt.txt")
    assert p.K1[0, 0] == 100 and p.K2[0, 0] == 200 and p.image2.name == "b.png"
    np.testing.assert_allclose(p.t, [1, 2, 3])
    X0 = np.array([0.3, -0.2, 4.0])  # a point in camera-1 coordinates, seen by both cameras
    X1 = p.R @ X0 + p.t
    x1, x2 = p.K1 @ X0, p.K2 @ X1
    assert abs(x2 @ p.F @ x1) < 1e-12 * np.linalg.norm(x1) * np.linalg.norm(x2)


def test_magsac_h_maps_hand_marked_points():
    """MAGSAC's planar pairs: the H read (A -> B) maps the hand-marked A points onto the B points."""
    for p in read_magsac_homography(ROOT / "homogr_H_magsac"):
        x1, x2, _ = read_vpts(ROOT / "homogr_H_magsac" / f"{p.name}_vpts.mat")
        y = np.c_[x1, np.ones(len(x1))] @ p.H.T
        assert np.abs(y[:, :2] / y[:, 2:] - x2).max() < 0.05, p.name


def test_kusvod2_points_fit_an_F():
    """Hand-marked correspondences sit inside their images and an 8-point F fits them (a shuffle does not)."""
    rng = np.random.default_rng(0)
    fits, shuffled = [], []
    for p in load_geometry_set("kusvod2", ROOT):
        h, w = p.meta["imsize"]
        for img, x in ((p.image1, p.x1), (p.image2, p.x2)):
            assert Image.open(img).size == (w, h), p.name
            assert (x > -1).all() and (x < [w, h]).all(), p.name
        if len(p.x1) < 8:  # dino1: 7 points
            continue
        F, _ = cv2.findFundamentalMat(p.x1, p.x2, cv2.FM_8POINT)
        fits.append(np.median(symmetric_epipolar_distance(F, p.x1, p.x2).numpy()))
        perm = rng.permutation(len(p.x2))
        G, _ = cv2.findFundamentalMat(p.x1, p.x2[perm], cv2.FM_8POINT)
        shuffled.append(np.median(symmetric_epipolar_distance(G, p.x1, p.x2[perm]).numpy()))
    fits, shuffled = np.array(fits), np.array(shuffled)
    assert len(fits) == 23 and np.median(fits) < 0.5 and np.mean(fits < 2) > 0.9, fits
    assert np.median(shuffled) > 20, shuffled


def test_homography_accuracy(one_thread):
    """gv's matcher + MAGSAC++ H: ALIKED + LightGlue within 6 px corner error on hard pairs, SIFT within 3 on easy."""
    pairs = {**by_name("hpatches"), **by_name("graf")}
    for method, ex, conf, names, limit in (
        ("aliked+lightglue", "aliked", CONF, ("v_churchill 1-6", "v_wormhole 1-6", "graf 1-5"), 6.0),
        ("sift+mnn", "sift", SIFT_CONF, ("v_churchill 1-2", "v_wormhole 1-3", "graf 1-2"), 3.0),
    ):
        m = TwoViewMatcher(method, 1024, 480)
        for name in names:
            p = pairs[name]
            fa, fb = features(ex, rel(p.image1), **conf), features(ex, rel(p.image2), **conf)
            x1, x2 = m.match(fa, fb)
            H, n = estimate_homography(x1, x2, threshold=4.0)
            err = corner_error(H, p.H, fa.image_size)
            assert err < limit and n > 50, (method, name, err, n)
            # and the score can fail: a transposed ground truth is hundreds of px away
            assert corner_error(H, p.H.T, fa.image_size) > 50


def test_corner_error_and_virtual_correspondences():
    """corner_error of a known shift is the shift; virtual correspondences satisfy F exactly, inside image 2."""
    H = np.eye(3)
    assert corner_error(H, H, (10, 20)) == 0 and corner_error(None, H, (10, 20)) == math.inf
    shift = np.array([[1, 0, 3.0], [0, 1, 4.0], [0, 0, 1]])
    assert corner_error(shift, H, (10, 20)) == pytest.approx(5.0)
    p = load_geometry_set("scannet", ROOT)[0]
    x1, x2 = virtual_correspondences(p.F, (968, 1296), (968, 1296))
    assert len(x1) > 200 and (x2 >= -0.5).all() and (x2 <= [1295.5, 967.5]).all()
    assert symmetric_epipolar_distance(p.F, x1, x2).max() < 1e-6
    with pytest.raises(ConfigError, match="unknown method"):
        TwoViewMatcher("orb+mnn")


def skew(v):
    return np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])


@pytest.mark.slow  # ~16 s: LightGlue on ScanNet pairs (make test-fast leaves it out)
def test_scannet_true_f(one_thread):
    """True F = K1^-T [t]x R K0^-1 (written here), and LightGlue's pseudo-GT inliers agree with it."""
    pairs = load_geometry_set("scannet", ROOT)
    for p in pairs:
        F = np.linalg.inv(p.K2).T @ skew(p.t) @ p.R @ np.linalg.inv(p.K1)
        F /= np.linalg.norm(F)
        assert min(np.abs(F - p.F).max(), np.abs(F + p.F).max()) < 1e-9, p.name
        E = p.K2.T @ p.F @ p.K1  # an essential matrix: singular values (s, s, 0)
        sv = np.linalg.svd(E, compute_uv=False)
        assert sv[2] < 1e-9 * sv[0] and abs(sv[0] - sv[1]) < 1e-4 * sv[0], p.name  # R is given to 5 digits
    m = TwoViewMatcher("aliked+lightglue", 1024, 480)
    good = 0
    for i in SCANNET_PAIRS:
        p = pairs[i]
        fa, fb = features("aliked", rel(p.image1), **CONF), features("aliked", rel(p.image2), **CONF)
        x1, x2 = m.match(fa, fb)
        r = estimate_fundamental(x1, x2, {"ransac_threshold": 2.7})  # 1 px of the 480 px network input
        inl = r["inliers"]
        if inl.sum() < 8:
            continue
        d_true = np.median(symmetric_epipolar_distance(p.F, x1[inl], x2[inl]).numpy())
        d_transposed = np.median(symmetric_epipolar_distance(p.F.T, x1[inl], x2[inl]).numpy())
        good += d_true < 12 and d_transposed > 40
    assert good >= 3, good


@pytest.mark.slow  # ~10 CPU-s: LightGlue on real pairs
def test_pseudo_gt_aliked_lightglue(one_thread):
    """``pseudo_ground_truth(matcher="aliked+lightglue")``: the F it returns on real ScanNet pairs agrees with
    the true F (median symmetric distance of its inliers under the true F small, under the transposed F
    large), and the pair is reliable by the Sec. 5.2 rule; SIFT + ratio on the same pairs for comparison.
    The threshold (1 px of the 480 px input) is scaled to the original pixels by the matcher."""
    from relook.geometry.robust import make_matcher, pseudo_ground_truth
    from relook.rerank.two_view import LearnedMatcher

    pairs = load_geometry_set("scannet", ROOT)
    conf = {"matcher": "aliked+lightglue", "learned_max_keypoints": 1024, "learned_resize": 480}
    matcher = make_matcher({**conf, "loftr_weights": None, "loftr_confidence": 0, "resize_max": None})
    assert isinstance(matcher, LearnedMatcher)
    good = 0
    for i in SCANNET_PAIRS:
        p = pairs[i]
        a, b = (np.asarray(Image.open(x).convert("RGB")) for x in (p.image1, p.image2))
        r = pseudo_ground_truth(a, b, conf, matcher)
        x1, x2 = matcher(a, b)
        inl = r["inliers"]
        if not r["reliable"] or inl.sum() < 8:
            continue
        d_est = np.median(symmetric_epipolar_distance(r["F"], x1[inl], x2[inl]).numpy())
        d_true = np.median(symmetric_epipolar_distance(p.F, x1[inl], x2[inl]).numpy())
        d_transposed = np.median(symmetric_epipolar_distance(p.F.T, x1[inl], x2[inl]).numpy())
        good += d_est < 3 and d_true < 12 and d_transposed > 40
    assert good >= 3, good
    with pytest.raises(ConfigError, match="aliked\\+lightglue"):
        make_matcher({"matcher": "aliked"})


def cell_rect(c, r, size, s):
    """(xmin, xmax, ymin, ymax) of grid cell (r, c) of an (H, W) image (pixel centres at integers)."""
    H, W = size
    return c * W / s - 0.5, (c + 1) * W / s - 0.5, r * H / s - 0.5, (r + 1) * H / s - 0.5


def line_hits_rect(line, rect) -> bool:
    """Does the line a x + b y + c = 0 cross the closed rectangle? (crossings with its four sides)."""
    a, b, c = line
    x0, x1, y0, y1 = rect
    for x in (x0, x1):
        if b != 0 and y0 <= -(a * x + c) / b <= y1:
            return True
    return any(a != 0 and x0 <= -(b * y + c) / a <= x1 for y in (y0, y1))


def slow_indicator(F, size1, size2, s, mode, to_orig1=None, to_orig2=None, F_orig=None):
    """Per-cell loops. With ``to_orig*`` (pixel maps of the crops) and ``F_orig``, lines and cells are
    taken back to the original images, so the crop adjustment is checked, not reused."""
    out = np.zeros((s * s, s * s))
    for i in range(s * s):
        r1, c1 = divmod(i, s)
        x = ((c1 + 0.5) * size1[1] / s - 0.5, (r1 + 0.5) * size1[0] / s - 0.5)
        if F_orig is None:
            line = F @ np.array([x[0], x[1], 1.0])
        else:
            line = F_orig @ np.array([*to_orig1(*x), 1.0])
        for j in range(s * s):
            r2, c2 = divmod(j, s)
            rect = cell_rect(c2, r2, size2, s)
            if mode == "distance":
                cx, cy = (rect[0] + rect[1]) / 2, (rect[2] + rect[3]) / 2
                d = abs(line[0] * cx + line[1] * cy + line[2]) / math.hypot(line[0], line[1])
                out[i, j] = d <= 0.5 * math.hypot(size2[0] / s, size2[1] / s)
            elif F_orig is None:
                out[i, j] = line_hits_rect(line, rect)
            else:  # crop + resize is axis-aligned affine: the cell stays a rectangle in the original
                (xa, ya), (xb, yb) = to_orig2(rect[0], rect[2]), to_orig2(rect[1], rect[3])
                out[i, j] = line_hits_rect(line, (xa, xb, ya, yb))
    return out


@pytest.mark.parametrize("mode", ["distance", "intersect"])
def test_indicator_matches_reference(mode):
    """epipolar_indicator on real ScanNet cameras (both directions) equals the per-cell loops."""
    s = 7
    for p in load_geometry_set("scannet", ROOT)[:3]:
        size = (968, 1296)
        i12, i21 = epipolar_indicator(torch.from_numpy(p.F), size, size, s, mode)
        ref12 = slow_indicator(p.F, size, size, s, mode)
        ref21 = slow_indicator(p.F.T, size, size, s, mode)
        assert 0 < ref12.sum() < ref12.size
        np.testing.assert_array_equal(i12.numpy(), ref12, err_msg=p.name)
        np.testing.assert_array_equal(i21.numpy(), ref21, err_msg=p.name)


def test_crop_adjusted_f_matches_reference():
    """F from crop_resize_intrinsics + fundamental_from_cameras on ScanNet cameras: its 'intersect'
    indicator equals loops run in the ORIGINAL frames (cells and points mapped back by hand)."""
    s, out = 7, (224, 224)
    for p, box1, box2 in zip(
        load_geometry_set("scannet", ROOT)[:3],
        [(100, 50, 900, 800), (0, 168, 1000, 800), (296, 0, 968, 968)],
        [(300, 120, 800, 700), (200, 0, 968, 900), (0, 100, 1296, 700)],
    ):
        K1c, K2c = crop_resize_intrinsics(p.K1, box1, out), crop_resize_intrinsics(p.K2, box2, out)
        Fc = fundamental_from_cameras(K1c, np.eye(3), np.zeros(3), K2c, p.R, p.t)

        def back(box):  # crop-resize pixel -> original pixel (pixel centres at integers)
            x0, y0, w, h = box
            return lambda x, y: ((x + 0.5) * w / out[1] - 0.5 + x0, (y + 0.5) * h / out[0] - 0.5 + y0)

        ind12, _ = epipolar_indicator(Fc, out, out, s, "intersect")
        ref = slow_indicator(None, out, out, s, "intersect", back(box1), back(box2), p.F)
        assert 0 < ref.sum() < ref.size
        np.testing.assert_array_equal(ind12.numpy(), ref, err_msg=p.name)


def test_bad_input(tmp_path):
    """Malformed files give one-line DataErrors naming the file."""
    bad = tmp_path / "H_1_2"
    bad.write_text("1 0 0\n0 1 0\n")
    with pytest.raises(DataError, match="H_1_2.*3x3") as e:
        read_matrix(bad)
    assert "\n" not in str(e.value)
    bad.write_text("1 0 x\n0 1 0\n0 0 1\n")
    with pytest.raises(DataError, match="numbers"):
        read_matrix(bad)
    mat = tmp_path / "p_vpts.mat"
    scipy.io.savemat(mat, {"validation": {"pts": np.ones((4, 5)), "imsize": np.array([[10, 10]])}})
    with pytest.raises(DataError, match="6 x N"):
        read_vpts(mat)
    scipy.io.savemat(mat, {"other": np.ones(3)})
    with pytest.raises(DataError, match="p_vpts.mat"):
        read_vpts(mat)
    line = (ROOT / "scannet_pairs_superglue/scannet_sample_pairs_with_gt.txt").read_text().splitlines()[0]
    with pytest.raises(DataError, match="38 fields"):
        parse_scannet_line(line.rsplit(" ", 1)[0], "gt.txt:1")
    with pytest.raises(DataError, match="rotations"):
        parse_scannet_line(line.replace(" 0 0 ", " 1 0 ", 1), "gt.txt:1")
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "x.txt").write_text("1 0 0\n0 1 0\n0 0 1\n")
    with pytest.raises(DataError, match="image missing"):
        read_evd(tmp_path)
    with pytest.raises(ConfigError, match="unknown geometry set"):
        load_geometry_set("nope", ROOT)
