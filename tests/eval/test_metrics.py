"""Metrics vs hand-computed cases, slow obvious loops (hypothesis) and pytorch-metric-learning."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from relook.errors import ConfigError
from relook.eval import metrics as M
from relook.eval.protocols import evaluate_revisitop, label_ground_truth, revisitop_ground_truth
from relook.types import ranked_indices


# -- slow obvious references ----------------------------------------------------------------------
def slow_filtered(row, ignore):
    return [g for g in row if g >= 0 and g not in set(ignore)]


def slow_revisitop_ap(row, pos, ignore):
    pos = set(pos) - set(ignore)
    if not pos:
        return float("nan")
    ap, found = 0.0, 0
    for r, g in enumerate(slow_filtered(row, ignore)):
        if g in pos:
            prec_before = 1.0 if r == 0 else found / r
            found += 1
            ap += (prec_before + found / (r + 1)) / 2 / len(pos)
    return ap


def slow_ap(row, pos, ignore):
    pos = set(pos) - set(ignore)
    if not pos:
        return float("nan")
    total, found = 0.0, 0
    for r, g in enumerate(slow_filtered(row, ignore)):
        if g in pos:
            found += 1
            total += found / (r + 1)
    return total / len(pos)


def slow_musgrave(row, pos, ignore):
    pos = set(pos) - set(ignore)
    if not pos:
        return (float("nan"),) * 3
    lst = slow_filtered(row, ignore)
    R = len(pos)
    p1 = float(bool(lst) and lst[0] in pos)
    rp = sum(g in pos for g in lst[:R]) / R
    total, found = 0.0, 0
    for i, g in enumerate(lst[:R]):
        if g in pos:
            found += 1
            total += found / (i + 1)
    return p1, rp, total / R


def nanmean(x):
    x = np.asarray(x, float)
    return float(np.nanmean(x)) if (~np.isnan(x)).any() else float("nan")


def same(a, b):
    return (np.isnan(a) and np.isnan(b)) or abs(a - b) < 1e-6


# -- hand-computed cases --------------------------------------------------------------------------
def test_hand_computed():
    ranking = [np.array([5, 7, 3, 9])]  # positives 5 and 3 at ranks 0 and 2
    assert M.average_precision(*M.positive_ranks(ranking[0], [5, 3])) == pytest.approx((1 + 2 / 3) / 2)
    # revisitop: (1+1)/2/2 + (1/2 + 2/3)/2/2
    assert M.revisitop_map(ranking, [[5, 3]])["mAP"] == pytest.approx(0.5 + (0.5 + 2 / 3) / 4)
    # junk 7 removed: positives at ranks 0, 1 -> AP 1
    assert M.revisitop_map(ranking, [[5, 3]], [[7]])["mAP"] == pytest.approx(1.0)
    assert M.recall_at_k(ranking, [[3]], ks=(1, 2, 3)) == {1: 0.0, 2: 0.0, 3: 1.0}
    assert M.precision_at_1(ranking, [[5]]) == 1.0
    assert M.r_precision(ranking, [[3, 9]]) == 0.0
    assert M.map_at_r(ranking, [[7, 9, 5]]) == pytest.approx((1 + 2 / 2) / 3)
    # mP@k of the revisited protocol: pos (1-based) = {1, 3}; k=5 -> k' = min(3, 5) = 3 -> 2/3
    res = M.revisitop_map(ranking, [[5, 3]], kappas=(1, 5))
    assert res["mP@k"][1] == 1.0 and res["mP@k"][5] == pytest.approx(2 / 3)


def test_empty_and_no_positive_queries():
    # query 1 has no positives: left out of every mean (documented), query 0 counts
    ranking = [np.array([1, 2]), np.array([0, 1])]
    positives = [[2], []]
    assert M.mean_average_precision(ranking, positives) == pytest.approx(0.5)
    assert M.recall_at_k(ranking, positives, ks=(1,)) == {1: 0.0}
    assert np.isnan(M.mean_average_precision([np.array([1])], [[]]))
    # positive never retrieved (partial ranking) and junk-only ranking -> AP 0
    assert M.mean_average_precision([np.array([1, 2])], [[9]]) == 0.0
    assert M.revisitop_map([np.array([4, 5])], [[1]], [[4, 5]])["mAP"] == 0.0
    assert M.revisitop_map([np.array([4, 5])], [[1]], [[4, 5]])["mP@k"][1] == 0.0
    assert np.isnan(M.map_at_r([np.array([], dtype=int)], [[]]))


rankings = st.integers(1, 6).flatmap(
    lambda q: st.tuples(
        st.lists(st.permutations(list(range(12))).map(lambda p: p[:12]), min_size=q, max_size=q),
        st.lists(st.lists(st.integers(0, 11), max_size=6, unique=True), min_size=q, max_size=q),
        st.lists(st.lists(st.integers(0, 11), max_size=4, unique=True), min_size=q, max_size=q),
        st.integers(1, 12),
    )
)


@settings(max_examples=150, deadline=None)
@given(rankings)
def test_matches_reference(data):
    perms, positives, ignore, length = data
    ranking = [np.array(p[:length]) for p in perms]  # partial rankings of length `length`
    ref_ap = [slow_ap(r, p, i) for r, p, i in zip(ranking, positives, ignore)]
    assert same(M.mean_average_precision(ranking, positives, ignore), nanmean(ref_ap))
    ref_rap = [slow_revisitop_ap(r, p, i) for r, p, i in zip(ranking, positives, ignore)]
    assert same(M.revisitop_map(ranking, positives, ignore)["mAP"], nanmean(ref_rap))
    ref = np.array([slow_musgrave(r, p, i) for r, p, i in zip(ranking, positives, ignore)])
    got = M.musgrave_metrics(ranking, positives, ignore)
    for col, key in enumerate(("P@1", "RP", "MAP@R")):
        assert same(got[key], nanmean(ref[:, col]))
    for k in (1, 3, 10):
        ref_r = [
            np.nan if not (set(p) - set(i)) else float(any(g in set(p) - set(i) for g in slow_filtered(r, i)[:k]))
            for r, p, i in zip(ranking, positives, ignore)
        ]
        assert same(M.recall_at_k(ranking, positives, (k,), ignore)[k], nanmean(ref_r))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=10, max_size=10), st.integers(0, 1000))
def test_ties_resolved_stably(score_levels, seed):
    # tied scores: ranked_indices keeps the earlier gallery index first; metrics follow that ranking
    scores = np.array([score_levels], dtype=np.float32)
    order = ranked_indices(scores)[0]
    ref = sorted(range(10), key=lambda g: (-score_levels[g], g))
    assert order.tolist() == ref
    pos = [int(np.random.default_rng(seed).integers(10))]
    assert same(M.mean_average_precision([order], [pos]), slow_ap(ref, pos, []))


def test_matches_pytorch_metric_learning():
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(12), rng.integers(2, 6, size=12))
    emb = rng.normal(size=(len(labels), 8)) + 1.5 * rng.normal(size=(12, 8))[labels]
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    ranking = ranked_indices(sims)[:, :-1]  # drop self (last)
    positives, ignore = label_ground_truth(labels, labels, np.arange(len(labels)))
    ours = M.musgrave_metrics(ranking, positives, ignore)
    calc = AccuracyCalculator(
        include=("precision_at_1", "r_precision", "mean_average_precision_at_r"), k="max_bin_count"
    )
    t = torch.from_numpy(emb.astype(np.float32))
    ref = calc.get_accuracy(t, torch.from_numpy(labels), t, torch.from_numpy(labels), ref_includes_query=True)
    assert ours["P@1"] == pytest.approx(ref["precision_at_1"], abs=1e-6)
    assert ours["RP"] == pytest.approx(ref["r_precision"], abs=1e-6)
    assert ours["MAP@R"] == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-6)


def test_revisitop_settings():
    gnd = [{"easy": [0], "hard": [1], "junk": [2]}]
    ranking = [np.array([2, 1, 0, 3])]
    pos, ign = revisitop_ground_truth(gnd, "easy")
    assert pos[0].tolist() == [0] and sorted(ign[0].tolist()) == [1, 2]
    res = evaluate_revisitop(ranking, gnd)
    assert res["easy"]["mAP"] == pytest.approx(1.0)  # hard + junk removed, easy first
    assert res["hard"]["mAP"] == pytest.approx(1.0)  # junk + easy removed, hard first
    assert res["medium"]["mAP"] == pytest.approx(1.0)  # [1, 0] after junk: both positives first
    with pytest.raises(ConfigError, match="unknown revisited-protocol setting"):
        revisitop_ground_truth(gnd, "extreme")


def test_precision_recall_curve_hand_computed():
    # positives at ranks 0 and 2 of 2: (recall, precision) = (0.5, 1), (1, 2/3)
    rec, prec = M.precision_recall_curve([np.array([5, 7, 3])], [[5, 3]], levels=5)
    np.testing.assert_allclose(rec, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(prec, [1, 1, 1, 2 / 3, 2 / 3])
    # only one of two positives retrieved: precision 0 beyond recall 0.5
    _, prec = M.precision_recall_curve([np.array([5, 7])], [[5, 3]], levels=3)
    np.testing.assert_allclose(prec, [1, 1, 0])


def slow_ap_at_k(row, pos, ignore, k):
    pos = set(pos) - set(ignore)
    if not pos:
        return float("nan")
    total, found = 0.0, 0
    for r, g in enumerate(slow_filtered(row, ignore)[:k]):
        if g in pos:
            found += 1
            total += found / (r + 1)
    return total / min(len(pos), k)


def slow_first_positive(row, pos, ignore):
    pos = set(pos) - set(ignore)
    if not pos:
        return float("nan")
    return next((r + 1.0 for r, g in enumerate(slow_filtered(row, ignore)) if g in pos), float("inf"))


@settings(max_examples=100, deadline=None)
@given(rankings)
def test_curves_match_reference(data):
    """mAP@K for K = 1..13 and the first positive's rank against obvious loops."""
    perms, positives, ignore, length = data
    ranking = [np.array(p[:length]) for p in perms]
    ks = list(range(1, 14))
    got = M.map_at_k_curve(ranking, positives, ks, ignore)
    for j, k in enumerate(ks):
        assert same(got[j], nanmean([slow_ap_at_k(r, p, i, k) for r, p, i in zip(ranking, positives, ignore)]))
    ref = [slow_first_positive(r, p, i) for r, p, i in zip(ranking, positives, ignore)]
    np.testing.assert_array_equal(M.first_positive_ranks(ranking, positives, ignore), ref)


def test_curves_hand_computed():
    """One query, positives {0, 1}, ranking [2, 0, 3, 1]: AP@1 = 0, AP@2 = (1/2)/2, AP@4 = (1/2 + 2/4)/2;
    the first positive is at rank 2; a query whose positive is not in the list gets inf."""
    got = M.map_at_k_curve([np.array([2, 0, 3, 1])], [[0, 1]], [1, 2, 4])
    np.testing.assert_allclose(got, [0.0, 0.25, 0.5])
    np.testing.assert_array_equal(
        M.first_positive_ranks([np.array([2, 0]), np.array([2, 3])], [[0], [5]]), [2.0, np.inf]
    )
    assert np.isnan(M.map_at_k_curve([np.array([1])], [[]], [1])[0])
