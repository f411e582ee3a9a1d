"""Global search: inner-product top-K over global descriptors with faiss, returning a ``Shortlist``.

``build_index`` makes an exact ``IndexFlatIP`` by default, or an ``IVF<nlist>,PQ<m>`` index for large
galleries (trained on the gallery itself, seeded). Descriptors are expected L2-normalised, so inner
product is cosine similarity.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import faiss
import numpy as np

from relook.checks import check_finite, check_shape
from relook.errors import ConfigError, DataError, ShapeError
from relook.types import Shortlist


def _as_matrix(x: np.ndarray, name: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    check_shape(x, ["N", "D"], name)
    check_finite(x, name)
    return x


def build_index(gallery: np.ndarray, kind: str = "flat", nlist: int | None = None, m: int = 64,
                nprobe: int = 16, seed: int = 0, nbits: int = 8) -> faiss.Index:
    """Index the gallery descriptors ``(G, D)`` for inner-product search.

    kind: ``"flat"`` (exact) or ``"ivfpq"`` (approximate; ``nlist`` lists, default ~4 sqrt(G), ``m``
    sub-quantisers of ``nbits`` bits, ``nprobe`` lists visited at search time).
    """
    gallery = _as_matrix(gallery, "gallery descriptors")
    n, d = gallery.shape
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
    elif kind == "ivfpq":
        if d % m:
            raise ConfigError(f"ivfpq: descriptor dim {d} must be divisible by m={m}")
        nlist = nlist or max(1, int(4 * np.sqrt(n)))
        if n < max(nlist, 256):
            raise ConfigError(f"ivfpq needs at least max(nlist, 256)={max(nlist, 256)} gallery vectors to "
                              f"train, got {n}; use kind='flat'")
        index = faiss.index_factory(d, f"IVF{nlist},PQ{m}x{nbits}", faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        faiss.ParameterSpace().set_index_parameter(index, "nprobe", nprobe)
        index.train(gallery)
    else:
        raise ConfigError(f"unknown index kind {kind!r}; known: flat, ivfpq")
    index.add(gallery)
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int, query_ids: Sequence[str],
           gallery_ids: Sequence[str], meta: dict | None = None) -> Shortlist:
    """Top-``k`` gallery items per query by inner product; ``k`` is capped at the gallery size."""
    if index.ntotal != len(gallery_ids):
        raise DataError(f"index holds {index.ntotal} vectors but {len(gallery_ids)} gallery ids were given")
    queries = _as_matrix(queries, "query descriptors") if len(queries) else np.zeros((0, index.d), np.float32)
    if queries.shape[1] != index.d:
        raise ShapeError(f"query descriptors have dim {queries.shape[1]} but the index has dim {index.d}; "
                         "were queries and gallery extracted with the same model?")
    if len(queries) != len(query_ids):
        raise ShapeError(f"{len(queries)} query descriptors but {len(query_ids)} query ids")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    k = min(k, index.ntotal)
    if len(queries) == 0 or k == 0:
        return Shortlist(list(query_ids), list(gallery_ids), np.zeros((len(queries), 0), np.int64),
                         np.zeros((len(queries), 0), np.float32), dict(meta or {}))
    scores, indices = index.search(queries, k)
    return Shortlist(list(query_ids), list(gallery_ids), indices, scores, dict(meta or {}))


def exact_search(queries: np.ndarray, gallery: np.ndarray, k: int, query_ids: Sequence[str],
                 gallery_ids: Sequence[str], meta: dict | None = None) -> Shortlist:
    """Convenience: exact inner-product top-``k`` (``IndexFlatIP``) in one call."""
    gallery = _as_matrix(gallery, "gallery descriptors")
    queries = np.asarray(queries, np.float32)
    if queries.ndim == 2 and queries.shape[1] != gallery.shape[1]:
        raise ShapeError(f"query descriptors have dim {queries.shape[1]} but gallery descriptors have dim "
                         f"{gallery.shape[1]}; were both extracted with the same model?")
    return search(build_index(gallery), queries, k, query_ids, gallery_ids, meta)


def write_index(index: faiss.Index, path: str | Path) -> Path:
    from relook.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))
    return path


def read_index(path: str | Path) -> faiss.Index:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such index file; run `relook index` first")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as e:
        raise DataError(f"{path}: not a faiss index ({str(e).splitlines()[0]})") from None
