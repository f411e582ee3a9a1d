"""The contract every reranker of this family meets (parametrised over the registry names)."""

import numpy as np
import pytest

from relook.rerank import create_reranker, list_rerankers
from relook.search import exact_search
from relook.store import FeatureStore
from relook.types import ImageFeatures, Shortlist

#: small configurations so that every reranker runs on a tiny gallery
CONFS = {
    "gv": {"threshold": 3.0},
    "aqe": {"n": 2},
    "asmk": {"codebook_size": 32},
    "chamfer": {"weight": 4.0},  # random global descriptors here: the planted tokens must outweigh them
}
NAMES = sorted(CONFS)


def _image(image_id, rng, base=None, n=60):
    desc = rng.normal(size=(n, 32)).astype(np.float32)
    kp = rng.uniform(0, 200, (n, 2)).astype(np.float32)
    if base is not None:  # share half of the features with a rigid shift of their keypoints
        desc[: n // 2] = base.local_desc[: n // 2] + 0.01 * rng.normal(size=(n // 2, 32))
        kp[: n // 2] = base.keypoints[: n // 2] + np.float32([7, -3])
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    g = rng.normal(size=16).astype(np.float32)
    return ImageFeatures(
        image_id,
        global_desc=g / np.linalg.norm(g),
        local_desc=desc,
        keypoints=kp,
        attention=rng.uniform(size=n).astype(np.float32),
        scales=np.ones(n, np.float32),
    )


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("contract")
    queries = [_image(f"q{i}", rng) for i in range(3)]
    gallery = [_image(f"g{i:02d}", rng, queries[i % 3] if i < 6 else None) for i in range(12)]
    empty = ImageFeatures(
        "q_empty",
        global_desc=queries[0].global_desc,
        local_desc=np.zeros((0, 32)),
        keypoints=np.zeros((0, 2)),
        attention=np.zeros(0),
        scales=np.zeros(0),
    )
    with FeatureStore(root / "q.h5", "w") as s:
        s.write_many(queries + [empty])
    with FeatureStore(root / "g.h5", "w") as s:
        s.write_many(gallery)
    qs, gs = FeatureStore(root / "q.h5"), FeatureStore(root / "g.h5")
    shortlist = exact_search(qs.stack("global_desc"), gs.stack("global_desc"), 12, qs.ids(), gs.ids())
    yield qs, gs, shortlist
    qs.close()
    gs.close()


def test_registered():
    assert set(NAMES) <= set(list_rerankers())


@pytest.mark.parametrize("name", NAMES)
def test_permutation_no_nan_seeded(name, stores):
    qs, gs, shortlist = stores
    for top_k in (100, 5):
        out = create_reranker(name, top_k=top_k, **CONFS[name]).rerank_shortlist(shortlist, qs, gs, progress=False)
        again = create_reranker(name, top_k=top_k, **CONFS[name]).rerank_shortlist(shortlist, qs, gs, progress=False)
        assert out.indices.shape == shortlist.indices.shape
        assert np.isfinite(out.scores).all()
        for q in range(shortlist.num_queries):
            assert sorted(out.indices[q]) == sorted(shortlist.indices[q])  # K = whole gallery here
            assert np.all(np.diff(out.scores[q]) <= 1e-6)
        np.testing.assert_array_equal(out.indices, again.indices)
        np.testing.assert_array_equal(out.scores, again.scores)
        if top_k == 5 and name != "aqe":  # only the head is reordered
            np.testing.assert_array_equal(out.indices[:, 5:], shortlist.indices[:, 5:])


@pytest.mark.parametrize("name", NAMES)
def test_improves_planted_matches(name, stores):
    qs, gs, shortlist = stores
    if name == "aqe":
        pytest.skip("aqe works on global descriptors, which are random here")
    out = create_reranker(name, **CONFS[name]).rerank_shortlist(shortlist, qs, gs, progress=False)
    for q in range(3):  # gallery images q, q+3 share features with query q
        assert set(out.indices[q, :2].tolist()) == {q, q + 3}


@pytest.mark.parametrize("name", NAMES)
def test_empty(name, stores):
    qs, gs, shortlist = stores
    r = create_reranker(name, **CONFS[name])
    none = Shortlist([], shortlist.gallery_ids, np.zeros((0, 4), np.int64), np.zeros((0, 4), np.float32))
    assert r.rerank_shortlist(none, qs, gs, progress=False).indices.shape == (0, 4)
    zero_k = shortlist.topk(0)
    assert r.rerank_shortlist(zero_k, qs, gs, progress=False).indices.shape == (shortlist.num_queries, 0)
    out = r.rerank_shortlist(shortlist, qs, gs, progress=False)
    assert np.isfinite(out.scores[qs.ids().index("q_empty")]).all()
