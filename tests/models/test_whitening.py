import numpy as np
import pytest

from relook.errors import DataError, ShapeError
from relook.models.whitening import apply_whitening, learn_pca_whitening, learn_supervised_whitening, pairs_from_labels


def _synthetic(n_classes=150, per_class=4, d=12, seed=0):
    """Class centres + correlated intra-class noise (what supervised whitening must decorrelate)."""
    mix = np.random.default_rng(123).normal(size=(d, d)) * np.linspace(3, 0.2, d)  # same for every draw
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, d)) * 2
    labels = np.repeat(np.arange(n_classes), per_class)
    x = centres[labels] + rng.normal(size=(len(labels), d)) @ mix.T
    return x, labels


def _hand_built_pairs():
    """A 3-D case whose answer is known on paper. Queries q = s*qa[k]*e_k, positives p = q - t*da[j]*e_j over all
    axes k, j and signs s, t (36 pairs, every cross term cancels). Then the intra-pair covariance is
    C_S = diag(da^2) / 3, the mean of the queries is 0, and the covariance of all 72 images is
    diag(2 qa^2 + da^2) / 6, so after C_S-whitening (diag(sqrt(3) / da)) the between-class covariance is
    diag(qa^2 / da^2 + 1/2) = diag(0.75, 9.5, 16.5): axis 3 first, then axis 2, then axis 1."""
    qa, da = np.array([1.0, 3.0, 2.0]), np.array([2.0, 1.0, 0.5])
    eye = np.eye(3)
    qs, ps = [], []
    for k in range(3):
        for j in range(3):
            for s in (1, -1):
                for t in (1, -1):
                    q = s * qa[k] * eye[k]
                    qs.append(q)
                    ps.append(q - t * da[j] * eye[j])
    x = np.concatenate([qs, ps])
    n = len(qs)
    pairs = np.stack([np.arange(n), np.arange(n) + n], axis=1)
    return x, pairs, qa, da


