"""``per_query`` + ``mean_of_queries`` give ``evaluate``'s numbers for every protocol (what makes
``relook evaluate --shard`` exact), on random rankings with hand-made ground truth."""

import numpy as np
import pytest

from relook.datasets.base import RetrievalDataset
from relook.eval.evaluate import evaluate, mean_of_queries, per_query
from relook.types import Ranking


def _dataset(protocol: str, rng, nq: int = 9, ng: int = 30) -> RetrievalDataset:
    queries = [(f"q{i}", None, None) for i in range(nq)]
    gallery = [(f"g{i}", None, None) for i in range(ng)]
    if protocol == "labels":
        labels = rng.integers(0, 4, ng)
        return RetrievalDataset(
            "toy", None, queries, gallery, "labels", query_labels=rng.integers(0, 5, nq), gallery_labels=labels
        )
    gnd = []
    for _ in range(nq):
        ids = rng.permutation(ng)
        split = rng.integers(0, 4, 3)  # some queries without easy or hard positives: NaN per query
        e, h, j = ids[: split[0]], ids[split[0] : split[0] + split[1]], ids[10 : 10 + split[2]]
        gnd.append({"easy": e, "hard": h, "junk": j} if protocol == "revisitop" else {"ok": np.r_[e, h], "junk": j})
    return RetrievalDataset("toy", None, queries, gallery, protocol, gnd=gnd)


@pytest.mark.parametrize("protocol", ["labels", "revisitop", "classic"])
def test_matches_reference(protocol):
    rng = np.random.default_rng(3)
    ds = _dataset(protocol, rng)
    k = 20
    idx = np.stack([rng.permutation(30)[:k] for _ in range(9)])
    ranking = Ranking(ds.query_ids[::-1], ds.gallery_ids, idx, np.sort(rng.random((9, k)))[:, ::-1])
    full = evaluate(ranking, ds)
    order = ["q3", "q0", "q8", "q1", "q5", "q7", "q2", "q4", "q6"]  # any split and order of the queries
    parts = [per_query(ranking, ds, order[:4]), per_query(ranking, ds, order[4:])]
    values = {n: np.r_[parts[0][n], parts[1][n]] for n in full}
    assert list(parts[0]) == list(full) and all(len(v) == 9 for v in values.values())
    merged = mean_of_queries(values)
    for name, value in full.items():
        if np.isnan(value):
            assert np.isnan(merged[name]), name
        else:
            assert merged[name] == pytest.approx(value, abs=1e-12), name
    assert any(np.isnan(v).any() for v in values.values()) or protocol == "labels"  # NaN queries were exercised
