"""Paired per-query bootstrap: how sure is a difference between two methods scored on the same queries?

Two methods ranked the same Q queries; each has one number per query (AP, R@1 hit, ...). The difference of
their means is the statistic, and its uncertainty comes from which queries happened to be in the set:
resample the Q queries with replacement, B times, keeping the two methods' values of a query together
(paired), and take the percentile interval of the resampled mean differences (Efron & Tibshirani 1993,
ch. 13, the percentile interval; the same interval ``scipy.stats.bootstrap(..., paired=True,
method="percentile")`` gives). Pairing matters: the per-query spread of AP is large, but two rerankings of
the same shortlist move together, so the paired interval is much narrower than two separate ones.

Used by the report (per-method interval of the change against the global order) and the benchmark.
"""

from __future__ import annotations

import numpy as np

#: resampled index rows drawn at once (memory: chunk x Q int64)
_CHUNK = 1000


def paired_bootstrap(
    per_query_a, per_query_b, n: int = 10000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(delta, lo, hi): delta = mean(a - b) over the queries, and the ``level`` (95 %) percentile interval
    of the mean of ``n`` paired bootstrap resamples of the queries.

    ``per_query_a``, ``per_query_b``: (Q,) values of the two methods on the same queries, in the same
    order (``a`` the method, ``b`` the baseline: a positive delta means ``a`` is higher). Queries where
    either value is NaN (e.g. AP of a query without positives) are left out of both. Seeded by ``seed``.
    No query left gives ``(nan, nan, nan)``; one query gives ``(d, d, d)``.
    """
    a = np.asarray(per_query_a, dtype=np.float64).ravel()
    b = np.asarray(per_query_b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired_bootstrap: per_query_a has {a.size} queries, per_query_b {b.size}")
    if int(n) < 1:
        raise ValueError(f"paired_bootstrap: n must be >= 1, got {n}")
    if not 0 < level < 1:
        raise ValueError(f"paired_bootstrap: level must be in (0, 1), got {level}")
    diff = (a - b)[~(np.isnan(a) | np.isnan(b))]
    q = diff.size
    if q == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(int(n), np.float64)
    for start in range(0, int(n), _CHUNK):
        rows = min(_CHUNK, int(n) - start)
        means[start : start + rows] = diff[rng.integers(0, q, size=(rows, q))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return float(diff.mean()), float(lo), float(hi)
