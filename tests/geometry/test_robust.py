import numpy as np
import pytest
from benchmarks.two_view_scene import render_two_views

from relook.errors import ConfigError, DataError
from relook.geometry.epipolar import fundamental_from_cameras, random_fundamental, symmetric_epipolar_distance
from relook.geometry.robust import (
    estimate_fundamental,
    main,
    pair_key,
    positive_pairs,
    pseudo_ground_truth,
    read_pseudo_gt,
)


def project(cam, X):
    K, R, t = cam
    x = (K @ (R @ X.T + t[:, None])).T
    return x[:, :2] / x[:, 2:]


@pytest.fixture(scope="module")
def pair():
    return render_two_views(seed=2, delta_deg=20)


def test_matches_exact_geometry(pair):
    a, b, cams, X = pair
    r = pseudo_ground_truth(a, b, {"matcher": "sift"})
    assert r["reliable"] and r["F"].shape == (3, 3)
    x1, x2 = project(cams[0], X), project(cams[1], X)
    exact = fundamental_from_cameras(*cams[0], *cams[1]).numpy()
    assert np.median(symmetric_epipolar_distance(exact, x1, x2).numpy()) < 1e-8
    d = np.median(symmetric_epipolar_distance(r["F"], x1, x2).numpy())
    d_random = np.median(symmetric_epipolar_distance(random_fundamental(seed=0).numpy(), x1, x2).numpy())
    assert d < 3.0 < d_random  # pixels, 224 x 224 images
    assert np.linalg.matrix_rank(r["F"], tol=1e-9) == 2


def test_reliability_rule():
    rng = np.random.default_rng(0)
    F = fundamental_from_cameras(*_cams()).numpy()
    x1 = rng.uniform(0, 224, (200, 2))
    x2 = _on_lines(F, x1, rng)
    r = estimate_fundamental(x1, x2)
    assert r["reliable"] and r["num_inliers"] > 150
    # 20 matches, all consistent: still unreliable (#matches <= 20)
    assert not estimate_fundamental(x1[:20], x2[:20])["reliable"]
    assert estimate_fundamental(x1[:21], x2[:21])["num_matches"] == 21
    # mostly outliers: inliers <= 0.2 * matches -> unreliable
    x2o = x2.copy()
    x2o[30:] = rng.uniform(0, 224, (170, 2))
    r = estimate_fundamental(x1, x2o)
    assert r["num_inliers"] <= 0.2 * 200 + 5 and not r["reliable"]
    # too few for any estimate: empty result, correct shapes
    r = estimate_fundamental(np.zeros((0, 2)), np.zeros((0, 2)))
    assert r["F"].shape == (3, 3) and not r["reliable"] and r["inliers"].shape == (0,)


def _cams():
    K = np.array([[300.0, 0, 111.5], [0, 300.0, 111.5], [0, 0, 1]])
    c, s = np.cos(0.3), np.sin(0.3)
    R2 = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return K, np.eye(3), np.zeros(3), K, R2, np.array([-1.0, 0.1, 0.2])


def _on_lines(F, x1, rng):
    """A random point on the epipolar line of each x1 (exact correspondences up to depth)."""
    lines = np.c_[x1, np.ones(len(x1))] @ F.T
    xs = rng.uniform(0, 224, len(x1))
    return np.c_[xs, -(lines[:, 0] * xs + lines[:, 2]) / lines[:, 1]]


def test_seeded(pair):
    a, b, _, _ = pair
    r1, r2 = pseudo_ground_truth(a, b, {"seed": 3}), pseudo_ground_truth(a, b, {"seed": 3})
    assert np.array_equal(r1["F"], r2["F"]) and np.array_equal(r1["inliers"], r2["inliers"])


def test_stage_resume(tmp_path, pair):
    a, b, _, _ = pair
    imgs = {"x/1": a, "x/2": b, "y/1": np.zeros((64, 64, 3), np.uint8)}
    calls = []

    def load(i):
        calls.append(i)
        return imgs[i]

    out = tmp_path / "pgt.h5"
    main({}, [("x/1", "x/2")], load, out, progress=False)
    assert calls == ["x/1", "x/2"]
    main({}, [("x/1", "x/2"), ("x/1", "y/1")], load, out, progress=False)
    assert calls[2:] == ["x/1", "y/1"]  # the first pair was not recomputed
    res = read_pseudo_gt(out)
    assert set(res) == {("x/1", "x/2"), ("x/1", "y/1")}
    assert res[("x/1", "x/2")]["reliable"] and not res[("x/1", "y/1")]["reliable"]  # blank image: no matches
    assert pair_key("x/1", "x/2") == "x-1__x-2"
    with pytest.raises(DataError):
        read_pseudo_gt(out, [("x/2", "x/1")])
    with pytest.raises(DataError):
        read_pseudo_gt(tmp_path / "missing.h5")
    with pytest.raises(ConfigError):
        main({"matcher": "bogus"}, [("x/2", "x/1")], load, out, progress=False)


def test_positive_pairs():
    assert positive_pairs([0, 1, 0], ["a", "b", "c"]) == [("a", "c"), ("c", "a")]
    assert positive_pairs([], []) == []


@pytest.mark.slow
def test_loftr_smoke():
    """kornia LoFTR, randomly initialised (weights are not downloadable here): runs, gives (N, 2) coordinates."""
    from relook.geometry.robust import LoFTRMatcher

    rng = np.random.default_rng(0)
    img = (rng.random((64, 80, 3)) * 255).astype(np.uint8)
    x1, x2 = LoFTRMatcher(weights=None)(img, img)
    assert x1.shape == x2.shape and x1.shape[1] == 2
