import numpy as np
import pytest

from relook.asmk import AsmkIndex, aggregate, asmk_similarity, assign, binarize, selectivity, train_codebook
from relook.errors import ConfigError
from relook.rerank import create_reranker
from relook.types import ImageFeatures


def _slow_asmk(x, y, centroids, binary, alpha=3.0, tau=0.0, ma_x=1):
    """Obvious implementation: loops and dicts, straight from the ASMK definitions."""

    def words_of(desc, ma):
        out = {}
        for v in desc:
            d = ((centroids - v) ** 2).sum(1)
            for c in np.argsort(d, kind="stable")[:ma]:
                out.setdefault(int(c), []).append(v - centroids[c])
        agg = {}
        for c, res in out.items():
            s = np.sum(res, axis=0)
            s = s / np.linalg.norm(s)
            agg[c] = np.where(s > 0, 1.0, -1.0) / np.sqrt(len(s)) if binary else s
        return agg

    def sig(u):
        return np.sign(u) * abs(u) ** alpha if u > tau else 0.0

    ax, ay = words_of(x, ma_x), words_of(y, 1)
    k = sum(sig(float(ax[c] @ ay[c])) for c in ax if c in ay)
    gx = sum(sig(float(v @ v)) for v in ax.values()) ** -0.5
    gy = sum(sig(float(v @ v)) for v in ay.values()) ** -0.5
    return k * gx * gy


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(12, 10)).astype(np.float32)
    images = [rng.normal(size=(n, 10)).astype(np.float32) for n in (30, 25, 40, 5, 33)]
    images[1][:15] = images[0][:15] + 0.05 * rng.normal(size=(15, 10))
    return centroids, images


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize("ma", [1, 3])
def test_matches_reference(data, binary, ma):
    centroids, images = data
    index = AsmkIndex.build(centroids, images, binary=binary)
    q = images[0]
    words, vecs = index.encode(q, ma)
    got = index.scores(words, vecs)
    ref = [_slow_asmk(q, g, centroids, binary, ma_x=ma) for g in images]
    np.testing.assert_allclose(got, ref, atol=1e-9 if binary else 1e-6)
    wy, agg = aggregate(images[2], assign(images[2], centroids), centroids)
    vy = binarize(agg) if binary else agg
    pair = asmk_similarity(words, vecs, wy, vy, 10, binary)
    np.testing.assert_allclose(pair, ref[2], atol=1e-9 if binary else 1e-6)
    if ma == 1:
        np.testing.assert_allclose(got[0], 1.0, atol=1e-6)  # gamma normalises self-similarity


def test_selectivity_hand_case():
    np.testing.assert_allclose(selectivity(np.array([-0.5, 0.0, 0.5, 1.0])), [0, 0, 0.125, 1.0])
    np.testing.assert_allclose(selectivity(np.array([0.2, 0.6]), alpha=1, tau=0.5), [0, 0.6])


def test_codebook_seeded(data):
    descs = np.concatenate(data[1])
    c1, c2 = train_codebook(descs, 8, seed=1), train_codebook(descs, 8, seed=1)
    np.testing.assert_array_equal(c1, c2)
    assert assign(descs[:4], c1, 3).shape == (4, 3)
    with pytest.raises(ConfigError, match="codebook_size"):
        train_codebook(descs[:5], 8)


def test_rerank_ranks_shared_descriptors_first(data):
    centroids, images = data
    r = create_reranker("asmk", codebook_size=12).fit(np.concatenate(images))
    near_dup = images[0] + 0.01 * np.random.default_rng(5).normal(size=images[0].shape).astype(np.float32)
    feats = [ImageFeatures(f"i{k}", local_desc=x, attention=np.ones(len(x))) for k, x in enumerate(images)]
    feats[1] = ImageFeatures("dup", local_desc=near_dup, attention=np.ones(len(near_dup)))
    s = r.rerank(feats[0], feats[1:], np.zeros(4))
    assert np.argmax(s) == 0 and np.isfinite(s).all()


def test_empty(data):
    centroids, images = data
    index = AsmkIndex.build(centroids, [images[0], np.zeros((0, 10), np.float32)])
    assert index.scores(*index.encode(np.zeros((0, 10)), 5)).tolist() == [0.0, 0.0]
    assert index.scores(*index.encode(images[0], 1))[1] == 0.0
    assert AsmkIndex.build(centroids, []).scores(*index.encode(images[0])).shape == (0,)


def test_bad_input():
    r = create_reranker("asmk")
    f = ImageFeatures("a", local_desc=np.ones((3, 4)), attention=np.ones(3))
    with pytest.raises(ConfigError, match="codebook"):
        r.rerank(f, [f], np.zeros(1))
