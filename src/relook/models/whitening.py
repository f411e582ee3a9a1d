"""Descriptor whitening applied before search: supervised (learned from matching pairs) and PCA.

Supervised whitening (Radenovic et al., "Fine-tuning CNN image retrieval with no human annotation",
learned whitening), used by DToP on its descriptors (supplementary A.2, Table A7):
1. mean m of the descriptors of the pairs' first images (the queries of the query/positive pairs);
2. intra-pair difference covariance C_S = mean (x_q - x_p)(x_q - x_p)^T over matching pairs (q, p);
   P1 = C_S^{-1/2} (here the inverse Cholesky factor: P1 C_S P1^T = I, so differences are decorrelated);
3. rotate by the eigenvectors of the covariance of ALL whitening images after step 2,
   C_D = mean P1 (x - m)(x - m)^T P1^T over every descriptor given (not only the paired ones), in
   decreasing eigenvalue order, so a prefix of the output keeps the most variance: P = V^T P1.
On SfM-120k the pairs are the dataset's official (query, positive) pairs (``info["pairs"]``) and the
images all of its images (``relook train dtop-whitening``).
Apply: x -> P (x - m), keep the first ``dim`` rows, L2-normalise.

PCA whitening: P = diag(lambda + eps)^{-1/2} V^T from the covariance of all descriptors.
All functions are pure numpy: X (N, D) rows are descriptors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from relook.errors import DataError, ShapeError
from relook.io import load_array


def _check(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ShapeError(f"whitening: {name} must be (N, D), got shape {x.shape}")
    return x


def learn_supervised_whitening(x: np.ndarray, pairs: np.ndarray, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Learned whitening from matching pairs (steps 1-3 above). x (N, D) every whitening image, pairs (M, 2)
    (query, positive) row indices -> (mean (D,), P (D, D))."""
    x = _check(x, "descriptors")
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if len(pairs) < 2:
        raise DataError(f"supervised whitening needs matching pairs; got {len(pairs)}")
    mean = x[pairs[:, 0]].mean(0)
    diff = x[pairs[:, 0]] - x[pairs[:, 1]]
    cov_s = diff.T @ diff / len(diff) + eps * np.eye(x.shape[1])
    p1 = np.linalg.inv(np.linalg.cholesky(cov_s))  # P1 C_S P1^T = I
    xw = (x - mean) @ p1.T  # every whitening image, not only the paired ones
    cov_d = xw.T @ xw / len(xw)
    vals, vecs = np.linalg.eigh(cov_d)
    order = np.argsort(vals)[::-1]
    return mean.astype(np.float32), (vecs[:, order].T @ p1).astype(np.float32)


def learn_pca_whitening(x: np.ndarray, eps: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """PCA whitening. x (N, D) -> (mean (D,), P (D, D)) with decreasing-variance rows."""
    x = _check(x, "descriptors")
    if len(x) < 2:
        raise DataError(f"PCA whitening needs at least 2 descriptors; got {len(x)}")
    mean = x.mean(0)
    vals, vecs = np.linalg.eigh(np.cov(x - mean, rowvar=False, bias=True))
    order = np.argsort(vals)[::-1]
    vals, vecs = np.clip(vals[order], 0, None), vecs[:, order]
    return mean.astype(np.float32), (vecs.T / np.sqrt(vals + eps)[:, None]).astype(np.float32)


def apply_whitening(
    x: np.ndarray, mean: np.ndarray, proj: np.ndarray, dim: int | None = None, normalize: bool = True
) -> np.ndarray:
    """x (N, D) -> (N, dim) whitened (and L2-normalised) descriptors; empty in -> (0, dim) out."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != proj.shape[1]:
        raise ShapeError(f"whitening: descriptors must be (N, {proj.shape[1]}), got {x.shape}")
    p = proj[:dim] if dim else proj
    y = (x - mean) @ p.T
    if normalize:
        y = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return y.astype(np.float32)


def save_whitening(path: str | Path, mean: np.ndarray, proj: np.ndarray, kind: str) -> Path:
    np.savez(path, mean=mean, proj=proj, kind=kind)
    return Path(path)


def load_whitening(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    path = Path(path)
    if not path.exists():
        raise DataError(f"whitening file {path} not found: learn it with `relook train dtop-whitening`")

    z = load_array(path, "whitening file", ("mean", "proj"))
    if not isinstance(z, dict):
        raise DataError(f"{path}: expected a whitening .npz with 'mean' and 'proj', found one .npy array")
    return z["mean"], z["proj"]


def pairs_from_labels(labels: np.ndarray, max_pairs: int | None = None, seed: int = 0) -> np.ndarray:
    """All (i, j), i < j, with labels[i] == labels[j] -> (M, 2) int64; a seeded subset if over ``max_pairs``."""
    labels = np.asarray(labels)
    i, j = np.triu_indices(len(labels), k=1)
    keep = labels[i] == labels[j]
    pairs = np.stack([i[keep], j[keep]], 1).astype(np.int64)
    if max_pairs is not None and len(pairs) > max_pairs:
        pairs = pairs[np.sort(np.random.default_rng(seed).choice(len(pairs), max_pairs, replace=False))]
    return pairs
