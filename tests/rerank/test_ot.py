"""The `ot` reranker: per-pair scores vs POT, batched shortlist path vs the per-query loop, contract."""

import numpy as np
import ot
import pytest

from relook.errors import ConfigError, DataError
from relook.rerank import create_reranker
from relook.rerank.base import Reranker
from relook.store import FeatureStore
from relook.types import ImageFeatures, Shortlist


def _feats(image_id, rng, h=3, w=3, c=8):
    tok = rng.normal(size=(h, w, c)).astype(np.float32)
    g = tok.reshape(-1, c).mean(0) + 0.1 * rng.normal(size=c)
    rel = rng.random(h * w) + 0.05
    return ImageFeatures(
        image_id,
        global_desc=(g / np.linalg.norm(g)).astype(np.float32),
        patch_tokens=tok,
        relevancy=(rel / rel.sum()).astype(np.float32),
    )


def _stores(tmp_path, nq=3, ng=6, seed=0):
    rng = np.random.default_rng(seed)
    qs, gs = [_feats(f"q{i}", rng) for i in range(nq)], [_feats(f"g{i}", rng) for i in range(ng)]
    with FeatureStore(tmp_path / "q.h5", "w") as s:
        s.write_many(qs)
    with FeatureStore(tmp_path / "g.h5", "w") as s:
        s.write_many(gs)
    glob = np.stack([f.global_desc for f in qs]) @ np.stack([f.global_desc for f in gs]).T
    order = np.argsort(-glob, axis=1)[:, :5]
    short = Shortlist([f.image_id for f in qs], [f.image_id for f in gs], order, np.take_along_axis(glob, order, 1))
    return qs, gs, short


def _pot_score(q, g, marginal, mass, eps=0.05, iters=100):
    fq = q.patch_tokens.reshape(-1, q.patch_tokens.shape[-1]).astype(np.float64)
    fg = g.patch_tokens.reshape(-1, g.patch_tokens.shape[-1]).astype(np.float64)
    fq /= np.linalg.norm(fq, axis=1, keepdims=True)
    fg /= np.linalg.norm(fg, axis=1, keepdims=True)
    sim = fq @ fg.T
    if marginal == "uniform":
        a, b = np.full(len(fq), 1 / len(fq)), np.full(len(fg), 1 / len(fg))
    elif marginal == "cross":
        a, b = np.maximum(fq @ g.global_desc, 0), np.maximum(fg @ q.global_desc, 0)
        a, b = a / a.sum(), b / b.sum()
    else:
        a, b = q.relevancy.astype(np.float64), g.relevancy.astype(np.float64)
        a, b = a / a.sum(), b / b.sum()
    cost = 1 - sim
    if mass < 1:
        cost = np.pad(cost, ((0, 1), (0, 1)))
        cost[-1, -1] = 1e4
        a, b = np.append(a, 1 - mass), np.append(b, 1 - mass)
    plan = np.zeros_like(cost)  # POT divides by the marginals: solve on their support only
    ia, ib = np.flatnonzero(a > 0), np.flatnonzero(b > 0)
    plan[np.ix_(ia, ib)] = ot.sinkhorn(a[ia], b[ib], cost[np.ix_(ia, ib)], eps, numItermax=iters, stopThr=0.0)
    if mass < 1:
        plan = plan[:-1, :-1]
    return float((sim * plan).sum())


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
@pytest.mark.parametrize("marginal,mass", [("uniform", 1.0), ("cross", 0.9), ("relevancy", 0.7)])
def test_matches_reference(tmp_path, marginal, mass):
    qs, gs, _ = _stores(tmp_path)
    rr = create_reranker("ot", marginal=marginal, partial=mass, dtype="float64")
    got = rr.rerank(qs[0], gs, np.zeros(len(gs)))
    ref = [_pot_score(qs[0], g, marginal, mass) for g in gs]
    np.testing.assert_allclose(got, ref, atol=1e-5)


