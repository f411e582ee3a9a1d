"""rrt reranker: batched scores equal the per-pair model, shortlist contract, combination, errors."""

import numpy as np
import pytest
import torch

from relook.errors import ConfigError
from relook.models.rrt import RRT
from relook.models.rrt.checkpoint import save_rrt
from relook.rerank import create_reranker
from relook.store import FeatureStore
from relook.types import ImageFeatures, Shortlist


def _feats(iid, seed, n=49):
    r = np.random.default_rng(seed)
    return ImageFeatures(
        iid,
        global_desc=r.standard_normal(32),
        local_desc=r.standard_normal((n, 128)),
        keypoints=r.random((n, 2)) * 224,
        image_size=np.array([224, 224]),
    )


def _model(seed=0, **kw):
    torch.manual_seed(seed)
    return RRT(num_layers=2, dim_feedforward=64, **kw).eval()


def _pair_logit(model, q, c):
    """Reference: one pair at a time, positions computed by hand: a full 7x7 grid takes the official SOP grid
    positions ((j + 1) / 7, (i + 1) / 7) of cell (i, j), whatever its keypoints."""
    official = torch.tensor([[(j + 1) / 7, (i + 1) / 7] for i in range(7) for j in range(7)])
    pos = lambda f: official[None].float()  # noqa: E731
    with torch.no_grad():
        return float(
            model(torch.from_numpy(q.local_desc)[None], torch.from_numpy(c.local_desc)[None], pos(q), pos(c)).logits[0]
        )


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
        np.testing.assert_allclose(
            fast.rerank(q, cands, np.zeros(9)), plain.rerank(q, cands, np.zeros(9)), atol=1e-5, rtol=1e-5
        )
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


# -- EPE checkpoints (Sec. 3.4 / 5.2 of the epipolar paper) ---------------------------------------------------

EPE_RECORD = {
    "guidance": "epe",
    "grid": 7,
    "net_size": [224, 224],
    "eval_resize": None,
    "dim": 128,
    "bands": 10,
    "seed": 5,
}


def _wide(iid, seed):
    """A 7x7 grid store entry of an ORIGINAL 224 x 448 image (the network sees it resized to 224 x 224)."""
    f = _feats(iid, seed)
    f.image_size = np.array([224, 448])
    return f


def _camera_F(angle, t):
    from relook.geometry.epipolar import fundamental_from_cameras

    K = np.array([[300.0, 0, 223.5], [0, 300.0, 111.5], [0, 0, 1]])
    c, s = np.cos(angle), np.sin(angle)
    R2 = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
    return fundamental_from_cameras(K, np.eye(3), np.zeros(3), K, R2, np.asarray(t, float)).numpy()


def _write_pgt(path, entries):
    """A pseudo ground-truth file as `relook geometry pseudo-gt` writes it: {(id1, id2): (F, reliable)}."""
    import h5py

    from relook.geometry.robust import pair_key

    with h5py.File(path, "w") as f:
        for (a, b), (F, ok) in entries.items():
            g = f.create_group(pair_key(a, b))
            g.create_dataset("F", data=F)
            g.attrs.update(
                {"id1": a, "id2": b, "num_matches": 60, "num_inliers": 40 if ok else 6, "reliable": ok, "done": True}
            )
    return path


