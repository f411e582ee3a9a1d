"""Per-method 95 % intervals of the mAP change against the global order (paired per-query bootstrap).

Each query's AP under the method and under the global order is a pair; ``relook.eval.bootstrap.
paired_bootstrap`` resamples the queries and gives the interval of the mean difference. The AP is the
one behind the table's mAP: the trapezoidal AP of the revisited protocol (Medium setting) for revisited
Oxford / Paris and the original Oxford / Paris, the non-interpolated AP over all positives otherwise
(``relook.eval.metrics``); queries without a positive are left out, as in the mean.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from relook.eval import metrics as M
from relook.eval.bootstrap import paired_bootstrap
from relook.eval.evaluate import align

#: resamples and seed of the report's intervals (fixed, so a report is reproducible)
RESAMPLES, SEED = 10000, 0


def per_query_ap(ranking, dataset) -> np.ndarray:
    """(Q,) AP of every query of ``dataset`` (its query order) under ``ranking``; NaN without positives."""
    idx = align(ranking, dataset)
    setting = "medium" if dataset.protocol == "revisitop" else None
    positives, ignore = dataset.ground_truth(setting)
    trapezoid = dataset.protocol in ("revisitop", "classic")
    ap = M.revisitop_average_precision if trapezoid else M.average_precision
    out = np.empty(len(idx), np.float64)
    for q in range(len(idx)):
        ranks, n_pos = M.positive_ranks(idx[q], positives[q], ignore[q])
        out[q] = ap(ranks, n_pos)
    return out


def metric_name(dataset) -> str:
    return "M:mAP" if dataset.protocol == "revisitop" else "mAP"


def delta_intervals(
    rankings: Mapping[str, object], dataset, baseline: str = "global only", n: int = RESAMPLES, seed: int = SEED
) -> dict[str, dict]:
    """``{method: {metric, delta, lo, hi, queries, resamples, seed}}`` for every method but ``baseline``:
    delta = mAP(method) - mAP(baseline) and its 95 % paired-bootstrap interval (``paired_bootstrap``)."""
    if baseline not in rankings:
        return {}
    base = per_query_ap(rankings[baseline], dataset)
    out = {}
    for name, ranking in rankings.items():
        if name == baseline:
            continue
        ap = per_query_ap(ranking, dataset)
        delta, lo, hi = paired_bootstrap(ap, base, n=n, seed=seed)
        out[name] = {
            "metric": metric_name(dataset),
            "delta": delta,
            "lo": lo,
            "hi": hi,
            "queries": int((~(np.isnan(ap) | np.isnan(base))).sum()),
            "resamples": int(n),
            "seed": int(seed),
        }
    return out
