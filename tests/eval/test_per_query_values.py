"""per_query_metrics: means equal evaluate()'s mAP / R@1, and a hand-computed query."""

import numpy as np
import pytest

from relook.datasets.base import RetrievalDataset
from relook.eval.evaluate import evaluate
from relook.eval.per_query import per_query_metrics
from relook.types import Shortlist


def _dataset(labels):
    labels = np.asarray(labels)
    gallery = [(f"g{i}", None, None) for i in range(len(labels))]
    return RetrievalDataset(
        "toy", None, gallery, gallery, "labels", query_labels=labels, gallery_labels=labels,
        query_in_gallery=np.arange(len(labels)),
    )  # fmt: skip


def test_matches_reference_evaluate():
    rng = np.random.default_rng(0)
    ds = _dataset(rng.integers(0, 6, 40))
    idx = np.stack([rng.permutation(40) for _ in range(40)])
    sl = Shortlist(ds.query_ids, ds.gallery_ids, idx, -np.arange(40.0)[None].repeat(40, 0))
    pq = per_query_metrics(sl, ds)
    ref = evaluate(sl, ds)
    assert np.nanmean(pq["AP"]) == pytest.approx(ref["mAP"])
    assert np.nanmean(pq["R@1"]) == pytest.approx(ref["R@1"])


def test_hand_case():
    # query 0 (label 0) has positives g2, g4; its ranking: itself, g1, g2, g3, g4 -> ranks 2, 4 (1-based) after
    # dropping itself: AP = (1/2 + 2/4) / 2 = 0.5; R@1 = 0; P@10 (revisited): last positive at 4 -> 2/4
    ds = _dataset([0, 1, 0, 1, 0])
    idx = np.array([[0, 1, 2, 3, 4]] + [[1, 0, 2, 3, 4]] * 4)
    sl = Shortlist(ds.query_ids, ds.gallery_ids, idx, -np.arange(5.0)[None].repeat(5, 0))
    pq = per_query_metrics(sl, ds)
    assert pq["AP"][0] == pytest.approx(0.5)
    assert pq["R@1"][0] == 0.0
    assert pq["P@10"][0] == pytest.approx(0.5)
    assert pq["R@1"][3] == 1.0 and pq["AP"][3] == pytest.approx(1.0)  # g3: its positive g1 first