def _epe_logit(model, q, c, F_orig, seed=5):
    """Reference: F of the original 224 x 448 images mapped by hand into the 224 x 224 network frame
    (x' = (x + 0.5) / 2 - 0.5, y' = y), the reference pixel drawn from the pair's generator, the encoding added."""
    from relook.models.epe import EpipolarPositionalEncoding, pair_generator

    A = np.array([[0.5, 0.0, -0.25], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    Fn = torch.from_numpy(np.linalg.inv(A).T @ F_orig @ np.linalg.inv(A))[None]
    g = pair_generator(seed, q.image_id, c.image_id)
    ref = torch.rand(2, generator=g, dtype=torch.float64)[None] * 224 - 0.5
    pe = EpipolarPositionalEncoding(dim=128, grid=7, bands=10)(Fn, (224, 224), (224, 224), ref_pixel=ref)
    official = torch.tensor([[(j + 1) / 7, (i + 1) / 7] for i in range(7) for j in range(7)])[None]
    with torch.no_grad():
        return float(
            model(
                torch.from_numpy(q.local_desc)[None].float(),
                torch.from_numpy(c.local_desc)[None].float(),
                official,
                official,
                input_pe=pe,
            ).logits[0]
        )


def test_epe_checkpoint_reranks_with_the_pairs_F(tmp_path):
    """An EPE checkpoint scores each pair with the encoding of that pair's pseudo-GT F in the network frame:
    the logit equals the hand-mapped reference, swapping one pair's F changes that pair's score only, an
    unreliable estimate is replaced by the pair's seeded random rank-2 F (its stored F is ignored), a pair
    stored in the other order serves with F^T, and without F the checkpoint is refused in one line."""
    import json

    from relook.errors import DataError

    model = _model()
    path = save_rrt(tmp_path / "epe.pt", model, guidance_json=json.dumps(EPE_RECORD))
    q, cands = _wide("q", 0), [_wide(f"g{i}", i + 1) for i in range(4)]
    Fa, Fb, Fc = _camera_F(0.4, [1.0, 0.1, 0.3]), _camera_F(-0.3, [0.2, 1.0, 0.1]), _camera_F(0.2, [1.0, 0.0, 0.0])
    base = {("q", "g0"): (Fa, True), ("q", "g1"): (Fb, False), ("g2", "q"): (Fc.T, True), ("q", "g3"): (Fb, True)}
    one = _write_pgt(tmp_path / "one.h5", base)
    two = _write_pgt(tmp_path / "two.h5", {**base, ("q", "g0"): (Fb, True), ("q", "g1"): (Fa, False)})
    s1 = create_reranker("rrt", checkpoint=str(path), pseudo_gt=str(one)).rerank(q, cands, np.zeros(4))
    s2 = create_reranker("rrt", checkpoint=str(path), pseudo_gt=str(two)).rerank(q, cands, np.zeros(4))
    ref = [_epe_logit(model, q, cands[0], Fa), _epe_logit(model, q, cands[2], Fc), _epe_logit(model, q, cands[3], Fb)]
    np.testing.assert_allclose(s1[[0, 2, 3]], ref, atol=1e-5, rtol=1e-5)
    assert abs(s2[0] - _epe_logit(model, q, cands[0], Fb)) < 1e-5 and abs(s2[0] - s1[0]) > 1e-4  # F swapped
    np.testing.assert_allclose(s2[1:], s1[1:], atol=1e-6)  # unreliable g1: random F either way; others unchanged
    assert abs(s1[1] - _epe_logit(model, q, cands[1], Fb)) > 1e-4
    plain = create_reranker("rrt", checkpoint=str(path), pseudo_gt=str(one), workers=0, batch_size=3)
    np.testing.assert_allclose(plain.rerank(q, cands, np.zeros(4)), s1, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(
        create_reranker("rrt", checkpoint=str(path), pseudo_gt=str(one)).rerank(q, cands[::-1], np.zeros(4)),
        s1[::-1],
        atol=1e-6,
    )  # a pair's encoding does not depend on the shortlist
    with pytest.raises(ConfigError, match="guidance 'epe'") as e:
        create_reranker("rrt", checkpoint=str(path))
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="missing"):
        create_reranker("rrt", checkpoint=str(path), pseudo_gt=str(one)).rerank(
            q, cands + [_wide("g9", 9)], np.zeros(5)
        )
    # a checkpoint without guidance needs nothing
    plain_ckpt = save_rrt(tmp_path / "none.pt", model)
    assert create_reranker("rrt", checkpoint=str(plain_ckpt)).guidance is None
