import numpy as np
import pytest

from relook.errors import ConfigError
from relook.rerank import create_reranker
from relook.rerank.aqe import alpha_qe, dba
from relook.search import exact_search
from relook.store import FeatureStore
from relook.types import ImageFeatures


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _aqe_reference(q, nbrs, alpha):
    """Slow obvious loop: q + sum_i max(q.x_i, 0)^alpha x_i, normalised."""
    out = np.array(q, np.float64)
    for x in nbrs:
        out = out + max(float(np.dot(q, x)), 0.0) ** alpha * np.asarray(x, np.float64)
    return out / np.linalg.norm(out)


def test_matches_reference():
    rng = np.random.default_rng(0)
    q, nb = _unit(rng.normal(size=(4, 8))), _unit(rng.normal(size=(4, 5, 8)))
    nb[:, 0] = _unit(q + 0.1 * rng.normal(size=(4, 8)))
    got = alpha_qe(q, nb, 3.0)
    for i in range(4):
        np.testing.assert_allclose(got[i], _aqe_reference(q[i], nb[i], 3.0), atol=1e-6)
    valid = np.ones((4, 5), bool)
    valid[:, 3:] = False
    np.testing.assert_allclose(alpha_qe(q, nb, 3.0, valid)[1], _aqe_reference(q[1], nb[1, :3], 3.0), atol=1e-6)


def test_dba_matches_reference():
    rng = np.random.default_rng(1)
    g = _unit(rng.normal(size=(30, 6))).astype(np.float32)
    got = dba(g, 3, 3.0)
    for i in range(30):
        sims = g @ g[i]
        sims[i] = -np.inf
        nbrs = np.argsort(-sims, kind="stable")[:3]
        np.testing.assert_allclose(got[i], _aqe_reference(g[i], g[nbrs], 3.0), atol=1e-5)


def _stores(tmp_path, q, g):
    with FeatureStore(tmp_path / "q.h5", "w") as s:
        for i, x in enumerate(q):
            s.write(ImageFeatures(f"q{i}", global_desc=x))
    with FeatureStore(tmp_path / "g.h5", "w") as s:
        for i, x in enumerate(g):
            s.write(ImageFeatures(f"g{i:02d}", global_desc=x))
    return FeatureStore(tmp_path / "q.h5"), FeatureStore(tmp_path / "g.h5")


def test_research_matches_reference(tmp_path):
    rng = np.random.default_rng(2)
    g = _unit(rng.normal(size=(40, 16))).astype(np.float32)
    q = _unit(g[:3] + 0.3 * rng.normal(size=(3, 16))).astype(np.float32)
    qs, gs = _stores(tmp_path, q, g)
    sl = exact_search(q, g, 10, qs.ids(), gs.ids())
    for dba_n in (0, 2):
        out = create_reranker("aqe", n=3, dba_n=dba_n).rerank_shortlist(sl, qs, gs, progress=False)
        gal = dba(g, dba_n) if dba_n else g
        for i in range(3):
            qe = _aqe_reference(q[i], gal[sl.indices[i, :3]], 3.0)
            ref = np.argsort(-(gal @ qe), kind="stable")[:10]
            np.testing.assert_array_equal(out.indices[i], ref)
    shortlist_only = create_reranker("aqe", n=3, research=False).rerank_shortlist(sl, qs, gs, progress=False)
    assert sorted(shortlist_only.indices[0]) == sorted(sl.indices[0])


def test_research_leaves_the_query_out(tmp_path):
    """Queries = gallery: the shortlist left each query out (exclude=self), so the re-search does too."""
    rng = np.random.default_rng(4)
    g = _unit(rng.normal(size=(12, 8))).astype(np.float32)
    with FeatureStore(tmp_path / "g.h5", "w") as s:
        for i, x in enumerate(g):
            s.write(ImageFeatures(f"g{i:02d}", global_desc=x))
    gs = FeatureStore(tmp_path / "g.h5")
    ids = gs.ids()
    sl = exact_search(g, g, 11, ids, ids, exclude=np.arange(12))
    out = create_reranker("aqe", n=2).rerank_shortlist(sl, gs, gs, progress=False)
    for i in range(12):
        others = np.array([j for j in range(12) if j != i])
        qe = _aqe_reference(g[i], g[sl.indices[i, :2]], 3.0)
        ref = others[np.argsort(-(g[others] @ qe), kind="stable")]
        np.testing.assert_array_equal(out.indices[i], ref)  # all 11 others, the query never


def test_rerank_single_query():
    rng = np.random.default_rng(3)
    q = _unit(rng.normal(size=8))
    cands = [ImageFeatures(f"c{i}", global_desc=_unit(rng.normal(size=8))) for i in range(6)]
    gs = np.array([0.1, 0.9, 0.3, 0.8, 0.0, 0.2])
    s = create_reranker("aqe", n=2).rerank(ImageFeatures("q", global_desc=q), cands, gs)
    qe = _aqe_reference(q, [cands[1].global_desc, cands[3].global_desc], 3.0)
    np.testing.assert_allclose(s, [c.global_desc @ qe for c in cands], atol=1e-6)


def test_empty():
    assert alpha_qe(np.ones((2, 3)), np.zeros((2, 0, 3))).shape == (2, 3)
    assert dba(np.ones((1, 3), np.float32), 2).shape == (1, 3)
    assert create_reranker("aqe").rerank(ImageFeatures("q", global_desc=np.ones(3)), [], np.zeros(0)).shape == (0,)


def test_bad_input():
    with pytest.raises(ConfigError):
        create_reranker("aqe", n=-1)


def test_presets_match_reference():
    """rrt-official: k = 2 neighbours, alpha = 0.3 (official RRT evaluation); radenovic: alpha = 3."""
    rng = np.random.default_rng(5)
    q = _unit(rng.normal(size=16))
    cands = [
        ImageFeatures(f"g{i}", global_desc=_unit(q + s * rng.normal(size=16)).astype(np.float32))
        for i, s in enumerate([0.3, 0.5, 0.8, 1.2, 2.0, 3.0])
    ]
    gs = np.array([float(q @ c.global_desc) for c in cands])
    order = np.argsort(-gs)
    x = np.stack([c.global_desc for c in cands]).astype(np.float64)
    for preset, (k, alpha) in (("rrt-official", (2, 0.3)), ("radenovic", (2, 3.0))):
        got = create_reranker("aqe", preset=preset).rerank(ImageFeatures("q", global_desc=q), cands, gs)
        want = x @ _aqe_reference(q, x[order[:k]], alpha)
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert create_reranker("aqe", preset="rrt-official", alpha=1.0).conf["alpha"] == 1.0  # explicit wins
    with pytest.raises(ConfigError):
        create_reranker("aqe", preset="bogus")
