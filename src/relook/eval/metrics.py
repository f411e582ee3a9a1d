"""Retrieval metrics as pure functions of (ranking, ground truth).

Conventions shared by every function here:

* ``ranking``: (Q, L) int array (or a list of 1-D arrays) of gallery indices in ranked order, best
  first. ``-1`` entries are padding and ignored. A ranking may be partial (L < gallery size): a positive
  that is not in it counts as never retrieved.
* ``positives[q]``: gallery indices relevant to query ``q``; ``ignore[q]`` (optional): indices removed
  from the ranking before scoring (revisited-protocol junk, or the query itself when the query set is
  the gallery, as in SOP / CO3D-Retrieve).
* A query with no positives has no defined AP / recall: its per-query value is NaN and it is left out
  of the mean (the revisited Oxford/Paris evaluation does the same). If no query has a positive the
  mean is NaN as well.
* Ties must be resolved before calling (``relook.types.ranked_indices`` breaks them stably).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: the ``ranking`` argument: (Q, L) gallery indices per query, best first (not ``relook.types.Ranking``, the
#: reranker's output object, whose ``indices`` hold such an array)
RankedIds = np.ndarray | Sequence[np.ndarray]
IdLists = Sequence[np.ndarray | Sequence[int]]


def _rows(ranking: RankedIds) -> list[np.ndarray]:
    return [np.asarray(r, dtype=np.int64).ravel() for r in ranking]


def positive_ranks(ranked: np.ndarray, positives, ignore=None) -> tuple[np.ndarray, int]:
    """0-based ranks of the positives in ``ranked`` after dropping padding and ``ignore``; and #positives.

    Positives that are also ignored are not counted as positives.
    """
    ranked = np.asarray(ranked, dtype=np.int64)
    ranked = ranked[ranked >= 0]
    pos = np.unique(np.asarray(positives, dtype=np.int64))
    if ignore is not None and len(ignore):
        ign = np.asarray(ignore, dtype=np.int64)
        ranked = ranked[~np.isin(ranked, ign)]
        pos = pos[~np.isin(pos, ign)]
    ranks = np.flatnonzero(np.isin(ranked, pos))
    return ranks, int(pos.size)


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    valid = ~np.isnan(values)
    return float(values[valid].mean()) if valid.any() else float("nan")


def _per_query(ranking, positives, ignore):
    rows = _rows(ranking)
    if len(rows) != len(positives):
        raise ValueError(f"ranking has {len(rows)} queries but positives has {len(positives)}")
    if ignore is not None and len(ignore) != len(rows):
        raise ValueError(f"ranking has {len(rows)} queries but ignore has {len(ignore)}")
    for q, row in enumerate(rows):
        yield positive_ranks(row, positives[q], None if ignore is None else ignore[q])


# -- revisited Oxford / Paris ---------------------------------------------------------------------
def revisitop_average_precision(ranks: np.ndarray, n_positives: int) -> float:
    """AP of the revisited Oxford/Paris protocol: trapezoidal area under the precision-recall curve.

    ``ranks``: sorted 0-based ranks of the retrieved positives (junk already removed). The j-th
    positive (0-based) at rank r adds ``(p0 + p1) / 2 / n_positives`` with p0 = j / r (1 when r = 0),
    the precision just before it, and p1 = (j + 1) / (r + 1), the precision at it.
    """
    if n_positives == 0:
        return float("nan")
    ranks = np.asarray(ranks, dtype=np.float64)
    j = np.arange(len(ranks), dtype=np.float64)
    p0 = np.where(ranks == 0, 1.0, j / np.maximum(ranks, 1.0))
    p1 = (j + 1.0) / (ranks + 1.0)
    return float(((p0 + p1) / 2.0).sum() / n_positives)


def revisitop_map(
    ranking: RankedIds, positives: IdLists, junk: IdLists | None = None, kappas: Sequence[int] = (1, 5, 10)
) -> dict:
    """mAP and mP@k of the revisited protocol for one setting (Easy, Medium or Hard).

    Build ``positives`` / ``junk`` for a setting with ``relook.eval.protocols.revisitop_ground_truth``.
    mP@k follows the protocol's definition: with 1-based positive ranks ``pos``,
    ``k' = min(max(pos), k)`` and P@k = |{pos <= k'}| / k' (so a query with fewer than k positives is not
    penalised for them). Returns ``{"mAP", "mP@k": {k: value}, "ap": (Q,), "pk": (Q, len(kappas))}``.
    """
    aps, pks = [], []
    for ranks, n_pos in _per_query(ranking, positives, junk):
        aps.append(revisitop_average_precision(ranks, n_pos))
        row = []
        for k in kappas:
            if n_pos == 0:
                row.append(np.nan)
            elif ranks.size == 0:
                row.append(0.0)
            else:
                pos1 = ranks + 1
                kq = min(int(pos1.max()), k)
                row.append(float((pos1 <= kq).sum()) / kq)
        pks.append(row)
    ap = np.asarray(aps, dtype=np.float64)
    pk = np.asarray(pks, dtype=np.float64).reshape(len(aps), len(kappas))
    return {"mAP": _nanmean(ap), "mP@k": {k: _nanmean(pk[:, i]) for i, k in enumerate(kappas)}, "ap": ap, "pk": pk}


# -- recall / mAP over all positives (RRT, epipolar paper: SOP, CO3D-Retrieve) -------------------
def average_precision(ranks: np.ndarray, n_positives: int) -> float:
    """Non-interpolated AP: mean over all positives of the precision at each positive's rank.

    Positives not retrieved contribute 0 (so AP of a partial ranking is a lower bound).
    """
    if n_positives == 0:
        return float("nan")
    ranks = np.asarray(ranks, dtype=np.float64)
    return float(((np.arange(len(ranks)) + 1.0) / (ranks + 1.0)).sum() / n_positives)


def mean_average_precision(ranking: RankedIds, positives: IdLists, ignore: IdLists | None = None) -> float:
    """mAP over all positives of each query (``ignore`` the query itself when it is in the gallery)."""
    return _nanmean([average_precision(r, n) for r, n in _per_query(ranking, positives, ignore)])


def recall_at_k(
    ranking: RankedIds, positives: IdLists, ks: Sequence[int] = (1, 10, 50), ignore: IdLists | None = None
) -> dict[int, float]:
    """R@K as in RRT and the epipolar paper: share of queries with at least one positive in the top K."""
    first = [(r[0] if r.size else np.inf) if n else np.nan for r, n in _per_query(ranking, positives, ignore)]
    first = np.asarray(first, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return {k: _nanmean(np.where(np.isnan(first), np.nan, (first < k).astype(np.float64))) for k in ks}


# -- "A metric learning reality check" (Musgrave et al.) ------------------------------------------
def precision_at_1(ranking: RankedIds, positives: IdLists, ignore: IdLists | None = None) -> float:
    """P@1: share of queries whose first result is a positive."""
    vals = [(float(r.size > 0 and r[0] == 0)) if n else np.nan for r, n in _per_query(ranking, positives, ignore)]
    return _nanmean(vals)


def r_precision(ranking: RankedIds, positives: IdLists, ignore: IdLists | None = None) -> float:
    """R-Precision: with R = number of positives, the share of positives among the top R."""
    vals = [float((r < n).sum()) / n if n else np.nan for r, n in _per_query(ranking, positives, ignore)]
    return _nanmean(vals)


def map_at_r(ranking: RankedIds, positives: IdLists, ignore: IdLists | None = None) -> float:
    """MAP@R: (1/R) sum_{i<=R} P(i) rel(i), i.e. AP truncated at R = number of positives."""
    vals = []
    for r, n in _per_query(ranking, positives, ignore):
        if not n:
            vals.append(np.nan)
            continue
        r = r[r < n].astype(np.float64)
        vals.append(float(((np.arange(len(r)) + 1.0) / (r + 1.0)).sum() / n))
    return _nanmean(vals)


def musgrave_metrics(ranking: RankedIds, positives: IdLists, ignore: IdLists | None = None) -> dict[str, float]:
    """P@1, R-Precision and MAP@R in one dict (SOP, CUB, Cars as in the OT reranking paper)."""
    return {
        "P@1": precision_at_1(ranking, positives, ignore),
        "RP": r_precision(ranking, positives, ignore),
        "MAP@R": map_at_r(ranking, positives, ignore),
    }


def precision_recall_curve(
    ranking: RankedIds, positives: IdLists, ignore: IdLists | None = None, levels: int = 11
) -> tuple[np.ndarray, np.ndarray]:
    """Mean interpolated precision at ``levels`` recall points in [0, 1] (for plots).

    Interpolated precision at recall r is the best precision reached at any recall >= r (0 when r is
    never reached); queries without positives are left out. Returns ``(recall (levels,), precision (levels,))``.
    """
    recall = np.linspace(0.0, 1.0, levels)
    curves = []
    for ranks, n in _per_query(ranking, positives, ignore):
        if not n:
            continue
        rec = (np.arange(len(ranks)) + 1.0) / n
        prec = (np.arange(len(ranks)) + 1.0) / (ranks + 1.0)
        best = np.maximum.accumulate(prec[::-1])[::-1]  # best precision at recall >= rec[i]
        first = np.searchsorted(rec, recall - 1e-12, side="left")  # first rank reaching each level
        interp = np.zeros(levels)
        ok = first < len(best)
        interp[ok] = best[first[ok]]
        curves.append(interp)
    precision = np.mean(curves, axis=0) if curves else np.full(levels, np.nan)
    return recall, precision


# -- curves over the cut-off K and per-query diagnostics (report) ---------------------------------
def first_positive_ranks(ranking: RankedIds, positives: IdLists, ignore: IdLists | None = None) -> np.ndarray:
    """(Q,) 1-based rank of each query's first positive; inf when none is retrieved, NaN without positives.

    The report compares these before and after a reranker to find the queries it helped and hurt most.
    """
    out = [(float(r[0] + 1) if r.size else np.inf) if n else np.nan for r, n in _per_query(ranking, positives, ignore)]
    return np.asarray(out, dtype=np.float64)


def map_at_k_curve(
    ranking: RankedIds, positives: IdLists, ks: Sequence[int], ignore: IdLists | None = None
) -> np.ndarray:
    """(len(ks),) mAP@K for each K: AP@K = (1 / min(n, K)) sum_{i <= K} P(i) rel(i), n = #positives.

    The normaliser min(n, K) makes a perfect top-K score 1 even when a query has more than K positives
    (the mAP@100 of the Google Landmarks challenges); queries without positives are left out.
    """
    ks = np.asarray(list(ks), dtype=np.int64)
    rows = []
    for ranks, n in _per_query(ranking, positives, ignore):
        if not n:
            rows.append(np.full(len(ks), np.nan))
            continue
        prec = (np.arange(len(ranks)) + 1.0) / (ranks + 1.0)  # precision at each retrieved positive
        within = ranks[None, :] < ks[:, None]  # (len(ks), hits): positive i counts for cut-off K
        rows.append((within * prec[None, :]).sum(1) / np.minimum(n, ks))
    if not rows:
        return np.full(len(ks), np.nan)
    return np.array([_nanmean(col) for col in np.asarray(rows).T])
