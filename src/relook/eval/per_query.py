"""Per-query metrics of a ranking on a labels-protocol dataset: what a paired comparison resamples.

``relook.eval.evaluate`` reports means; a paired bootstrap (``relook.eval.bootstrap``) needs each query's
own value. Per query, with the query itself ignored when it is a gallery image:

* ``AP``: non-interpolated average precision over all positives (``metrics.average_precision``; the mean is
  ``evaluate``'s mAP);
* ``R@1``: 1 when the first result is a positive (the mean is ``evaluate``'s R@1);
* ``P@10``: precision at 10 of the revisited Oxford/Paris protocol (``metrics.revisitop_map``: with the
  last positive in the top 10 at rank r, P = (#positives in the top min(r, 10)) / min(r, 10), so a query
  with fewer than 10 positives is not penalised for them); the mean is the table's mP@10.

Queries without a positive get NaN everywhere (left out of means and of the bootstrap).
"""

from __future__ import annotations

import numpy as np

from relook.eval import metrics as M
from relook.eval.evaluate import align
from relook.types import Shortlist


def per_query_metrics(ranking: Shortlist, dataset, k: int = 10) -> dict[str, np.ndarray]:
    """``{"AP", "R@1", f"P@{k}"}`` -> (Q,) arrays in the dataset's query order (fractions in [0, 1])."""
    idx = align(ranking, dataset)
    positives, ignore = dataset.ground_truth()
    ap, r1 = [], []
    for q, row in enumerate(idx):
        ranks, n = M.positive_ranks(row, positives[q], None if ignore is None else ignore[q])
        ap.append(M.average_precision(ranks, n))
        r1.append(float(ranks.size > 0 and ranks[0] == 0) if n else float("nan"))
    pk = M.revisitop_map(idx, positives, ignore, kappas=(k,))["pk"][:, 0]
    return {"AP": np.asarray(ap, np.float64), "R@1": np.asarray(r1, np.float64), f"P@{k}": pk}
