"""``chamfer``: a training-free reranker of RRT's own inputs, global cosine + w * Chamfer similarity.

For a query q with local tokens a_1..a_n and a candidate c with tokens b_1..b_m (``local_desc``, each
L2-normalised here, so a dot product is a cosine):

    C(q -> c) = (1/n) sum_i max_j a_i . b_j          (each query token's best match in the candidate)
    C(c -> q) = (1/m) sum_j max_i a_i . b_j
    chamfer(q, c) = (C(q -> c) + C(c -> q)) / 2      (``symmetric: true``, the default)
    score(q, c) = global cosine (the shortlist score) + w * chamfer(q, c)

Why symmetrised: one direction alone rewards a candidate that merely contains the query's patterns
(a cluttered image matches every query token somewhere); the mean of both directions asks that each
image be explained by the other, as the Chamfer distance between point sets does. ``symmetric: false``
keeps the query -> candidate direction alone (ColBERT's MaxSim, averaged instead of summed).

This is the training-free baseline RRT must beat (and its distillation teacher): on the warped-photo split of ``docs/findings/rrt-warped-photos.md``,
the same Lite0 grid tokens with w = 1 gave mAP 88.5 against the global's 86.0, with nothing trained.
An image without tokens has Chamfer similarity 0 (empty in, zero evidence): its score is the global one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from relook.checks import check_shape
from relook.errors import ConfigError
from relook.rerank.base import DEFAULTS, Reranker, apply_scores, register_reranker
from relook.types import ImageFeatures, Ranking, Shortlist


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def chamfer_similarity(query: np.ndarray, candidates: Sequence[np.ndarray], symmetric: bool = True) -> np.ndarray:
    """Chamfer similarity (K,) of ``query`` tokens (n, D) to each of ``candidates`` (m_k, D) (module doc).

    Tokens are L2-normalised first. A pair where either side has no token scores 0.
    """
    query = np.asarray(query, np.float64)
    out = np.zeros(len(candidates), np.float64)
    if query.size == 0:
        return out
    sizes = check_shape(query, ["n", "D"], "query tokens")
    a = _unit(query)
    for k, cand in enumerate(candidates):
        cand = np.asarray(cand, np.float64)
        if cand.size == 0:
            continue
        check_shape(cand, ["m", "D"], f"candidate {k} tokens", {"D": sizes["D"]})
        sim = a @ _unit(cand).T  # (n, m) cosines
        forward = sim.max(axis=1).mean()
        out[k] = 0.5 * (forward + sim.max(axis=0).mean()) if symmetric else forward
    return out


@register_reranker("chamfer")
class ChamferReranker(Reranker):
    """global cosine + ``weight`` * Chamfer similarity of the local tokens (module docstring)."""

    name = "chamfer"
    default_conf: ClassVar[dict[str, Any]] = {
        "top_k": DEFAULTS["top_k"],  # shortlist entries rescored
        "weight": 1.0,  # w in score = global + w * chamfer (the distillation teacher's 1); chosen on val by the benchmark
        "symmetric": True,  # mean of both directions (True) or query -> candidate only (False)
    }
    requires: ClassVar[frozenset[str]] = frozenset({"local_desc"})

    def __init__(self, **conf: Any) -> None:
        super().__init__(**conf)
        w = self.conf["weight"]
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not np.isfinite(w) or w < 0:
            raise ConfigError(f"reranker 'chamfer': weight must be a finite number >= 0, got {w!r}")

    def rerank(
        self, query: ImageFeatures, candidates: Sequence[ImageFeatures], global_scores: np.ndarray
    ) -> np.ndarray:
        """global_scores + w * chamfer (K,); empty in, empty out."""
        if len(candidates) == 0:
            return np.zeros(0, np.float64)
        chamfer = chamfer_similarity(
            query.get("local_desc"), [c.get("local_desc") for c in candidates], bool(self.conf["symmetric"])
        )
        return np.asarray(global_scores, np.float64) + float(self.conf["weight"]) * chamfer

    def rerank_shortlist(self, shortlist: Shortlist, query_store, gallery_store, progress: bool = True) -> Ranking:
        """As the base class, but each gallery image's tokens are read from the store once, not once per query."""
        top_k = int(self.conf["top_k"])
        heads = [row[:top_k][row[:top_k] >= 0] for row in shortlist.indices]
        needed = sorted({int(i) for h in heads for i in h})
        tokens = {i: gallery_store.read(shortlist.gallery_ids[i], ["local_desc"]).local_desc for i in needed}
        new_scores = []
        for q, head in enumerate(heads):
            query = query_store.read(shortlist.query_ids[q], ["local_desc"]).local_desc
            chamfer = chamfer_similarity(query, [tokens[int(i)] for i in head], bool(self.conf["symmetric"]))
            new_scores.append(shortlist.scores[q, : len(head)] + float(self.conf["weight"]) * chamfer)
        return apply_scores(shortlist, new_scores, top_k, method=self.name)
