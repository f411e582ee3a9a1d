"""Paired per-query bootstrap of a difference of means: is a reranker's gain over the global order real?

Both methods are scored on the same queries, so the per-query differences d_q = b_q - a_q carry the
comparison. The bootstrap (Efron & Tibshirani, 1993, ch. 13) resamples the *queries* with replacement
n times, takes the mean of d over each resample, and reads the 2.5 / 97.5 percentiles of those means as
the 95% interval (the percentile interval). Resampling pairs rather than each method on its own keeps
the strong correlation between the two methods' scores of one query, which is what makes the interval
narrow enough to tell a small real gain from noise.
"""

from __future__ import annotations

import numpy as np

from relook.errors import ShapeError


def paired_bootstrap(
    per_query_a, per_query_b, n: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(delta, lo, hi): delta = mean(b - a) over the queries, [lo, hi] its percentile bootstrap interval.

    ``per_query_a``, ``per_query_b``: (Q,) per-query values of the same queries (e.g. AP of the global order
    and of a reranker). Queries where either value is NaN (no positive: undefined) are left out. ``n``
    resamples of the Q queries with replacement, drawn by ``np.random.default_rng(seed)``. No query left:
    (nan, nan, nan).
    """
    a = np.asarray(per_query_a, np.float64).ravel()
    b = np.asarray(per_query_b, np.float64).ravel()
    if a.shape != b.shape:
        raise ShapeError(f"paired_bootstrap: per-query arrays differ in length ({a.size} vs {b.size})")
    if int(n) < 1 or not 0.0 < level < 1.0:
        raise ValueError(f"paired_bootstrap: need n >= 1 and 0 < level < 1, got n={n}, level={level}")
    d = (b - a)[np.isfinite(a) & np.isfinite(b)]
    if d.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(int(seed))
    means = np.empty(int(n), np.float64)
    for start in range(0, int(n), 256):  # chunks keep the (n, Q) index array small for large query sets
        stop = min(int(n), start + 256)
        means[start:stop] = d[rng.integers(0, d.size, (stop - start, d.size))].mean(axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return float(d.mean()), float(lo), float(hi)
