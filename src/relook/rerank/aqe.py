"""Alpha query expansion (``aqe``, Radenovic et al., TPAMI 2018) and database-side augmentation (DBA).

alpha-QE replaces the query descriptor q by

    q' = normalise( q + sum_{i=1..n} max(q . x_i, 0)^alpha  x_i )

where x_1..x_n are its top-n neighbours (the query itself is included with weight (q . q)^alpha = 1),
alpha = 3, then searches again with q'. DBA applies the same to every gallery descriptor with its own
top-n gallery neighbours (itself included with weight 1). Negative similarities get weight 0 (with an odd
alpha they would otherwise push the query away); this clamp is our reading, the formula is the paper's.

Presets (``preset``; explicit options win): ``"radenovic"`` = alpha 3, n 2 (the paper's alpha; the default
values); ``"rrt-official"`` = n (k) 2, alpha 0.3, the values of the official RRT evaluation code the RRT
paper's aQE rows come from.

As a reranker (``rerank_shortlist``, overridden because it needs the whole gallery): the neighbours are
the first n entries of the given shortlist, their weights the dot products with the (DBA-augmented, if
``dba_n`` > 0) gallery descriptors, and with ``research=True`` (default) the expanded queries are searched
again over the whole gallery, so the returned Ranking (same K as the shortlist) may contain images that
were not in the shortlist. ``research=False`` (and the per-query ``rerank``) only rescore the top-K.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import faiss
import numpy as np

from relook.checks import check_shape
from relook.errors import ConfigError
from relook.rerank.base import DEFAULTS, Reranker, apply_scores, register_reranker
from relook.search import exact_search
from relook.types import ImageFeatures, Ranking, Shortlist


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def alpha_qe(
    queries: np.ndarray, neighbours: np.ndarray, alpha: float = 3.0, valid: np.ndarray | None = None
) -> np.ndarray:
    """Expanded queries (Q, D) from ``queries`` (Q, D) and their ``neighbours`` (Q, n, D).

    ``valid`` (Q, n) bool marks real neighbours (padding False). Weights max(q . x_i, 0)^alpha; the query
    itself enters with weight 1. Output rows are L2-normalised.
    """
    queries = np.asarray(queries, np.float64)
    neighbours = np.asarray(neighbours, np.float64)
    sizes = check_shape(queries, ["Q", "D"], "queries")
    if neighbours.size == 0:
        return _normalise(queries).astype(np.float32)
    check_shape(neighbours, ["Q", "n", "D"], "neighbours", sizes)
    w = np.maximum(np.einsum("qd,qnd->qn", queries, neighbours), 0.0) ** alpha
    if valid is not None:
        w = w * np.asarray(valid, bool)
    return _normalise(queries + np.einsum("qn,qnd->qd", w, neighbours)).astype(np.float32)


def dba(gallery: np.ndarray, n: int, alpha: float = 3.0) -> np.ndarray:
    """Database-side augmentation: each gallery row (G, D) alpha-QE'd with its n nearest other rows."""
    gallery = np.ascontiguousarray(gallery, np.float32)
    check_shape(gallery, ["G", "D"], "gallery")
    g = len(gallery)
    if n <= 0 or g <= 1:
        return gallery.copy()
    k = min(n + 1, g)
    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    _, idx = index.search(gallery, k)
    nbrs = np.empty((g, k - 1), np.int64)
    for i in range(g):  # drop the row itself (usually first; duplicates may move it)
        row = idx[i][idx[i] != i]
        nbrs[i] = row[: k - 1] if len(row) >= k - 1 else np.pad(row, (0, k - 1 - len(row)), constant_values=-1)
    valid = nbrs >= 0
    return alpha_qe(gallery, gallery[np.where(valid, nbrs, 0)], alpha, valid)


#: named parameter sets (module docstring)
PRESETS: dict[str, dict[str, Any]] = {"radenovic": {"n": 2, "alpha": 3.0}, "rrt-official": {"n": 2, "alpha": 0.3}}