def test_supervised_hand_built_case():
    """Against the paper answer of _hand_built_pairs, not against a re-derivation of the code: P C_S P^T = I
    with C_S known analytically, and the rows are, up to sign, exactly the whitened axes 3, 2, 1 (largest
    between-class variance first). `P^T P = C_S^-1` alone holds for any rotation of P, so it is not enough."""
    x, pairs, qa, da = _hand_built_pairs()
    mean, proj = learn_supervised_whitening(x, pairs, eps=0.0)
    proj = proj.astype(np.float64)
    c_s = np.diag(da**2) / 3
    np.testing.assert_allclose(proj @ c_s @ proj.T, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(mean, 0, atol=1e-6)
    expected = np.zeros((3, 3))
    for row, axis in enumerate([2, 1, 0]):
        expected[row, axis] = np.sqrt(3) / da[axis]
    np.testing.assert_allclose(np.abs(proj), expected, atol=1e-5)
    between = ((x - mean) @ proj.T).var(0)  # every whitening image, mean 0
    np.testing.assert_allclose(between, np.sort(qa**2 / da**2 + 0.5)[::-1], rtol=1e-5)


def _reference_whitening(x, qidx, pidx):
    """The cited learned whitening, written column-wise from its description: descriptors are the columns of
    X (D, N); m = mean of the query columns; S = covariance of query - positive differences; P = S^{-1/2};
    rotation = eigenvectors of P (X - m) (X - m)^T P^T over ALL columns, largest eigenvalue first."""
    X = x.T
    m = X[:, qidx].mean(axis=1, keepdims=True)
    df = X[:, qidx] - X[:, pidx]
    S = df @ df.T / df.shape[1]
    w, v = np.linalg.eigh(S)
    P = v @ np.diag(w**-0.5) @ v.T  # symmetric inverse square root (any S^{-1/2} gives the same result)
    Y = P @ (X - m)
    val, vec = np.linalg.eig(Y @ Y.T)
    order = np.argsort(val.real)[::-1]
    return m[:, 0], vec.real[:, order].T @ P


def test_matches_cited_method_truncated():
    """Whitened, truncated (4 of 12 dims) descriptors equal the reference's up to the sign of each axis; the
    whitening images include many that are in no pair, so the rotation must use all of them."""
    x, labels = _synthetic(n_classes=60, per_class=4)
    rng = np.random.default_rng(5)
    extra = rng.normal(size=(300, x.shape[1])) * np.linspace(0.3, 4, x.shape[1])  # unpaired images
    x_all = np.concatenate([x, extra])
    pairs = pairs_from_labels(labels)[::3]
    mean, proj = learn_supervised_whitening(x_all, pairs, eps=0.0)
    ref_mean, ref_proj = _reference_whitening(x_all, pairs[:, 0], pairs[:, 1])
    got = apply_whitening(x_all, mean, proj, dim=4, normalize=False).astype(np.float64)
    ref = (x_all - ref_mean) @ ref_proj[:4].T
    signs = np.sign((got * ref).sum(0))
    np.testing.assert_allclose(got * signs, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


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


def test_pca_against_sklearn():
    """Rows of the PCA whitening equal sklearn's PCA(whiten=True) components scaled by 1/sqrt(variance), up to the
    sign of each row, in sklearn's (decreasing explained variance) order: the first output dim is the
    largest-variance direction. sklearn divides by N-1, we by N."""
    from sklearn.decomposition import PCA

    x, _ = _synthetic()
    n = len(x)
    mean, proj = learn_pca_whitening(x, eps=0.0)
    proj = proj.astype(np.float64)
    pca = PCA(whiten=True, svd_solver="full").fit(x)
    var_biased = pca.explained_variance_ * (n - 1) / n
    assert np.all(np.diff(var_biased) < 0)  # distinct variances, so the order is well defined
    ref = pca.components_ / np.sqrt(var_biased)[:, None]
    signs = np.sign((proj * ref).sum(1, keepdims=True))
    np.testing.assert_allclose(proj * signs, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    np.testing.assert_allclose(mean, pca.mean_, atol=1e-5)
    y_ref = pca.transform(x) * np.sqrt(n / (n - 1))
    y = (x - mean) @ proj.T
    np.testing.assert_allclose(y * signs[:, 0], y_ref, atol=1e-3)


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


def test_cli_uses_official_pairs(tmp_path):
    """`relook train dtop-whitening` on SfM-120k learns from its official (query, positive) pairs and rotates
    over all its images: here every image shares one cluster, so same-label pairs would be all 6*5/2 pairs."""
    import pickle

    from relook.cli import main
    from relook.models.whitening import load_whitening
    from relook.store import FeatureStore
    from relook.types import ImageFeatures

    cids = [f"{i:02d}aabbccddee" for i in range(6)]
    db = {"train": {"cids": cids, "cluster": [0] * 6, "qidxs": [0, 2, 4], "pidxs": [1, 3, 5], "bbxs": [None] * 3}}
    root = tmp_path / "sfm"
    root.mkdir()
    with open(root / "retrieval-SfM-120k.pkl", "wb") as f:
        pickle.dump(db, f)
    (root / "ims").mkdir()
    x = np.random.default_rng(0).normal(size=(6, 2))
    with FeatureStore(tmp_path / "train.h5", "w") as s:
        s.write_many([ImageFeatures(c, global_desc=x[i].astype(np.float32)) for i, c in enumerate(cids)])
    out = tmp_path / "w.npz"
    assert (
        main(
            [
                "train",
                "dtop-whitening",
                str(tmp_path / "train.h5"),
                "--dataset",
                "sfm120k",
                "--root",
                str(root),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    mean, proj = load_whitening(out)
    x32 = x.astype(np.float32).astype(np.float64)
    ref_mean, ref_proj = _reference_whitening(x32, [0, 2, 4], [1, 3, 5])
    got, ref = (x32 - mean) @ proj.T.astype(np.float64), (x32 - ref_mean) @ ref_proj.T
    np.testing.assert_allclose(got * np.sign((got * ref).sum(0)), ref, rtol=1e-3, atol=1e-3)
