"""chamfer reranker against a slow obvious loop; weights, directions, empty and bad input."""

import numpy as np
import pytest

from relook.errors import ConfigError, ShapeError
from relook.rerank import create_reranker
from relook.rerank.chamfer import chamfer_similarity
from relook.types import ImageFeatures


def _slow(q, c, symmetric=True):
    """Chamfer similarity by plain loops over token pairs (cosine written out)."""

    def cos(x, y):
        return sum(a * b for a, b in zip(x, y)) / (sum(a * a for a in x) ** 0.5 * sum(b * b for b in y) ** 0.5)

    fwd = sum(max(cos(a, b) for b in c) for a in q) / len(q)
    bwd = sum(max(cos(a, b) for a in q) for b in c) / len(c)
    return (fwd + bwd) / 2 if symmetric else fwd


def _feat(i, desc, g):
    return ImageFeatures(f"i{i}", global_desc=g, local_desc=desc)


@pytest.mark.parametrize("symmetric", [True, False])
def test_matches_reference(symmetric):
    rng = np.random.default_rng(0)
    q = rng.normal(size=(7, 5))
    cands = [rng.normal(size=(m, 5)) * rng.uniform(0.5, 3) for m in (3, 9, 1)]
    got = chamfer_similarity(q, cands, symmetric)
    want = [_slow(q.tolist(), c.tolist(), symmetric) for c in cands]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_score_is_global_plus_weighted_chamfer():
    rng = np.random.default_rng(1)
    g = rng.normal(size=(5, 8)).astype(np.float32)
    q = _feat(0, rng.normal(size=(6, 4)).astype(np.float32), g[0])
    cands = [_feat(i, rng.normal(size=(4, 4)).astype(np.float32), g[i]) for i in range(1, 5)]
    glob = rng.uniform(size=4)
    for w in (0.0, 1.0, 2.5):
        got = create_reranker("chamfer", weight=w).rerank(q, cands, glob)
        want = [glob[k] + w * _slow(q.local_desc.tolist(), c.local_desc.tolist()) for k, c in enumerate(cands)]
        np.testing.assert_allclose(got, want, rtol=1e-5)


def test_symmetric_differs_from_one_direction():
    q = np.eye(3)[:1]  # one token e0
    c = np.eye(3)  # e0, e1, e2: contains the query's token and more
    assert chamfer_similarity(q, [c], symmetric=False)[0] == pytest.approx(1.0)
    assert chamfer_similarity(q, [c], symmetric=True)[0] == pytest.approx((1.0 + 1 / 3) / 2)


def test_empty():
    q = np.ones((3, 4))
    np.testing.assert_array_equal(chamfer_similarity(q, [np.zeros((0, 4)), q]), [0.0, 1.0])
    assert chamfer_similarity(np.zeros((0, 4)), [q]).tolist() == [0.0]
    r = create_reranker("chamfer")
    assert r.rerank(_feat(0, q, np.ones(2)), [], np.zeros(0)).shape == (0,)


def test_bad_input():
    with pytest.raises(ConfigError):
        create_reranker("chamfer", weight=-1.0)
    with pytest.raises(ShapeError):
        chamfer_similarity(np.ones((3, 4)), [np.ones((2, 5))])


def test_shortlist_path_matches_per_query_path(tmp_path):
    from relook.rerank.base import Reranker
    from relook.search import exact_search
    from relook.store import FeatureStore

    rng = np.random.default_rng(2)

    def feats(prefix, n):
        out = []
        for i in range(n):
            g = rng.normal(size=8).astype(np.float32)
            desc = rng.normal(size=(int(rng.integers(1, 6)), 4)).astype(np.float32)
            out.append(ImageFeatures(f"{prefix}{i}", global_desc=g / np.linalg.norm(g), local_desc=desc))
        return out

    with FeatureStore(tmp_path / "q.h5", "w") as s:
        s.write_many(feats("q", 4))
    with FeatureStore(tmp_path / "g.h5", "w") as s:
        s.write_many(feats("g", 9))
    with FeatureStore(tmp_path / "q.h5") as qs, FeatureStore(tmp_path / "g.h5") as gs:
        sl = exact_search(qs.stack("global_desc"), gs.stack("global_desc"), 9, qs.ids(), gs.ids())
        r = create_reranker("chamfer", weight=2.0, top_k=6)
        fast = r.rerank_shortlist(sl, qs, gs, progress=False)
        slow = Reranker.rerank_shortlist(r, sl, qs, gs, progress=False)
    np.testing.assert_array_equal(fast.indices, slow.indices)
    np.testing.assert_allclose(fast.scores, slow.scores, rtol=1e-6)