@pytest.mark.parametrize("marginal", ["uniform", "cross", "relevancy"])
def test_batched_equals_loop(tmp_path, marginal):
    _, _, short = _stores(tmp_path)
    rr = create_reranker("ot", marginal=marginal, top_k=4, dtype="float64", batch_pairs=5)
    with FeatureStore(tmp_path / "q.h5") as qs, FeatureStore(tmp_path / "g.h5") as gs:
        fast = rr.rerank_shortlist(short, qs, gs, progress=False)
        slow = Reranker.rerank_shortlist(rr, short, qs, gs, progress=False)
    np.testing.assert_array_equal(fast.indices, slow.indices)
    np.testing.assert_allclose(fast.scores, slow.scores, atol=1e-6)
    for q in range(short.num_queries):  # a permutation of the shortlist, tail untouched
        assert sorted(fast.indices[q, :4]) == sorted(short.indices[q, :4])
        assert fast.indices[q, 4] == short.indices[q, 4]


def test_self_match_scores_highest():
    rng = np.random.default_rng(1)
    q = _feats("q", rng)
    same = ImageFeatures(
        "same", global_desc=q.global_desc, patch_tokens=q.patch_tokens[::-1].copy(), relevancy=q.relevancy
    )  # same patches, rearranged: OT still matches them
    others = [_feats(f"g{i}", rng) for i in range(4)]
    scores = create_reranker("ot", marginal="uniform", partial=1.0).explain(q, [same, *others])["score"]
    assert scores.argmax() == 0 and scores[0] > 0.9


def test_empty(tmp_path):
    _, _, short = _stores(tmp_path)
    empty = Shortlist(short.query_ids, short.gallery_ids, -np.ones((3, 5), int), np.zeros((3, 5)))
    with FeatureStore(tmp_path / "q.h5") as qs, FeatureStore(tmp_path / "g.h5") as gs:
        out = create_reranker("ot").rerank_shortlist(empty, qs, gs, progress=False)
    np.testing.assert_array_equal(out.indices, empty.indices)
    assert create_reranker("ot").rerank(_feats("q", np.random.default_rng(0)), [], np.zeros(0)).shape == (0,)


def test_bad_input(tmp_path):
    with pytest.raises(ConfigError):
        create_reranker("ot", marginal="attention")
    with pytest.raises(ConfigError):
        create_reranker("ot", partial=1.5)
    rng = np.random.default_rng(0)
    bare = ImageFeatures("x", global_desc=np.ones(8, np.float32), patch_tokens=rng.random((3, 3, 8)))
    with pytest.raises(DataError):
        create_reranker("ot", marginal="relevancy").rerank(bare, [bare], np.zeros(1))
    assert "relevancy" in create_reranker("ot", marginal="relevancy").requires
    assert "relevancy" not in create_reranker("ot", marginal="uniform").requires


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_default_is_standard_ot(tmp_path):
    """The paper's default is standard OT (a = 1, Tables 1-2): a reranker built without ``partial`` moves the
    whole unit mass and scores every pair as POT's full entropic OT does."""
    qs, gs, _ = _stores(tmp_path)
    rr = create_reranker("ot", marginal="uniform", dtype="float64")
    out = rr.explain(qs[0], gs)
    np.testing.assert_allclose(out["plan"].sum((1, 2)), 1.0, atol=1e-6)
    np.testing.assert_allclose(out["score"], [_pot_score(qs[0], g, "uniform", 1.0) for g in gs], atol=1e-5)


