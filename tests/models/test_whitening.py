import numpy as np
import pytest

from relook.errors import DataError, ShapeError
from relook.models.whitening import (apply_whitening, learn_pca_whitening, learn_supervised_whitening,
                                     pairs_from_labels)


def _synthetic(n_classes=150, per_class=4, d=12, seed=0):
    """Class centres + correlated intra-class noise (what supervised whitening must decorrelate)."""
    mix = np.random.default_rng(123).normal(size=(d, d)) * np.linspace(3, 0.2, d)  # same for every draw
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d)) * 2
    labels = np.repeat(np.arange(n_classes), per_class)
    x = centres[labels] + rng.normal(size=(len(labels), d)) @ mix.T
    return x, labels


def test_matches_reference():
    x, labels = _synthetic()
    pairs = pairs_from_labels(labels)
    mean, proj = learn_supervised_whitening(x, pairs, eps=0.0)
    diff = x[pairs[:, 0]] - x[pairs[:, 1]]
    cov_s = diff.T @ diff / len(diff)  # numpy reference of the intra-pair covariance
    assert np.allclose(proj.T.astype(np.float64) @ proj, np.linalg.inv(cov_s), rtol=1e-3, atol=1e-5)
    wd = diff @ proj.T.astype(np.float64)
    assert np.allclose(wd.T @ wd / len(wd), np.eye(x.shape[1]), atol=1e-3)  # decorrelated, unit variance
    assert np.allclose(mean, x[pairs[:, 0]].mean(0), atol=1e-5)


def test_decorrelates_held_out():
    x, labels = _synthetic(seed=0)
    mean, proj = learn_supervised_whitening(x, pairs_from_labels(labels))
    x2, l2 = _synthetic(n_classes=200, seed=1)  # held-out draw of the same distribution
    p2 = pairs_from_labels(l2)
    d_before = x2[p2[:, 0]] - x2[p2[:, 1]]
    d_after = d_before @ proj.T.astype(np.float64)
    off = lambda c: np.abs(c - np.diag(np.diag(c))).max()  # noqa: E731
    corr_before, corr_after = np.corrcoef(d_before.T), np.corrcoef(d_after.T)
    assert off(corr_after) < 0.2 < off(corr_before)


def test_pca_reference():
    x, _ = _synthetic()
    mean, proj = learn_pca_whitening(x, eps=0.0)
    y = (x - mean) @ proj.T.astype(np.float64)
    assert np.allclose(np.cov(y, rowvar=False, bias=True), np.eye(x.shape[1]), atol=1e-3)
    var = ((x - mean) @ (proj / np.linalg.norm(proj, axis=1, keepdims=True)).T).var(0)
    assert np.all(np.diff(var) <= 1e-6)  # decreasing variance order


def test_apply_shapes_and_empty():
    x, labels = _synthetic()
    mean, proj = learn_supervised_whitening(x, pairs_from_labels(labels))
    y = apply_whitening(x[:5], mean, proj, dim=4)
    assert y.shape == (5, 4) and np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)
    assert apply_whitening(np.zeros((0, 12)), mean, proj, dim=4).shape == (0, 4)


def test_pairs_seeded():
    labels = np.repeat(np.arange(10), 5)
    assert len(pairs_from_labels(labels)) == 10 * 10
    a, b = pairs_from_labels(labels, 20, seed=3), pairs_from_labels(labels, 20, seed=3)
    assert np.array_equal(a, b) and len(a) == 20 and (labels[a[:, 0]] == labels[a[:, 1]]).all()


def test_bad_input():
    with pytest.raises(DataError):
        learn_supervised_whitening(np.zeros((3, 2)), np.zeros((0, 2)))
    with pytest.raises(ShapeError):
        apply_whitening(np.zeros((2, 3)), np.zeros(4), np.eye(4))
