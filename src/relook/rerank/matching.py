"""Putative local-feature matches: mutual nearest neighbours (+ optional Lowe ratio test), batched.

One query's descriptors (N, d) are compared with many candidates at once: candidates are padded to
(B, M, d) and minus the squared distances, 2 q.c - ||q||^2 - ||c||^2, come out of one batched matmul of
augmented vectors (torch; see ``augment``), so the cost per query is a few GEMMs and two reductions
rather than B Python-level loops. A pair (i, j) is kept when j is
i's nearest neighbour in the candidate and i is j's nearest neighbour in the query (mutual NN); with
``ratio`` also when dist(i, j) < ratio * dist(i, second nearest) (Lowe, IJCV 2004); with
``max_distance`` also when dist(i, j) < max_distance (DELG's GV uses 1.0 on unit descriptors).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from relook.errors import ShapeError

_EMPTY = (np.zeros(0, np.int64), np.zeros(0, np.int64))


_PAD = -1e30  # "minus squared distance" of padded candidate slots


def augment_query(q: np.ndarray) -> np.ndarray:
    """(N, d) -> (N, d + 2) rows [q, -|q|^2, 1]."""
    q = np.asarray(q, np.float32)
    return np.concatenate([q, -(q * q).sum(1, keepdims=True), np.ones((len(q), 1), np.float32)], 1)


def augment_candidates(descs: Sequence[np.ndarray], dim: int) -> np.ndarray:
    """[(M_b, d)] -> (B, M_max, d + 2) rows [2c, 1, -|c|^2]; padded rows are [0, 0, PAD].

    With ``augment_query`` one GEMM gives -||q - c||^2 for every pair and PAD for padding, so no
    elementwise pass over the (B, N, M) distance tensor is needed.
    """
    m = max((len(x) for x in descs), default=0)
    out = np.zeros((len(descs), m, dim + 2), np.float32)
    out[:, :, -1] = _PAD
    for b, x in enumerate(descs):
        if len(x):
            if x.ndim != 2 or x.shape[1] != dim:
                raise ShapeError(f"candidate {b}: local descriptors have shape {x.shape}, query has dim {dim}")
            x = np.asarray(x, np.float32)
            out[b, : len(x), :dim] = 2 * x
            out[b, : len(x), dim] = 1
            out[b, : len(x), dim + 1] = -(x * x).sum(1)
    return out


def mutual_nn_batch(
    query: np.ndarray,
    candidates: Sequence[np.ndarray],
    ratio: float | None = None,
    max_distance: float | None = None,
    chunk_size: int = 8,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Mutual-NN matches of ``query`` (N, d) with each of ``candidates`` [(M_b, d)].

    Returns, per candidate, (query indices (P,), candidate indices (P,)) int64, ordered by query index.
    Empty descriptor sets give empty matches. ``chunk_size`` candidates share one batched GEMM.
    """
    query = np.asarray(query, dtype=np.float32)
    if query.ndim != 2:
        raise ShapeError(f"query local descriptors must be (N, d), got shape {query.shape}")
    n, d = query.shape
    if n == 0 or not candidates or all(len(c) == 0 for c in candidates):
        return [_EMPTY for _ in candidates]
    qa = torch.from_numpy(augment_query(query))
    ca_all = torch.from_numpy(augment_candidates(candidates, d))
    chunk_size = max(1, int(chunk_size))
    buf = torch.empty(min(chunk_size, len(candidates)), n, ca_all.shape[1])
    arange = np.arange(n)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, len(candidates), chunk_size):
        ca = ca_all[start : start + chunk_size]
        negd2 = torch.matmul(qa, ca.transpose(1, 2), out=buf[: len(ca)])  # (B, N, M) = -squared distance
        if ratio is not None and negd2.shape[2] >= 2:
            top2, nn12_t = torch.topk(negd2, 2, dim=2)
            best, second, nn12 = top2[..., 0].numpy(), top2[..., 1].numpy(), nn12_t[..., 0].numpy()
        else:
            best_t, nn12_t = negd2.max(dim=2)
            best, second, nn12 = best_t.numpy(), None, nn12_t.numpy()
        nn21 = negd2.max(dim=1)[1].numpy()  # (B, M)
        keep = (np.take_along_axis(nn21, nn12, 1) == arange) & (best > _PAD / 2)
        if ratio is not None:  # Lowe: d1 < r d2  <=>  d1^2 < r^2 d2^2; no second neighbour -> no match
            keep &= (second > _PAD / 2) & (-best < ratio * ratio * -second) if second is not None else False
        if max_distance is not None:
            keep &= -best < max_distance * max_distance
        for b in range(len(ca)):
            idx = np.flatnonzero(keep[b])
            out.append((idx.astype(np.int64), nn12[b, idx].astype(np.int64)))
    return out
