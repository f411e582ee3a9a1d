"""Pair sampling by instance and hard-negative mining (checked against direct loops)."""

import numpy as np
import pytest

from relook.datasets.pairs import hard_negatives, hard_positives, sample_pairs
from relook.errors import ConfigError, ShapeError
from relook.types import Shortlist

LABELS = np.array([0, 0, 1, 1, 1, 2, 3, 3])


def test_smoke():
    pairs, y = sample_pairs(LABELS, 40, 0.5, seed=0)
    assert pairs.shape == (40, 2) and y.shape == (40,) and y.sum() == 20
    same = LABELS[pairs[:, 0]] == LABELS[pairs[:, 1]]
    np.testing.assert_array_equal(same, y == 1)
    assert (pairs[:, 0] != pairs[:, 1]).all()
    assert 5 not in pairs[y == 1]  # the singleton label 2 has no positive partner


def test_seeded():
    a, b, c = (sample_pairs(LABELS, 30, 0.3, seed=s)[0] for s in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_empty():
    pairs, y = sample_pairs(np.array([4, 4]), 6, 0.5)
    assert pairs.shape == (3, 2) and y.tolist() == [1, 1, 1]  # no negatives exist
    pairs, y = sample_pairs(np.array([], int), 0)
    assert pairs.shape == (0, 2) and y.shape == (0,)
    sl = Shortlist(["q"], ["a"], np.zeros((1, 0), np.int64), np.zeros((1, 0), np.float32))
    assert hard_negatives(sl, [0], [1]).shape == (0, 2)


def test_matches_reference():
    rng = np.random.default_rng(0)
    ql, gl = rng.integers(0, 4, 6), rng.integers(0, 4, 12)
    idx = np.stack([rng.permutation(12)[:8] for _ in range(6)])
    idx[0, -2:] = -1
    sl = Shortlist([f"q{i}" for i in range(6)], [f"g{i}" for i in range(12)], idx, -np.sort(-rng.random((6, 8)), 1))
    got = hard_negatives(sl, ql, gl, per_query=3)
    want = []
    for q in range(6):  # slow obvious loop
        n = 0
        for g in idx[q]:
            if g >= 0 and gl[g] != ql[q] and n < 3:
                want.append((q, g))
                n += 1
    np.testing.assert_array_equal(got, np.array(want).reshape(-1, 2))
    hp = hard_positives(sl, ql, gl, per_query=1)
    for q, g in hp:
        row = [x for x in idx[q] if x >= 0 and gl[x] == ql[q]]
        assert g == row[-1]


def test_bad_input():
    with pytest.raises(ConfigError):
        sample_pairs(LABELS, 4, positive_fraction=1.5)
    sl = Shortlist(["q"], ["a", "b"], np.array([[0, 1]]), np.array([[1.0, 0.5]]))
    with pytest.raises(ShapeError):
        hard_negatives(sl, [0, 1], [0, 1])
