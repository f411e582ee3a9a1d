"""Score a ``Ranking`` on a ``RetrievalDataset`` with the metrics of its protocol, and print tables.

* ``revisitop`` datasets: mAP and mP@{1,5,10} for Easy, Medium and Hard.
* ``classic`` datasets (original Oxford 5k / Paris 6k): one mAP over ok positives, junk ignored.
* ``labels`` datasets (SOP, CUB, Cars, CO3D-Retrieve, synthetic): R@1, R@10, R@50 and mAP (RRT, epipolar
  paper) and P@1, R-Precision, MAP@R (the OT reranking paper).

The ranking may be truncated to the shortlist length: positives beyond it count as not retrieved, so
mAP on a short list is a lower bound (search with a larger ``k`` than the reranked ``top_k`` to avoid it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from relook.errors import DataError
from relook.eval import metrics as M
from relook.eval.protocols import evaluate_classic, evaluate_revisitop
from relook.types import Shortlist


def align(ranking: Shortlist, dataset) -> np.ndarray:
    """Ranking indices re-expressed in the dataset's gallery order, rows in its query order."""
    gpos = {g: i for i, g in enumerate(dataset.gallery_ids)}
    qpos = {q: i for i, q in enumerate(ranking.query_ids)}
    missing = [q for q in dataset.query_ids if q not in qpos]
    if missing:
        raise DataError(
            f"ranking lacks {len(missing)} of the dataset's queries (e.g. {missing[0]!r}); "
            "was it built from the same dataset and split?"
        )
    unknown = [g for g in ranking.gallery_ids if g not in gpos]
    if unknown:
        raise DataError(f"ranking's gallery has {len(unknown)} ids not in dataset {dataset.name} (e.g. {unknown[0]!r})")
    remap = np.array([gpos[g] for g in ranking.gallery_ids] + [-1], dtype=np.int64)
    rows = ranking.indices[[qpos[q] for q in dataset.query_ids]]
    return remap[rows]  # -1 padding maps to remap[-1] = -1


def check_has_positives(dataset) -> None:
    """``DataError`` (one line, naming the dataset) when no query has a positive in the gallery: every
    retrieval metric would be undefined. Queries without positives among others are left out of the means."""
    positives, _ = dataset.ground_truth("medium" if dataset.protocol == "revisitop" else None)
    if not any(len(p) for p in positives):
        raise DataError(
            f"dataset {dataset.name} at {dataset.root}: none of its {len(dataset.queries)} queries has "
            f"a positive among the {len(dataset.gallery)} gallery images, so no retrieval metric is "
            "defined; check the split, the labels or the ground-truth file"
        )


def evaluate(ranking: Shortlist, dataset, ks: Sequence[int] = (1, 10, 50)) -> dict[str, float]:
    """Metrics of ``dataset``'s protocol as a flat ``{name: value}`` dict (fractions in [0, 1])."""
    return _metrics(align(ranking, dataset), dataset, None, ks)


def per_query(
    ranking: Shortlist, dataset, query_ids: Sequence[str], ks: Sequence[int] = (1, 10, 50)
) -> dict[str, np.ndarray]:
    """Each metric of ``evaluate`` for each of ``query_ids`` alone: ``{name: (len(query_ids),)}``, NaN
    where a query has no positive for it. Every metric of every protocol is the mean over the queries
    with positives of such a per-query value, so ``mean_of_queries`` of these arrays over all queries
    gives ``evaluate``'s numbers (what lets ``relook evaluate --shard`` split the queries)."""
    idx = align(ranking, dataset)
    qpos = {q: i for i, q in enumerate(dataset.query_ids)}
    missing = [q for q in query_ids if q not in qpos]
    if missing:
        raise DataError(f"query {missing[0]!r} is not a query of dataset {dataset.name}")
    rows = [_metrics(idx, dataset, [qpos[q]], ks) for q in query_ids]
    names = list(rows[0]) if rows else list(_metrics(idx[:0], dataset, [], ks))
    return {n: np.array([r[n] for r in rows], np.float64) for n in names}


def mean_of_queries(values: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """``{name: mean over the non-NaN entries}`` (NaN when there are none): ``per_query`` back to ``evaluate``."""
    out = {}
    for name, v in values.items():
        v = np.asarray(v, np.float64)
        out[name] = float(v[~np.isnan(v)].mean()) if (~np.isnan(v)).any() else float("nan")
    return out


def _metrics(idx: np.ndarray, dataset, rows: Sequence[int] | None, ks: Sequence[int]) -> dict[str, float]:
    """The protocol's metrics over query rows ``rows`` (positions in the dataset's query order; None: all)
    of the aligned ranking ``idx``."""
    sel = slice(None) if rows is None else list(rows)
    if dataset.protocol in ("revisitop", "classic"):
        gnd = dataset.gnd if rows is None else [dataset.gnd[r] for r in rows]
        if dataset.protocol == "classic":
            return evaluate_classic(idx[sel], gnd)
        res = evaluate_revisitop(idx[sel], gnd)
        return {f"{s[0].upper()}:{m}": v for s, d in res.items() for m, v in d.items()}
    positives, ignore = dataset.ground_truth()
    if rows is not None:
        positives, ignore = [positives[r] for r in rows], [ignore[r] for r in rows]
    idx = idx[sel]
    out = {f"R@{k}": v for k, v in M.recall_at_k(idx, positives, ks, ignore).items()}
    out["mAP"] = M.mean_average_precision(idx, positives, ignore)
    out.update(M.musgrave_metrics(idx, positives, ignore))
    return out


def _cell(value, scale: float) -> str:
    """A metric cell: the value, or ``-`` when it is undefined (NaN, null) or absent."""
    if value is None or not np.isfinite(value):
        return f"{'-':>9}"
    return f"{value * scale:>9.2f}"


def format_table(
    rows: Mapping[str, Mapping[str, float]],
    extra_cols: Mapping[str, Mapping[str, str]] | None = None,
    percent: bool = True,
) -> str:
    """A plain-text table: one row per method, one column per metric (values x100 by default); an undefined
    metric (NaN or None) shows as ``-``."""
    methods = list(rows)
    metrics = list(dict.fromkeys(k for r in rows.values() for k in r))
    extras = list(dict.fromkeys(k for r in (extra_cols or {}).values() for k in r))
    width = max([len(m) for m in methods] + [8]) + 2
    head = f"{'method':<{width}}" + "".join(f"{m:>9}" for m in metrics) + "".join(f"{e:>14}" for e in extras)
    lines = [head, "-" * len(head)]
    for name in methods:
        vals = "".join(_cell(rows[name].get(m), 100 if percent else 1) for m in metrics)
        ext = "".join(f"{(extra_cols or {}).get(name, {}).get(e, ''):>14}" for e in extras)
        lines.append(f"{name:<{width}}{vals}{ext}")
    return "\n".join(lines)
