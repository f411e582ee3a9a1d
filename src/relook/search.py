"""Global search: inner-product top-K over global descriptors with faiss, returning a ``Shortlist``.

``build_index`` makes an exact ``IndexFlatIP`` by default, or an ``IVF<nlist>,PQ<m>`` index for large
galleries (trained on the gallery itself, seeded). Descriptors are expected L2-normalised, so inner
product is cosine similarity.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from relook.checks import check_finite, check_shape
from relook.errors import ConfigError, DataError, ShapeError
from relook.io import atomic_path
from relook.types import Shortlist


def _as_matrix(x: np.ndarray, name: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    check_shape(x, ["N", "D"], name)
    check_finite(x, name)
    return x


def build_index(
    gallery: np.ndarray,
    kind: str = "flat",
    nlist: int | None = None,
    m: int = 64,
    nprobe: int = 16,
    seed: int = 0,
    nbits: int = 8,
) -> faiss.Index:
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
            raise ConfigError(
                f"ivfpq needs at least max(nlist, 256)={max(nlist, 256)} gallery vectors to "
                f"train, got {n}; use kind='flat'"
            )
        index = faiss.index_factory(d, f"IVF{nlist},PQ{m}x{nbits}", faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        faiss.ParameterSpace().set_index_parameter(index, "nprobe", nprobe)
        index.train(gallery)
    else:
        raise ConfigError(f"unknown index kind {kind!r}; known: flat, ivfpq")
    index.add(gallery)
    return index


def search(
    index: faiss.Index,
    queries: np.ndarray,
    k: int,
    query_ids: Sequence[str],
    gallery_ids: Sequence[str],
    meta: dict | None = None,
    exclude: Sequence[int] | None = None,
) -> Shortlist:
    """Top-``k`` gallery items per query by inner product.

    queries: (Q, D). ``exclude``: (Q,) the gallery index each query must never get as a candidate (the
    query itself when queries are gallery images, e.g. ``RetrievalDataset.query_in_gallery``), -1 for
    none. It is removed *before* the list is cut, so every row holds ``k`` real candidates;
    ``k`` is capped at the number of gallery items a query can get (``G - 1`` when every query excludes
    one), and shorter rows are padded with index -1 and score -inf.

    Ties: items with exactly equal scores are ordered by ascending gallery index, also across the cut at
    ``k`` (the search widens until the first item left out scores strictly below the last one kept), so
    the shortlist is a deterministic function of the scores.
    """
    if index.ntotal != len(gallery_ids):
        raise DataError(f"index holds {index.ntotal} vectors but {len(gallery_ids)} gallery ids were given")
    queries = _as_matrix(queries, "query descriptors") if len(queries) else np.zeros((0, index.d), np.float32)
    if queries.shape[1] != index.d:
        raise ShapeError(
            f"query descriptors have dim {queries.shape[1]} but the index has dim {index.d}; "
            "were queries and gallery extracted with the same model?"
        )
    if len(queries) != len(query_ids):
        raise ShapeError(f"{len(queries)} query descriptors but {len(query_ids)} query ids")
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    meta = dict(meta or {})
    n = index.ntotal
    if exclude is None:
        exclude = np.full(len(queries), -1, np.int64)
    else:
        exclude = np.asarray(exclude, dtype=np.int64).ravel()
        if len(exclude) != len(queries):
            raise ShapeError(f"exclude has {len(exclude)} entries but there are {len(queries)} queries")
        if exclude.size and (exclude.min() < -1 or exclude.max() >= n):
            raise ShapeError(f"exclude must hold gallery indices in [-1, {n}), got {exclude.min()}..{exclude.max()}")
        if (exclude >= 0).any():
            meta["exclude"] = "self"  # tells later re-searches (aqe) to leave the query out too
    k = min(k, n - int(exclude.size > 0 and (exclude >= 0).all()))
    if len(queries) == 0 or k <= 0:
        return Shortlist(
            list(query_ids),
            list(gallery_ids),
            np.zeros((len(queries), 0), np.int64),
            np.zeros((len(queries), 0), np.float32),
            meta,
        )
    indices = np.full((len(queries), k), -1, np.int64)
    scores = np.full((len(queries), k), -np.inf, np.float32)
    todo = np.arange(len(queries))
    fetch = min(n, k + 2)  # one slot for the excluded item, one to see whether the k-th score is tied
    while todo.size:
        found, got, short = _ordered_top(index, queries[todo], fetch, exclude[todo])
        indices[todo], scores[todo] = found[:, :k], got[:, :k]
        # a row is final when all was fetched, when faiss had fewer results than asked, or when the lowest
        # score fetched lies strictly below the k-th kept one (then no unseen item ties with it)
        lowest = got[np.arange(len(todo)), np.maximum((found >= 0).sum(1) - 1, 0)]
        final = (fetch >= n) | short | (lowest < got[:, k - 1])
        todo = todo[~final]
        fetch = min(n, 2 * fetch)
    return Shortlist(list(query_ids), list(gallery_ids), indices, scores, meta)


def _ordered_top(
    index: faiss.Index, queries: np.ndarray, fetch: int, exclude: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``fetch`` per query without its excluded item, ordered by (score descending, index ascending).

    Returns (indices (Q, fetch) with -1 after the valid ones, scores (Q, fetch) with -inf there, and
    (Q,) whether the index itself returned fewer than ``fetch`` items).
    """
    got, found = index.search(queries, fetch)
    found = found.astype(np.int64)
    short = found[:, -1] < 0
    got = got.astype(np.float32)
    drop = (found < 0) | (found == exclude[:, None])
    got[drop] = -np.inf
    tie_key = np.where(drop, np.iinfo(np.int64).max, found)
    order = np.lexsort((tie_key, -got.astype(np.float64)), axis=1)
    found, got = np.take_along_axis(found, order, 1), np.take_along_axis(got, order, 1)
    found[~np.isfinite(got)] = -1
    return found, got, short


def exact_search(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    query_ids: Sequence[str],
    gallery_ids: Sequence[str],
    meta: dict | None = None,
    exclude: Sequence[int] | None = None,
) -> Shortlist:
    """Convenience: exact inner-product top-``k`` (``IndexFlatIP``) in one call; ``exclude`` and ties as in
    ``search``."""
    gallery = _as_matrix(gallery, "gallery descriptors")
    queries = np.asarray(queries, np.float32)
    if queries.ndim == 2 and queries.shape[1] != gallery.shape[1]:
        raise ShapeError(
            f"query descriptors have dim {queries.shape[1]} but gallery descriptors have dim "
            f"{gallery.shape[1]}; were both extracted with the same model?"
        )
    return search(build_index(gallery), queries, k, query_ids, gallery_ids, meta, exclude)


def write_index(index: faiss.Index, path: str | Path) -> Path:
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