@register_reranker("aqe")
class AlphaQueryExpansion(Reranker):
    """alpha-QE (+ optional DBA) over global descriptors."""

    name = "aqe"
    pairwise = False  # needs the gallery (see Reranker.pairwise)
    default_conf: ClassVar[dict[str, Any]] = {
        "top_k": DEFAULTS["top_k"],  # shortlist entries rescored when research=False
        "n": 2,  # neighbours used to expand the query (the RRT supplementary does not state its n)
        "alpha": 3.0,  # similarity exponent (Radenovic et al.: 3)
        "dba_n": 0,  # neighbours for database-side augmentation of the gallery; 0 = no DBA
        "research": True,  # search the whole gallery again with the expanded query
        "preset": None,  # radenovic (alpha 3) | rrt-official (n 2, alpha 0.3); fills n and alpha unless given
    }
    requires = frozenset({"global_desc"})

    def __init__(self, **conf: Any) -> None:
        preset = conf.get("preset")
        if preset is not None:
            if preset not in PRESETS:
                raise ConfigError(f"aqe: unknown preset {preset!r}; known: {sorted(PRESETS)}")
            conf = {**PRESETS[preset], **conf}
        super().__init__(**conf)
        if int(self.conf["n"]) < 0 or int(self.conf["dba_n"]) < 0:
            raise ConfigError(f"aqe: n and dba_n must be >= 0, got {self.conf['n']}, {self.conf['dba_n']}")

    def rerank(
        self, query: ImageFeatures, candidates: Sequence[ImageFeatures], global_scores: np.ndarray
    ) -> np.ndarray:
        """Rescore the candidates with the query expanded by its first n candidates (no gallery re-search)."""
        if len(candidates) == 0:
            return np.zeros(0, np.float64)
        x = np.stack([c.get("global_desc") for c in candidates]).astype(np.float32)
        order = np.argsort(-np.asarray(global_scores, np.float64), kind="stable")[: int(self.conf["n"])]
        q = alpha_qe(query.get("global_desc")[None], x[order][None], float(self.conf["alpha"]))[0]
        return (x @ q).astype(np.float64)

    def rerank_shortlist(self, shortlist: Shortlist, query_store, gallery_store, progress: bool = True) -> Ranking:
        """Expand every query with its first n shortlist entries, then re-search the gallery (see module doc)."""
        meta = {
            **shortlist.meta,
            "reranker": self.name,
            "aqe.n": str(self.conf["n"]),
            "aqe.alpha": str(self.conf["alpha"]),
            "aqe.dba_n": str(self.conf["dba_n"]),
        }
        nq, k = shortlist.num_queries, shortlist.k
        if nq == 0 or k == 0 or not shortlist.gallery_ids:
            return Ranking(shortlist.query_ids, shortlist.gallery_ids, shortlist.indices, shortlist.scores, meta)
        gallery = gallery_store.stack("global_desc", shortlist.gallery_ids).astype(np.float32)
        queries = query_store.stack("global_desc", shortlist.query_ids).astype(np.float32)
        if self.conf["dba_n"]:
            gallery = dba(gallery, int(self.conf["dba_n"]), float(self.conf["alpha"]))
        n = min(int(self.conf["n"]), k)
        nb = shortlist.indices[:, :n]
        expanded = alpha_qe(queries, gallery[np.maximum(nb, 0)], float(self.conf["alpha"]), nb >= 0)
        if self.conf["research"]:
            exclude = None
            if shortlist.meta.get("exclude") == "self":  # the shortlist left each query out: so does the re-search
                gpos = {g: i for i, g in enumerate(shortlist.gallery_ids)}
                exclude = np.array([gpos.get(q, -1) for q in shortlist.query_ids], np.int64)
            out = exact_search(
                expanded,
                gallery,
                k,
                shortlist.query_ids,
                shortlist.gallery_ids,
                {**meta, "aqe.research": "gallery"},
                exclude=exclude,
            )
            return Ranking(out.query_ids, out.gallery_ids, out.indices, out.scores, out.meta)
        top_k = int(self.conf["top_k"])
        scores = [gallery[row[:top_k][row[:top_k] >= 0]] @ expanded[q] for q, row in enumerate(shortlist.indices)]
        return apply_scores(shortlist, scores, top_k, method=self.name)
