"""Which queries a reranker helped and hurt most, from the rank of each query's first positive before
(global order) and after (the reranker's order). The report draws these as its success and failure cases.
Pure: arrays in, query indices out.
"""

from __future__ import annotations

import numpy as np

from relook.errors import ShapeError


def helped_and_hurt(before: np.ndarray, after: np.ndarray, n: int = 2) -> tuple[list[int], list[int]]:
    """Query indices whose first positive moved up (helped) and down (hurt) the most, at most ``n`` each.

    before, after: (Q,) 1-based rank of each query's first positive (``metrics.first_positive_ranks``);
    inf = not retrieved, NaN = the query has no positive (never picked). A positive lost from the list
    counts as one rank past the deepest finite rank seen, so "found at #3 -> lost" ranks as a large drop
    rather than an infinite one. Ties: lower query index first. Unchanged queries are in neither list.
    """
    before, after = np.asarray(before, np.float64).ravel(), np.asarray(after, np.float64).ravel()
    if before.shape != after.shape:
        raise ShapeError(f"helped_and_hurt: {before.shape[0]} ranks before but {after.shape[0]} after")
    both = np.concatenate([before, after])
    finite = both[np.isfinite(both)]
    cap = (finite.max() if finite.size else 0.0) + 1.0
    valid = ~(np.isnan(before) | np.isnan(after))
    gain = np.where(valid, np.nan_to_num(before, posinf=cap) - np.nan_to_num(after, posinf=cap), 0.0)
    order = np.arange(len(gain))
    helped = [int(q) for q in order[np.lexsort((order, -gain))] if gain[q] > 0][:n]
    hurt = [int(q) for q in order[np.lexsort((order, gain))] if gain[q] < 0][:n]
    return helped, hurt
