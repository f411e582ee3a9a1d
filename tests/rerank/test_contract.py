"""The contract every reranker of this family meets (parametrised over the registry names)."""

import numpy as np
import pytest
import torch

from relook.models.rrt.model import RRT
from relook.rerank import RERANKERS, create_reranker, list_rerankers
from relook.search import exact_search
from relook.store import FeatureStore
from relook.types import ImageFeatures, Shortlist

#: small configurations so that every reranker runs on a tiny gallery
CONFS = {
    "gv": {"threshold": 3.0},
    "aqe": {"n": 2},
    "asmk": {"codebook_size": 32},
    "ot": {"marginal": "uniform"},
    "chamfer": {"weight": 4.0},  # random global descriptors here: the planted tokens must outweigh them
}
#: every registered reranker, so a new one (yours: README "Add your own reranker") meets the contract too;
#: test doubles that other test modules register (e.g. tests/test_pipeline.py's toy_reverse, which ranks
#: backwards on purpose) are left out, so the set does not depend on which modules were collected first
NAMES = [n for n in list_rerankers() if not RERANKERS.get(n).__module__.startswith("tests")]
#: learned rerankers whose weights here are a seeded random init: contract only, no planted-match claim
RANDOM_WEIGHTS = {"rrt"}


def _create(name: str, **conf):
    """The reranker ``name``: rrt with a small seeded random model on the 32-d locals, others by config."""
    if name == "rrt":
        torch.manual_seed(0)
        model = RRT(num_layers=1, dim_feedforward=32, d_local=32, max_locals=60, input="keypoints").eval()
        return create_reranker("rrt", model=model, **conf)
    return create_reranker(name, **{**CONFS.get(name, {}), **conf})


def _image(image_id, rng, base=None, n=60):
    desc = rng.normal(size=(n, 32)).astype(np.float32)
    kp = rng.uniform(0, 200, (n, 2)).astype(np.float32)
    if base is not None:  # share half of the features with a rigid shift of their keypoints
        desc[: n // 2] = base.local_desc[: n // 2] + 0.01 * rng.normal(size=(n // 2, 32))
        kp[: n // 2] = base.keypoints[: n // 2] + np.float32([7, -3])
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    g = rng.normal(size=16).astype(np.float32)
    extra = np.random.default_rng(list(image_id.encode()))  # patch tokens (ot) from a stream of their own
    tokens = extra.normal(size=(49, 32)).astype(np.float32)  # a 7x7 patch-token grid
    if base is not None:  # half the tokens shared; the global stays random, so the shortlist knows nothing
        tokens[:24] = base.patch_tokens.reshape(49, 32)[:24] + 0.01 * extra.normal(size=(24, 32))
    return ImageFeatures(
        image_id,
        global_desc=g / np.linalg.norm(g),
        local_desc=desc,
        keypoints=kp,
        attention=rng.uniform(size=n).astype(np.float32),
        scales=np.ones(n, np.float32),
        patch_tokens=tokens.reshape(7, 7, 32),
        relevancy=np.full(49, 1 / 49, np.float32),
        image_size=np.array([200, 200]),
    )


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    qs, gs, shortlist = make_stores(tmp_path_factory.mktemp("contract"))
    yield qs, gs, shortlist
    qs.close()
    gs.close()


def make_stores(root):
    """Query and gallery stores of planted pairs (gallery q and q+3 share half their features with query q)
    plus a query without locals, and their global shortlist (the whole gallery)."""
    rng = np.random.default_rng(0)
    queries = [_image(f"q{i}", rng) for i in range(3)]
    gallery = [_image(f"g{i:02d}", rng, queries[i % 3] if i < 6 else None) for i in range(12)]
    empty = ImageFeatures(
        "q_empty",
        global_desc=queries[0].global_desc,
        local_desc=np.zeros((0, 32)),
        keypoints=np.zeros((0, 2)),
        attention=np.zeros(0),
        scales=np.zeros(0),
        patch_tokens=queries[0].patch_tokens,
        relevancy=queries[0].relevancy,
        image_size=np.array([200, 200]),
    )
    with FeatureStore(root / "q.h5", "w") as s:
        s.write_many(queries + [empty])
    with FeatureStore(root / "g.h5", "w") as s:
        s.write_many(gallery)
    qs, gs = FeatureStore(root / "q.h5"), FeatureStore(root / "g.h5")
    shortlist = exact_search(qs.stack("global_desc"), gs.stack("global_desc"), 12, qs.ids(), gs.ids())
    return qs, gs, shortlist


def test_registered():
    assert {"gv", "aqe", "asmk", "rrt", "ot"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_permutation_no_nan_seeded(name, stores):
    check_permutation_no_nan_seeded(_create, name, stores)


def check_permutation_no_nan_seeded(create, name, stores):
    """A permutation of the shortlist, scores finite and descending, the same twice, only the head reordered."""
    qs, gs, shortlist = stores
    for top_k in (100, 5):
        out = create(name, top_k=top_k).rerank_shortlist(shortlist, qs, gs, progress=False)
        again = create(name, top_k=top_k).rerank_shortlist(shortlist, qs, gs, progress=False)
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
    if name in ("aqe", "ot"):
        pytest.skip(f"{name}'s score is or adds the global similarity, random here (tests/rerank/test_{name}.py)")
    if name in RANDOM_WEIGHTS:
        pytest.skip(f"{name} has seeded random weights here: the contract holds, its scores mean nothing")
    out = _create(name).rerank_shortlist(shortlist, qs, gs, progress=False)
    for q in range(3):  # gallery images q, q+3 share features with query q
        assert set(out.indices[q, :2].tolist()) == {q, q + 3}


@pytest.mark.parametrize("name", NAMES)
def test_empty(name, stores):
    check_empty(_create, name, stores)


def check_empty(create, name, stores):
    """No query, k = 0 and a query without locals give shaped results and finite scores."""
    qs, gs, shortlist = stores
    r = create(name)
    none = Shortlist([], shortlist.gallery_ids, np.zeros((0, 4), np.int64), np.zeros((0, 4), np.float32))
    assert r.rerank_shortlist(none, qs, gs, progress=False).indices.shape == (0, 4)
    zero_k = shortlist.topk(0)
    assert r.rerank_shortlist(zero_k, qs, gs, progress=False).indices.shape == (shortlist.num_queries, 0)
    out = r.rerank_shortlist(shortlist, qs, gs, progress=False)
    assert np.isfinite(out.scores[qs.ids().index("q_empty")]).all()
