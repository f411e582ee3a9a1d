"""The ``Reranker`` role: rescore the top-K candidates of each query with richer evidence.

A reranker reads only what extractors wrote into the feature stores (its ``requires`` fields) and
never touches images. ``rerank`` scores one query against its candidates; ``rerank_shortlist`` runs it
over a whole ``Shortlist`` and returns a ``Ranking`` whose first ``top_k`` columns are reordered by the
new scores and whose remaining columns keep the global order. Rerankers that can batch many pairs
(RRT, OT) override ``rerank_shortlist``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from tqdm.auto import tqdm

from relook.config import check_count, merge_conf
from relook.errors import ShapeError
from relook.registry import Registry
from relook.types import ImageFeatures, Ranking, Shortlist

#: the options every reranker has, stated once: a reranker's ``default_conf`` adds its own and refers to
#: these by name (``"top_k": DEFAULTS["top_k"]``), never restates the number
DEFAULTS: dict[str, Any] = {
    "top_k": 100,  # shortlist entries rescored per query (RRT, DELG and the OT paper's K = 100)
}

RERANKERS: Registry[Reranker] = Registry("reranker")
register_reranker = RERANKERS.register


def create_reranker(name: str, **conf: Any) -> Reranker:
    """Build the reranker registered as ``name`` (``gv``, ``aqe``, ``asmk``, ``rrt``, ``ot`` ...).

    The built-in ones are registered by then: importing this module runs ``relook/rerank/__init__.py``
    first, which imports them (so no import of the package here: it would be a no-op and an import cycle)."""
    return RERANKERS.create(name, **conf)


def list_rerankers() -> list[str]:
    """The registered rerankers' names (the built-in ones included, see ``create_reranker``)."""
    return RERANKERS.names()


class Reranker(ABC):
    """Base class: ``default_conf`` (every key commented in subclasses), ``requires`` store fields."""

    name: ClassVar[str] = "reranker"
    default_conf: ClassVar[dict[str, Any]] = dict(DEFAULTS)
    requires: ClassVar[frozenset[str]] = frozenset()
    #: a query-candidate pair's score depends on those two images alone (``relook pair`` can score it);
    #: False for rerankers that need the gallery (query expansion, a gallery-trained codebook)
    pairwise: ClassVar[bool] = True

    def __init__(self, **conf: Any) -> None:
        self.conf = self.check_conf(conf, f"reranker {self.name!r}")

    @classmethod
    def check_conf(cls, conf: dict[str, Any], owner: str) -> dict[str, Any]:
        """``conf`` over ``DEFAULTS`` and the class's ``default_conf``, validated (``merge_conf``: unknown
        option, wrong type; ``top_k``: an integer >= 1, never null). The one check of a reranker's options:
        ``__init__`` and the config composer (``relook.experiment``) both call it."""
        merged = merge_conf({**DEFAULTS, **cls.default_conf}, conf, owner)
        check_count(merged["top_k"], f"{owner}: option 'top_k'")
        return merged

    #: the name a run gives this reranker (config ``label``, e.g. ``gv-lightglue`` for a ``gv``); None: ``name``
    label: str | None = None

    @property
    def progress_desc(self) -> str:
        """The progress bar's text: ``rerank:<label>``, so two configurations of one reranker tell apart."""
        return f"rerank:{self.label or self.name}"

    @abstractmethod
    def rerank(
        self, query: ImageFeatures, candidates: Sequence[ImageFeatures], global_scores: np.ndarray
    ) -> np.ndarray:
        """New scores (K,) for ``candidates`` of ``query`` (higher is better); empty in, empty out."""

    def rerank_shortlist(self, shortlist: Shortlist, query_store, gallery_store, progress: bool = True) -> Ranking:
        """Rescore the top ``conf['top_k']`` candidates of every query; returns a ``Ranking``."""
        top_k = int(self.conf["top_k"])
        new_scores = []
        for q in tqdm(range(shortlist.num_queries), desc=self.progress_desc, disable=not progress):
            cand = shortlist.indices[q, :top_k]
            cand = cand[cand >= 0]
            query = query_store.read(shortlist.query_ids[q], sorted(self.requires) or None)
            candidates = [gallery_store.read(shortlist.gallery_ids[i], sorted(self.requires) or None) for i in cand]
            new_scores.append(self.rerank(query, candidates, shortlist.scores[q, : len(cand)]))
        return apply_scores(shortlist, new_scores, top_k, method=self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.conf})"


def apply_scores(shortlist: Shortlist, new_scores: Sequence[np.ndarray], top_k: int, method: str) -> Ranking:
    """Reorder the first ``top_k`` columns of each row by ``new_scores[q]`` (ties: global order kept).

    Columns beyond ``top_k`` keep their global order and scores shifted below every reranked one, so
    the returned scores are descending along each row.
    """
    idx = shortlist.indices.copy()
    scores = shortlist.scores.astype(np.float32).copy()
    for q, s in enumerate(new_scores):
        s = np.asarray(s, dtype=np.float64).ravel()
        n = len(s)
        if n == 0:
            continue
        valid = int((shortlist.indices[q, :top_k] >= 0).sum())
        if n != valid:
            raise ShapeError(f"query {shortlist.query_ids[q]!r}: reranker returned {n} scores for {valid} candidates")
        if not np.isfinite(s).all():
            raise ShapeError(f"query {shortlist.query_ids[q]!r}: reranker returned non-finite scores")
        order = np.argsort(-s, kind="stable")
        idx[q, :n] = shortlist.indices[q, :n][order]
        scores[q, :n] = s[order]
        if idx.shape[1] > n:  # the untouched tail stays below the reranked head
            tail = shortlist.scores[q, n:].astype(np.float64)
            scores[q, n:] = s.min() - 1.0 - (tail.max() - tail) if tail.size else tail
    meta = {**shortlist.meta, "reranker": method, "reranked_top_k": str(top_k)}
    return Ranking(shortlist.query_ids, shortlist.gallery_ids, idx, scores, meta)
