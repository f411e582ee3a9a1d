"""What each benchmark row costs: seconds per image of its extraction and per image pair of its matching.

Read from the stage timings that ``relook.pipeline`` records in each run folder (``timings.json``), so the
numbers are those of the runs that made the table, on the machine (and under the load) that ran them:

* ``s/image``: the ``extract:<label>`` stage's wall time over the images it extracted, for the extractor the
  row reads (a reranker row: its ``features``, else the global extractor; the global row and a global row:
  their own). A store extracted in an earlier run keeps that run's record;
* ``s/pair``: the ``rerank:<label>`` stage's wall time over the query-candidate pairs it scored,
  the sum over queries of ``min(top_k, K_q)`` (K_q: the query's shortlist length), for rerankers whose score is a function of the pair
  (``Reranker.pairwise``); the time includes reading both stores and the robust fit, everything the
  reranker does per pair. Rerankers over the whole gallery (aQE, ASMK) have no per-pair cost (None).

Pooled over sets: total seconds over total images (pairs), so a set weighs by its size.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def row_costs(
    timings: dict[str, dict], extractor: str | None, reranker: dict | None, candidates: np.ndarray
) -> dict[str, Any]:
    """``{"extract_s", "images", "match_s", "pairs"}`` of one row of one run (None where not recorded).

    ``reranker``: the row's reranker item (``{label, name, top_k?, ...}``) or None for a global row;
    ``candidates``: (Q,) shortlist entries of each query (K, fewer where the gallery is smaller).
    """
    from relook.rerank import RERANKERS  # lazy (start-up): loads torch through the reranker registry
    from relook.rerank.base import DEFAULTS  # lazy (start-up): as above

    ext = timings.get(f"extract:{extractor}", {}) if extractor else {}
    out: dict[str, Any] = {"extract_s": ext.get("seconds"), "images": ext.get("images"), "match_s": None, "pairs": None}
    if reranker is not None and getattr(RERANKERS.get(reranker["name"]), "pairwise", False):
        rr = timings.get(f"rerank:{reranker['label']}", {})
        if rr.get("seconds") is not None:
            top_k = int(reranker.get("top_k", DEFAULTS["top_k"]))
            out.update(match_s=rr["seconds"], pairs=int(np.minimum(np.asarray(candidates), top_k).sum()))
    return out


def pool_costs(costs: list[dict[str, Any]]) -> dict[str, Any]:
    """Sums of seconds and counts over sets; a quantity missing in any set is None pooled."""
    out: dict[str, Any] = {}
    for s, n in (("extract_s", "images"), ("match_s", "pairs")):
        ok = costs and all(c.get(s) is not None and c.get(n) for c in costs)
        out[s] = sum(c[s] for c in costs) if ok else None
        out[n] = sum(c[n] for c in costs) if ok else None
    return out


def per_unit(costs: dict[str, Any] | None) -> tuple[float, float]:
    """(s/image, s/pair) of a costs record; NaN where not recorded."""
    nan = float("nan")
    if not costs:
        return nan, nan
    img = costs["extract_s"] / costs["images"] if costs.get("extract_s") is not None and costs.get("images") else nan
    pair = costs["match_s"] / costs["pairs"] if costs.get("match_s") is not None and costs.get("pairs") else nan
    return float(img), float(pair)
