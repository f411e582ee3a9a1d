import cv2
import numpy as np
import pytest

from relook.errors import ConfigError
from relook.features.sift import SiftExtractor
from relook.rerank import create_reranker
from relook.rerank.gv import count_inliers, tie_break
from relook.rerank.matching import mutual_nn_batch
from relook.types import ImageFeatures
from tests.synthetic_images import apply_homography, known_homography, textured_image


def _mutual_nn_reference(a, b, ratio=None):
    """Slow obvious loop: mutual nearest neighbours by Euclidean distance (+ Lowe ratio)."""
    d = np.sqrt(((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1))
    out = []
    for i in range(len(a)):
        j = int(np.argmin(d[i]))
        if int(np.argmin(d[:, j])) != i:
            continue
        if ratio is not None and d[i, j] >= ratio * np.sort(d[i])[1]:
            continue
        out.append((i, j))
    return out


def test_matching_matches_reference():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(60, 16)).astype(np.float32)
    cands = [rng.normal(size=(m, 16)).astype(np.float32) for m in (40, 1, 75, 0)]
    cands[0][:20] = q[:20] + 0.05 * rng.normal(size=(20, 16))
    for ratio in (None, 0.8):
        got = mutual_nn_batch(q, cands, ratio=ratio, chunk_size=3)
        for c, (iq, ic) in zip(cands, got):
            ref = _mutual_nn_reference(q, c, ratio) if len(c) and not (ratio and len(c) < 2) else []
            assert list(zip(iq.tolist(), ic.tolist())) == ref


@pytest.fixture(scope="module")
def warped_pairs():
    ex = SiftExtractor(num_features=1000)
    pairs = []
    for seed in range(3):
        img = textured_image(320, seed)
        h = known_homography(320, seed + 10)
        warped = cv2.warpPerspective(img, h, (320, 320))
        pairs.append((ex.extract_one(f"a{seed}", img), ex.extract_one(f"b{seed}", warped), h))
    return pairs


def test_recovers_known_homography(warped_pairs):
    """Inliers cover >= 90% of the true correspondences among the putative matches, and H is recovered."""
    for a, b, h in warped_pairs:
        ((iq, ic),) = mutual_nn_batch(a.local_desc, [b.local_desc])
        true = np.linalg.norm(apply_homography(h, a.keypoints[iq]) - b.keypoints[ic], axis=1) < 3.0
        assert true.sum() >= 30
        n_in, h_est = count_inliers(a.keypoints[iq], b.keypoints[ic], "homography", threshold=3.0)
        assert n_in >= 0.9 * true.sum()
        assert n_in <= len(iq)
        grid = np.stack(np.meshgrid(np.linspace(40, 280, 5), np.linspace(40, 280, 5)), -1).reshape(-1, 2)
        assert np.abs(apply_homography(h_est, grid) - apply_homography(h, grid)).max() < 2.0
        gv = create_reranker("gv", model="homography", threshold=3.0)
        assert gv.inliers(b, [a])[0] >= 0.9 * true.sum()


def test_ranks_true_match_first(warped_pairs):
    a, b, _ = warped_pairs[0]
    others = [p[0] for p in warped_pairs[1:]]
    for model in ("homography", "affine", "fundamental"):
        gv = create_reranker("gv", model=model, threshold=3.0)
        scores = gv.rerank(b, others + [a], np.array([0.9, 0.8, 0.1]))  # the true match is last globally
        assert np.argmax(scores) == 2


def test_tie_break_orders_by_global():
    tb = tie_break(np.array([0.3, 0.9, 0.5]))
    assert list(np.argsort(-tb)) == [1, 2, 0] and tb.max() < 0.5 and tb.min() > 0


def test_seeded(warped_pairs):
    a, b, _ = warped_pairs[1]
    cands = [a, warped_pairs[0][0]]
    for method in ("magsac", "ransac"):
        s1 = create_reranker("gv", seed=3, method=method).rerank(b, cands, np.array([1.0, 0.5]))
        s2 = create_reranker("gv", seed=3, method=method).rerank(b, cands, np.array([1.0, 0.5]))
        np.testing.assert_array_equal(s1, s2)


def test_empty():
    gv = create_reranker("gv")
    q = ImageFeatures("q", local_desc=np.zeros((0, 128)), keypoints=np.zeros((0, 2)), attention=np.zeros(0))
    c = ImageFeatures("c", local_desc=np.ones((5, 128)), keypoints=np.ones((5, 2)), attention=np.ones(5))
    assert gv.rerank(q, [], np.zeros(0)).shape == (0,)
    s = gv.rerank(q, [c, c], np.array([0.5, 0.2]))
    assert s.shape == (2,) and np.isfinite(s).all() and s[0] > s[1]
    assert count_inliers(np.zeros((2, 2)), np.zeros((2, 2)))[0] == 0


def test_bad_input():
    with pytest.raises(ConfigError):
        create_reranker("gv", model="similarity")
    with pytest.raises(ConfigError):
        create_reranker("gv", method="lmeds")
    with pytest.raises(ConfigError):
        create_reranker("gv", treshold=3)


def test_delg_preset_matches_reference():
    """DELG-style GV: matches below descriptor L2 distance 1.0, classic RANSAC affine, 20 px, 1000 trials."""
    rng = np.random.default_rng(0)
    n = 60
    qd = rng.normal(size=(n, 16))
    qd /= np.linalg.norm(qd, axis=1, keepdims=True)
    qk = rng.random((n, 2)) * 200
    noise = np.where(np.arange(n)[:, None] < 30, 0.05, 0.9)  # half the pairs are far (> 1.0) in descriptor space
    cd = qd + noise * rng.normal(size=(n, 16)) / 4
    M = np.array([[0.9, 0.1, 5.0], [-0.1, 0.95, -3.0]])
    ck = qk @ M[:, :2].T + M[:, 2] + np.where(np.arange(n)[:, None] % 3 == 0, rng.normal(size=(n, 2)) * 60, 0)
    att = np.ones(n, np.float32)
    q = ImageFeatures("q", local_desc=qd.astype(np.float32), keypoints=qk, attention=att)
    c = ImageFeatures("c", local_desc=cd.astype(np.float32), keypoints=ck, attention=att)
    # reference: mutual NN, distance < 1.0, then OpenCV RANSAC affine (same seed)
    pairs = [
        (i, j)
        for i, j in _mutual_nn_reference(qd, cd)
        if np.linalg.norm(qd[i].astype(np.float32) - cd[j].astype(np.float32)) < 1.0
    ]
    iq, ic = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    cv2.setRNGSeed(0)
    _, mask = cv2.estimateAffine2D(
        ck[ic].astype(np.float64),
        qk[iq].astype(np.float64),
        method=cv2.RANSAC,
        ransacReprojThreshold=20.0,
        maxIters=1000,
        confidence=0.999,
    )
    gv = create_reranker("gv", preset="delg")
    assert len(pairs) < len(_mutual_nn_reference(qd, cd))  # the distance threshold removed matches
    assert int(gv.inliers(q, [c])[0]) == int(mask.sum())
    assert (gv.conf["method"], gv.conf["max_distance"], gv.conf["threshold"]) == ("ransac", 1.0, 20.0)
    assert create_reranker("gv", preset="magsac").conf["method"] == "magsac"
