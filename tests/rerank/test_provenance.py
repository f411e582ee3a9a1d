"""Reranker provenance: gv with mutual nearest neighbours and gv with LightGlue describe themselves
differently (matcher, LightGlue's weights file and its sha256, thresholds); a file option's sha256 is
the file's (hashlib here)."""

import hashlib
import json
from pathlib import Path

from relook.rerank import create_reranker
from relook.rerank.base import Reranker
from relook.rerank.provenance import describe_reranker, reranker_meta


def test_smoke():
    mnn = reranker_meta(create_reranker("gv", threshold=8, top_k=40))
    lg = reranker_meta(create_reranker("gv", matcher="lightglue", threshold=8, top_k=40))
    assert json.loads(mnn["reranker.settings"])["threshold"] == 8
    a, b = describe_reranker(mnn), describe_reranker(lg)
    assert a != b
    assert "matcher mutual nearest neighbours" in a and "LightGlue" not in a
    assert "matcher LightGlue" in b and "lightglue weights: lightglue-aliked" in b
    for text in (a, b):
        assert "inlier threshold 8 px" in text and "affine model by magsac" in text and "top-k 40" in text
    path = lg["reranker.lightglue_weights.path"]
    sha = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    assert lg["reranker.lightglue_weights.sha256"] == sha and sha[:12] in b


class _FileReranker(Reranker):
    name = "file_reranker"
    default_conf = {"top_k": 5, "checkpoint": None, "alpha": 0.5}  # test only

    def rerank(self, query, candidates, global_scores):
        return global_scores


def test_matches_reference(tmp_path):
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"not really weights" * 100)
    meta = reranker_meta(_FileReranker(checkpoint=str(ckpt)))
    assert meta["reranker.checkpoint.sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    text = describe_reranker(meta)
    assert f"checkpoint {ckpt.resolve()} (sha256 {meta['reranker.checkpoint.sha256'][:12]})" in text
    assert "alpha=0.5" in text and "top-k 5" in text


def test_empty(tmp_path):
    """A ranking made before settings were recorded: no line; a checkpoint gone by now: said so."""
    assert describe_reranker({}) == ""
    meta = reranker_meta(_FileReranker(checkpoint=str(tmp_path / "gone.pt")))
    assert "gone.pt (file not found when reranking)" in describe_reranker(meta)
