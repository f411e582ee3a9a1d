import numpy as np
import pytest

from relook.errors import ConfigError, ShapeError
from relook.rerank.base import Reranker, apply_scores
from relook.store import FeatureStore
from relook.types import ImageFeatures, Shortlist


class Negate(Reranker):
    """Reverses the global order: a reference reranker for the base class's shortlist loop."""

    name = "negate"
    default_conf = {"top_k": 3}
    requires = frozenset({"global_desc"})

    def rerank(self, query, candidates, global_scores):
        return -np.asarray(global_scores, dtype=np.float64)


def test_apply_scores_reorders_head_keeps_tail():
    s = Shortlist(["q"], [f"g{i}" for i in range(5)], [[4, 3, 2, 1, 0]], [[0.9, 0.8, 0.7, 0.6, 0.5]])
    r = apply_scores(s, [np.array([0.1, 0.3, 0.2])], top_k=3, method="x")
    assert r.indices.tolist() == [[3, 2, 4, 1, 0]]
    assert np.all(np.diff(r.scores[0]) <= 0) and r.meta["reranker"] == "x"
    with pytest.raises(ShapeError, match="returned 2 scores for 3 candidates"):
        apply_scores(s, [np.array([0.1, 0.3])], top_k=3, method="x")
    with pytest.raises(ShapeError, match="non-finite"):
        apply_scores(s, [np.array([0.1, np.nan, 0.2])], top_k=3, method="x")


def test_shortlist_loop(tmp_path, rng):
    with FeatureStore(tmp_path / "g.h5", "a") as g:
        for i in range(5):
            g.write(ImageFeatures(f"g{i}", global_desc=rng.normal(size=4)))
        s = Shortlist(["g0"], g.ids(), [[0, 1, 2, 3, 4]], [[0.9, 0.8, 0.7, 0.6, 0.5]])
        r = Negate().rerank_shortlist(s, g, g, progress=False)
    assert r.indices.tolist() == [[2, 1, 0, 3, 4]]
    assert sorted(r.indices[0].tolist()) == list(range(5))


def test_bad_conf():
    with pytest.raises(ConfigError, match=r"reranker 'negate': unknown option\(s\) \['topk'\]"):
        Negate(topk=3)
