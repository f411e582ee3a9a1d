"""rrt reranker: batched scores equal the per-pair model, shortlist contract, combination, errors."""
import numpy as np
import pytest
import torch

from relook.errors import ConfigError
from relook.models.rrt import RRT
from relook.models.rrt_checkpoint import save_rrt
from relook.rerank import create_reranker
from relook.store import FeatureStore
from relook.types import ImageFeatures, Shortlist


def _feats(iid, seed, n=49):
    r = np.random.default_rng(seed)
    return ImageFeatures(iid, global_desc=r.standard_normal(32), local_desc=r.standard_normal((n, 128)),
                         keypoints=r.random((n, 2)) * 224, image_size=np.array([224, 224]))


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return RRT(num_layers=2, dim_feedforward=64, **kw).eval()


def _pair_logit(model, q, c):
    """Reference: one pair at a time, positions computed by hand: a full 7x7 grid takes the official SOP grid
    positions ((j + 1) / 7, (i + 1) / 7) of cell (i, j), whatever its keypoints."""
    official = torch.tensor([[(j + 1) / 7, (i + 1) / 7] for i in range(7) for j in range(7)])
    pos = lambda f: official[None].float()  # noqa: E731
    with torch.no_grad():
        return float(model(torch.from_numpy(q.local_desc)[None], torch.from_numpy(c.local_desc)[None],
                           pos(q), pos(c)).logits[0])


def test_matches_reference():
    model = _model()
    q, cands = _feats("q", 0), [_feats(f"g{i}", i + 1) for i in range(7)]
    rr = create_reranker("rrt", model=model, batch_size=3)
    s = rr.rerank(q, cands, np.linspace(1, 0, 7))
    ref = [_pair_logit(model, q, c) for c in cands]
    np.testing.assert_allclose(s, ref, atol=1e-5, rtol=1e-5)
    s100 = create_reranker("rrt", model=model).rerank(q, cands, np.linspace(1, 0, 7))
    np.testing.assert_allclose(s, s100, atol=1e-5, rtol=1e-5)
    sw = create_reranker("rrt", model=model, global_weight=2.0).rerank(q, cands, np.linspace(1, 0, 7))
    np.testing.assert_allclose(sw, s + 2.0 * np.linspace(1, 0, 7), atol=1e-5, rtol=1e-5)


def test_fast_path_equals_plain_forward(one_thread):
    """The CPU fast path (workers, chunks, shared query projection) == RRT.forward batches (workers=0)."""
    model = _model()
    q, cands = _feats("q", 0), [_feats(f"g{i}", i + 1) for i in range(9)]
    plain = create_reranker("rrt", model=model, workers=0, batch_size=4)
    assert plain.scorer is None
    for workers in (None, 1, 2):
        fast = create_reranker("rrt", model=model, workers=workers, chunk_tokens=60)
        np.testing.assert_allclose(fast.rerank(q, cands, np.zeros(9)), plain.rerank(q, cands, np.zeros(9)),
                                   atol=1e-5, rtol=1e-5)
    q8 = create_reranker("rrt", model=model, quantize="int8_ff").rerank(q, cands, np.zeros(9))
    assert np.isfinite(q8).all() and not np.allclose(q8, plain.rerank(q, cands, np.zeros(9)), atol=1e-6)


def test_ragged_keypoints_padding():
    """Keypoint input: candidates with fewer locals are padded and masked; same score as alone."""
    model = _model(input="keypoints", position_encoding="none")
    q, cands = _feats("q", 0, n=10), [_feats("a", 1, n=4), _feats("b", 2, n=9)]
    s = create_reranker("rrt", model=model).rerank(q, cands, np.zeros(2))
    alone = [create_reranker("rrt", model=model).rerank(q, [c], np.zeros(1))[0] for c in cands]
    np.testing.assert_allclose(s, alone, atol=1e-5, rtol=1e-5)


def test_shortlist_contract(tmp_path):
    model = _model()
    qs, gs = tmp_path / "q.h5", tmp_path / "g.h5"
    with FeatureStore(qs, "w") as st:
        for i in range(2):
            st.write(_feats(f"q{i}", 100 + i))
    with FeatureStore(gs, "w") as st:
        for i in range(6):
            st.write(_feats(f"g{i}", i))
    idx = np.array([[0, 1, 2, 3, 4, 5], [5, 4, 3, -1, -1, -1]])
    sl = Shortlist(["q0", "q1"], [f"g{i}" for i in range(6)], idx, -np.sort(-np.random.rand(2, 6)))
    path = save_rrt(tmp_path / "rrt.pt", model)
    rr = create_reranker("rrt", checkpoint=str(path), top_k=4)
    ranking = rr.rerank_shortlist(sl, FeatureStore(qs), FeatureStore(gs), progress=False)
    assert sorted(ranking.indices[0, :4]) == [0, 1, 2, 3] and ranking.indices[0, 4:].tolist() == [4, 5]
    assert sorted(ranking.indices[1, :3]) == [3, 4, 5]
    q0 = _feats("q0", 100)
    ref = {g: _pair_logit(model, q0, _feats(f"g{g}", g)) for g in range(4)}
    assert ranking.indices[0, :4].tolist() == sorted(ref, key=lambda g: -ref[g])
    assert np.isfinite(ranking.scores).all()


def test_empty():
    rr = create_reranker("rrt", model=_model())
    assert rr.rerank(_feats("q", 0), [], np.zeros(0)).shape == (0,)


def test_bad_input():
    with pytest.raises(ConfigError):
        create_reranker("rrt")
    with pytest.raises(ConfigError):
        create_reranker("rrt", model=_model(), dtype="int8")
    with pytest.raises(ConfigError):
        create_reranker("rrt", model=_model(), quantize="int8", dtype="bfloat16")
    with pytest.raises(ConfigError):
        create_reranker("rrt", model=_model(), quantize="int4")
