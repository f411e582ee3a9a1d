"""Correspondences from RRT attention: a valid, optimal one-to-one assignment."""

import itertools

import numpy as np
import pytest
import torch

from relook.errors import ShapeError
from relook.models.rrt import RRT
from relook.models.rrt.correspondences import assignment_matches, cross_affinity, rrt_correspondences
from relook.types import ImageFeatures


def _brute_force_best(a):
    n1, n2 = a.shape
    if n1 <= n2:
        return max(sum(a[i, p[i]] for i in range(n1)) for p in itertools.permutations(range(n2), n1))
    return _brute_force_best(a.T)


@pytest.mark.parametrize("shape", [(4, 5), (5, 3), (4, 4)])
def test_matches_reference(shape):
    a = np.random.default_rng(sum(shape)).random(shape)
    pairs, score = assignment_matches(a)
    assert len(pairs) == min(shape)
    assert len(set(pairs[:, 0])) == len(pairs) and len(set(pairs[:, 1])) == len(pairs)  # one-to-one
    np.testing.assert_allclose(score, a[pairs[:, 0], pairs[:, 1]], rtol=1e-6)
    np.testing.assert_allclose(score.sum(), _brute_force_best(a), rtol=1e-6)


def test_empty_and_bad_input():
    pairs, score = assignment_matches(np.zeros((0, 5)))
    assert pairs.shape == (0, 2) and score.shape == (0,)
    with pytest.raises(ShapeError):
        assignment_matches(np.zeros(3))
    with pytest.raises(ShapeError):
        assignment_matches(np.array([[np.nan]]))


def test_cross_affinity_blocks():
    att = torch.rand(1, 2, 8, 8)  # CLS, q0..q2, SEP, c0..c2
    a = cross_affinity(att, 3, 3, (1, 5), symmetric=False)
    torch.testing.assert_close(a[0], att.mean(1)[0, 1:4, 5:8])
    s = cross_affinity(att, 3, 3, (1, 5))
    torch.testing.assert_close(s[0], (att.mean(1)[0, 1:4, 5:8] + att.mean(1)[0, 5:8, 1:4].T) / 2)


def _feats(iid, n, seed, attention=True):
    r = np.random.default_rng(seed)
    return ImageFeatures(
        iid,
        local_desc=r.standard_normal((n, 128)),
        keypoints=r.random((n, 2)) * 100,
        image_size=np.array([100, 100]),
        attention=r.random(n) if attention else None,
    )


def test_smoke():
    torch.manual_seed(0)
    model = RRT(num_layers=2, dim_feedforward=64, input="keypoints")
    q, c = _feats("q", 6, 0), _feats("c", 9, 1)
    out = rrt_correspondences(model, q, c, max_locals=5)
    assert out["pairs"].shape == (5, 2) and out["kp_query"].shape == (5, 2)
    assert len(set(out["pairs"][:, 1].tolist())) == 5
    top5 = np.argsort(-q.attention)[:5]  # keypoints input keeps the strongest locals
    np.testing.assert_allclose(sorted(map(tuple, out["kp_query"])), sorted(map(tuple, q.keypoints[top5])))
