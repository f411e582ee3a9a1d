"""Putative local-feature matches: mutual nearest neighbours (+ optional Lowe ratio test), batched.

One query's descriptors (N, d) are compared with many candidates at once: candidates are padded to
(B, M, d) and the squared distances ||q||^2 + ||c||^2 - 2 q.c come from one batched matmul (torch), so the
cost per query is a few large GEMMs rather than B Python-level loops. A pair (i, j) is kept when j is
i's nearest neighbour in the candidate and i is j's nearest neighbour in the query (mutual NN); with
``ratio`` also when dist(i, j) < ratio * dist(i, second nearest) (Lowe, IJCV 2004); with
``max_distance`` also when dist(i, j) < max_distance (DELG's GV uses 1.0 on unit descriptors).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from relook.errors import ShapeError

_EMPTY = (np.zeros(0, np.int64), np.zeros(0, np.int64))


def pad_descriptors(descs: Sequence[np.ndarray], dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (M_b, d) arrays into a zero-padded (B, M_max, d) tensor and a (B, M_max) validity mask."""
    m = max((len(x) for x in descs), default=0)
    out = torch.zeros(len(descs), m, dim)
    mask = torch.zeros(len(descs), m, dtype=torch.bool)
    for b, x in enumerate(descs):
        if len(x):
            if x.shape[1] != dim:
                raise ShapeError(f"candidate {b}: local descriptors have dim {x.shape[1]}, query has {dim}")
            out[b, :len(x)] = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            mask[b, :len(x)] = True
    return out, mask


def mutual_nn_batch(query: np.ndarray, candidates: Sequence[np.ndarray], ratio: float | None = None,
                    max_distance: float | None = None, chunk_size: int = 16) -> list[tuple[np.ndarray, np.ndarray]]:
    """Mutual-NN matches of ``query`` (N, d) with each of ``candidates`` [(M_b, d)].

    Returns, per candidate, (query indices (P,), candidate indices (P,)) int64, ordered by query index.
    Empty descriptor sets give empty matches.
    """
    query = np.ascontiguousarray(query, dtype=np.float32)
    if query.ndim != 2:
        raise ShapeError(f"query local descriptors must be (N, d), got shape {query.shape}")
    n, d = query.shape
    out: list[tuple[np.ndarray, np.ndarray]] = []
    q = torch.from_numpy(query)
    qn = (q * q).sum(1)
    for start in range(0, len(candidates), max(1, chunk_size)):
        chunk = candidates[start:start + max(1, chunk_size)]
        if n == 0 or all(len(c) == 0 for c in chunk):
            out.extend(_EMPTY for _ in chunk)
            continue
        c, mask = pad_descriptors(chunk, d)
        d2 = qn[None, :, None] + (c * c).sum(2)[:, None, :] - 2 * torch.einsum("nd,bmd->bnm", q, c)
        d2 = d2.clamp_min_(0).masked_fill_(~mask[:, None, :], float("inf"))  # (B, N, M)
        if ratio is not None and d2.shape[2] >= 2:
            best2, nn12 = torch.topk(d2, 2, dim=2, largest=False)
            best, nn12 = best2[..., 0], nn12[..., 0]
        else:
            best, nn12 = d2.min(dim=2)
            best2 = None
        nn21 = d2.argmin(dim=1)  # (B, M)
        keep = nn21.gather(1, nn12) == torch.arange(n)[None, :]
        keep &= torch.isfinite(best)
        if best2 is not None:
            second = best2[..., 1]  # inf when the candidate has a single feature: no ratio, no match
            keep &= torch.isfinite(second) & (best.sqrt() < ratio * second.sqrt())
        elif ratio is not None:  # a single candidate feature: no second neighbour to compare with
            keep &= torch.zeros_like(keep)
        if max_distance is not None:
            keep &= best.sqrt() < max_distance
        for b in range(len(chunk)):
            idx = torch.nonzero(keep[b]).squeeze(1)
            out.append((idx.numpy().astype(np.int64), nn12[b, idx].numpy().astype(np.int64)))
    return out