def test_paper_configs():
    """configs/ot_{cub,cars,sop}.yaml hold the paper's settings: CvT-13, K = 100, h = w = 7, D = 128, the three
    marginals of Table 2 at a = 1 on every dataset, and a = 0.9 added on SOP only (Fig. 3)."""
    from pathlib import Path

    from relook.experiment import load_config

    root = Path(__file__).resolve().parents[2] / "configs"
    for ds in ("cub", "cars", "sop"):
        conf = load_config([root / f"ot_{ds}.yaml"], [])
        assert conf["dataset"]["name"] == ds and conf["dataset"]["split"] == "test"
        (ext,) = conf["extractors"]
        assert (ext["grid"], ext["dim"], ext["image_size"]) == (7, 128, 224)
        assert (ext["backbone"], ext["pretrained"]) == ("cvt13", True)  # Table 2's CvT-13, real weights
        ots = [r for r in conf["rerankers"] if r["name"] == "ot"]
        assert all(r["top_k"] == 100 for r in ots)
        full = {r["marginal"] for r in ots if r["partial"] == 1.0}
        assert full == {"uniform", "cross", "relevancy"}
        assert sorted(r["partial"] for r in ots if r["partial"] != 1.0) == ([0.9] if ds == "sop" else [])


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
def test_final_score_is_global_plus_struct(tmp_path):
    """The reordering score is S_global + S_struct, each computed here independently: S_global as the cosine of
    the two global descriptors, S_struct by POT. Dropping, doubling or replacing either part fails."""
    qs, gs, short = _stores(tmp_path)
    rr = create_reranker("ot", marginal="relevancy", top_k=5, dtype="float64")
    with FeatureStore(tmp_path / "q.h5") as qstore, FeatureStore(tmp_path / "g.h5") as gstore:
        ranking = rr.rerank_shortlist(short, qstore, gstore, progress=False)
    globals_seen = []
    for q, query in enumerate(qs):
        for pos in range(5):
            g = gs[ranking.indices[q, pos]]
            s_global = float(np.dot(query.global_desc.astype(np.float64), g.global_desc))
            globals_seen.append(s_global)
            expected = s_global + _pot_score(query, g, "relevancy", 1.0)
            assert ranking.scores[q, pos] == pytest.approx(expected, abs=1e-5)
    assert np.abs(globals_seen).max() > 0.3  # S_global is far from 0 here: dropping it shows
    one = rr.rerank(qs[0], gs, np.full(len(gs), 0.25))  # the per-query path adds what it is given
    np.testing.assert_allclose(one, [0.25 + _pot_score(qs[0], g, "relevancy", 1.0) for g in gs], atol=1e-5)


def test_struct_weight_and_chamfer(tmp_path):
    """``struct_weight`` scales S_struct only; ``structure: chamfer`` is the mean best-match cosine both ways
    (a loop here)."""
    qs, gs, _ = _stores(tmp_path)
    full = create_reranker("ot", marginal="uniform", dtype="float64").rerank(qs[0], gs, np.ones(len(gs)))
    half = create_reranker("ot", marginal="uniform", dtype="float64", struct_weight=0.5)
    np.testing.assert_allclose(half.rerank(qs[0], gs, np.ones(len(gs))), 1 + 0.5 * (full - 1), atol=1e-9)
    cham = create_reranker("ot", structure="chamfer", dtype="float64").rerank(qs[0], gs, np.zeros(len(gs)))
    for got, g in zip(cham, gs):
        a = qs[0].patch_tokens.reshape(9, -1).astype(np.float64)
        b = g.patch_tokens.reshape(9, -1).astype(np.float64)
        sim = [[np.dot(x, y) / np.linalg.norm(x) / np.linalg.norm(y) for y in b] for x in a]
        ref = 0.5 * (np.mean([max(r) for r in sim]) + np.mean([max(c) for c in zip(*sim)]))
        assert got == pytest.approx(ref, abs=1e-9)
    with pytest.raises(ConfigError, match="structure"):
        create_reranker("ot", structure="emd")


def test_shuffled_tokens_control(tmp_path):
    """OT with uniform marginals ignores where tokens sit (a permutation of the tokens permutes the plan), so
    shuffling leaves its score unchanged; with the relevancy marginal (tied to positions) it changes it.
    The permutation is seeded and per image."""
    qs, gs, _ = _stores(tmp_path)
    zeros = np.zeros(len(gs))

    def score(marginal, shuffle):
        rr = create_reranker("ot", marginal=marginal, dtype="float64", shuffle_tokens=shuffle)
        return rr.rerank(qs[0], gs, zeros)

    np.testing.assert_allclose(score("uniform", 3), score("uniform", None), atol=1e-9)
    assert np.abs(score("relevancy", 3) - score("relevancy", None)).max() > 1e-3
    np.testing.assert_array_equal(score("relevancy", 3), score("relevancy", 3))
