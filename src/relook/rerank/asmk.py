"""ASMK / ASMK* (``asmk``) as a reranker of a shortlist and as a global retrieval method.

The codebook is read from ``codebook_path`` (a .npy of (k, d) centroids) or trained with faiss k-means on
(a seeded sample of) the gallery's local descriptors; the gallery is indexed in an inverted file with
single assignment, queries use multiple assignment (``multiple_assignment`` nearest words, 5 as in the
public ASMK code used by HOW/FIRe). ``rerank_shortlist`` is overridden because the inverted file is built
over the whole gallery once: with ``research=False`` (default) the top-K candidates are reordered by
their ASMK score (ties keep the global order); with ``research=True`` the ranking is ASMK's own top-K over
the gallery, i.e. ASMK used as global retrieval (``asmk_search`` does the same from stores).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from tqdm.auto import tqdm

from relook.asmk.codebook import sample_rows, train_codebook
from relook.asmk.ivf import AsmkIndex
from relook.errors import ConfigError, DataError
from relook.features.selection import keep_top_n
from relook.io import load_array
from relook.rerank.base import DEFAULTS, Reranker, apply_scores, register_reranker
from relook.types import ImageFeatures, Ranking, Shortlist


@register_reranker("asmk")
class Asmk(Reranker):
    """Aggregated selective match kernel over local descriptors."""

    name = "asmk"
    pairwise = False  # needs the gallery (see Reranker.pairwise)
    default_conf: ClassVar[dict[str, Any]] = {
        "top_k": DEFAULTS["top_k"],  # shortlist entries reordered (research=False)
        "codebook_size": 65536,  # visual words (65k as in Tolias et al. / HOW); must be <= training descriptors
        "codebook_path": None,  # .npy (k, d) centroids to use instead of training; None = train on the gallery
        "train_max": 500000,  # at most this many gallery descriptors (seeded sample) train the codebook
        "kmeans_iters": 20,  # faiss k-means iterations
        "binary": True,  # ASMK* (binarised aggregated residuals) instead of real-valued ASMK
        "alpha": 3.0,  # selectivity exponent
        "tau": 0.0,  # selectivity threshold
        "multiple_assignment": 5,  # visual words per query descriptor (gallery: 1)
        "max_local": 1000,  # local features per image, strongest by attention
        "research": False,  # True: ASMK's own top-K over the whole gallery (global retrieval)
        "seed": 0,  # seed of the codebook sample and k-means
    }
    requires = frozenset({"local_desc", "attention"})

    def __init__(self, **conf: Any) -> None:
        super().__init__(**conf)
        self.centroids: np.ndarray | None = None
        if self.conf["codebook_path"]:
            path = Path(self.conf["codebook_path"])
            if not path.exists():
                raise DataError(f"asmk: codebook {path} not found; train one with `relook classic codebook`")

            centroids = load_array(path, "asmk codebook")
            if not isinstance(centroids, np.ndarray) or centroids.ndim != 2:
                raise DataError(f"{path}: expected a (K, d) codebook array in a .npy file")
            self.centroids = centroids.astype(np.float32)

    def _descs(self, feats: ImageFeatures) -> np.ndarray:
        return keep_top_n(feats, self.conf["max_local"]).get("local_desc")

    def fit(self, descs: np.ndarray) -> Asmk:
        """Train the codebook on local descriptors (N, d) (seeded sample of at most ``train_max``)."""
        sample = sample_rows(np.asarray(descs, np.float32), self.conf["train_max"], int(self.conf["seed"]))
        self.centroids = train_codebook(
            sample, int(self.conf["codebook_size"]), int(self.conf["seed"]), int(self.conf["kmeans_iters"])
        )
        return self

    def build_index(self, gallery: Sequence[np.ndarray]) -> AsmkIndex:
        """Inverted file over gallery descriptor sets; trains the codebook on them first if none is set."""
        if self.centroids is None:
            nonempty = [g for g in gallery if len(g)]
            if not nonempty:
                raise DataError("asmk: the gallery has no local descriptors to train a codebook on")
            self.fit(np.concatenate(nonempty))
        return AsmkIndex.build(
            self.centroids, gallery, bool(self.conf["binary"]), float(self.conf["alpha"]), float(self.conf["tau"])
        )

    def query_scores(self, index: AsmkIndex, query_descs: np.ndarray) -> np.ndarray:
        """ASMK similarity (G,) of one query's descriptors to every indexed gallery image."""
        words, vecs = index.encode(query_descs, int(self.conf["multiple_assignment"]))
        return index.scores(words, vecs)

    def rerank(
        self, query: ImageFeatures, candidates: Sequence[ImageFeatures], global_scores: np.ndarray
    ) -> np.ndarray:
        """ASMK scores of the candidates (an inverted file over just them; needs a codebook: fit first)."""
        if len(candidates) == 0:
            return np.zeros(0, np.float64)
        if self.centroids is None:
            raise ConfigError(
                "asmk.rerank needs a codebook: set codebook_path, call fit(descriptors), or use "
                "rerank_shortlist, which trains one on the gallery"
            )
        index = self.build_index([self._descs(c) for c in candidates])
        return self.query_scores(index, self._descs(query))

    def rerank_shortlist(self, shortlist: Shortlist, query_store, gallery_store, progress: bool = True) -> Ranking:
        """Index the whole gallery, then rescore each query's top-K (or re-search: see module doc)."""
        nwords = self.conf["codebook_size"] if self.centroids is None else len(self.centroids)
        meta = {
            **shortlist.meta,
            "reranker": self.name,
            "asmk.binary": str(self.conf["binary"]),
            "asmk.codebook_size": str(nwords),
        }
        if shortlist.num_queries == 0 or shortlist.k == 0 or not shortlist.gallery_ids:
            return Ranking(shortlist.query_ids, shortlist.gallery_ids, shortlist.indices, shortlist.scores, meta)
        fields = sorted(self.requires)
        gallery = [
            self._descs(gallery_store.read(g, fields))
            for g in tqdm(shortlist.gallery_ids, desc="asmk:index", disable=not progress)
        ]
        index = self.build_index(gallery)
        top_k, k = int(self.conf["top_k"]), shortlist.k
        new_scores, rows = [], []
        for q in tqdm(range(shortlist.num_queries), desc=self.progress_desc, disable=not progress):
            s = self.query_scores(index, self._descs(query_store.read(shortlist.query_ids[q], fields)))
            if self.conf["research"]:
                rows.append(np.argsort(-s, kind="stable")[:k])
                new_scores.append(s[rows[-1]])
            else:
                cand = shortlist.indices[q, :top_k]
                new_scores.append(s[cand[cand >= 0]])
        if self.conf["research"]:
            return Ranking(
                shortlist.query_ids,
                shortlist.gallery_ids,
                np.stack(rows),
                np.stack(new_scores),
                {**meta, "asmk.research": "gallery"},
            )
        ranking = apply_scores(shortlist, new_scores, top_k, method=self.name)
        ranking.meta.update(meta)
        return ranking


def asmk_search(query_store, gallery_store, k: int = 100, progress: bool = True, **conf: Any) -> Ranking:
    """ASMK as global retrieval: top-``k`` gallery images of every query in ``query_store``."""
    gids, qids = gallery_store.ids(), query_store.ids()
    k = min(k, len(gids))
    dummy = Shortlist(
        qids,
        gids,
        np.zeros((len(qids), k), np.int64),
        np.zeros((len(qids), k), np.float32),
        {"queries": str(query_store.path), "gallery": str(gallery_store.path)},
    )
    return Asmk(**{**conf, "research": True}).rerank_shortlist(dummy, query_store, gallery_store, progress)
