"""Visual codebook: k-means centroids of local descriptors (faiss) and (multiple) assignment to them."""

from __future__ import annotations

import faiss
import numpy as np

from relook.checks import check_finite, check_shape
from relook.errors import ConfigError


def sample_rows(descs: np.ndarray, max_rows: int | None, seed: int = 0) -> np.ndarray:
    """At most ``max_rows`` rows of ``descs`` (N, d), drawn without replacement with ``seed``."""
    if max_rows is None or len(descs) <= max_rows:
        return descs
    idx = np.sort(np.random.default_rng(seed).choice(len(descs), int(max_rows), replace=False))
    return descs[idx]


def train_codebook(descs: np.ndarray, k: int, seed: int = 0, niter: int = 20) -> np.ndarray:
    """``k`` visual words (k, d) float32: faiss k-means (L2) on ``descs`` (N, d), seeded."""
    descs = np.ascontiguousarray(descs, np.float32)
    check_shape(descs, ["N", "d"], "codebook training descriptors")
    check_finite(descs, "codebook training descriptors")
    if k < 1:
        raise ConfigError(f"codebook size must be >= 1, got {k}")
    if len(descs) < k:
        raise ConfigError(
            f"cannot train {k} visual words from {len(descs)} descriptors; lower codebook_size "
            f"(e.g. {max(1, len(descs) // 20)}) or train on more images"
        )
    km = faiss.Kmeans(
        descs.shape[1],
        int(k),
        niter=int(niter),
        seed=int(seed),
        verbose=False,
        max_points_per_centroid=max(256, len(descs) // k + 1),
    )
    km.train(descs)
    return np.ascontiguousarray(km.centroids, np.float32)


def assign(descs: np.ndarray, centroids: np.ndarray, multiple: int = 1) -> np.ndarray:
    """The ``multiple`` nearest visual words of each descriptor: (N, d) -> (N, multiple) int64, nearest first."""
    descs = np.ascontiguousarray(descs, np.float32)
    k = len(centroids)
    m = min(int(multiple), k)
    if len(descs) == 0:
        return np.zeros((0, m), np.int64)
    check_shape(descs, ["N", centroids.shape[1]], "local descriptors")
    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, np.float32))
    _, idx = index.search(descs, m)
    return idx.astype(np.int64)
