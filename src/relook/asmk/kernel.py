"""The aggregated selective match kernel: pure functions on arrays.

For an image X with local descriptors x and visual-word assignment q(x), the aggregated residual of word
c is V(X_c) = sum_{x in X_c} (x - q_c), L2-normalised to \\hat V (Eq. (10)-(12) of Tolias et al. 2013).
ASMK* binarises it: b(X_c) = sign(V(X_c)), compared through u = <b, b'> / d = 1 - 2 h(b, b') / d (h =
Hamming distance). Two images match with

    K(X, Y) = gamma(X) gamma(Y) sum_{c in X and Y} sigma(u_c),   sigma(u) = sign(u)|u|^alpha if u > tau else 0

(alpha = 3, tau = 0), gamma(X) = (sum_c sigma(u(X_c, X_c)))^(-1/2) normalising self-similarity to 1.
A descriptor assigned to several words (multiple assignment, used for queries) contributes a residual
to each of them.
"""

from __future__ import annotations

import numpy as np

#: number of set bits of each byte value
POPCOUNT = np.array([bin(i).count("1") for i in range(256)], np.int64)


def aggregate(descs: np.ndarray, words: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-word L2-normalised residual sums: descs (N, d), words (N, m) -> (word ids (W,), vectors (W, d)).

    Word ids are sorted ascending; an all-zero residual sum stays zero.
    """
    d = centroids.shape[1]
    if len(descs) == 0 or np.size(words) == 0:
        return np.zeros(0, np.int64), np.zeros((0, d), np.float32)
    words = np.asarray(words, np.int64).reshape(len(descs), -1)
    flat_words = words.ravel()
    order = np.argsort(flat_words, kind="stable")
    sorted_words = flat_words[order]
    resid = np.asarray(descs, np.float64)[order // words.shape[1]] - centroids[sorted_words]
    starts = np.flatnonzero(np.r_[True, sorted_words[1:] != sorted_words[:-1]])
    uniq = sorted_words[starts]
    agg = np.add.reduceat(resid, starts, axis=0)
    norm = np.linalg.norm(agg, axis=1, keepdims=True)
    agg = np.where(norm > 0, agg / np.maximum(norm, 1e-30), 0.0)
    return uniq, agg.astype(np.float32)


def binarize(vecs: np.ndarray) -> np.ndarray:
    """ASMK* codes: bits (vecs > 0) packed along the last axis, (W, d) -> (W, ceil(d / 8)) uint8."""
    return np.packbits(np.asarray(vecs) > 0, axis=-1)


def binary_similarity(a: np.ndarray, b: np.ndarray, dim: int) -> np.ndarray:
    """u = 1 - 2 hamming(a, b) / dim of packed codes row by row: (E, B) x (E, B) -> (E,)."""
    return 1.0 - 2.0 * POPCOUNT[np.bitwise_xor(a, b)].sum(axis=-1) / float(dim)


def selectivity(u: np.ndarray, alpha: float = 3.0, tau: float = 0.0) -> np.ndarray:
    """sigma(u) = sign(u) |u|^alpha where u > tau, else 0."""
    u = np.asarray(u, np.float64)
    return np.where(u > tau, np.sign(u) * np.abs(u) ** alpha, 0.0)


def word_similarity(a: np.ndarray, b: np.ndarray, binary: bool, dim: int) -> np.ndarray:
    """Per-row similarity u of two aligned sets of word vectors (real: dot; binary: Hamming)."""
    return binary_similarity(a, b, dim) if binary else np.einsum("ed,ed->e", np.asarray(a, np.float64), b)


def self_norm(vecs: np.ndarray, binary: bool, dim: int, alpha: float, tau: float) -> float:
    """gamma(X) = (sum_c sigma(u(X_c, X_c)))^(-1/2); 0 for an image without words."""
    if len(vecs) == 0:
        return 0.0
    s = selectivity(word_similarity(vecs, vecs, binary, dim), alpha, tau).sum()
    return float(s**-0.5) if s > 0 else 0.0


def asmk_similarity(
    words_x: np.ndarray,
    vecs_x: np.ndarray,
    words_y: np.ndarray,
    vecs_y: np.ndarray,
    dim: int,
    binary: bool = True,
    alpha: float = 3.0,
    tau: float = 0.0,
    normalise: bool = True,
) -> float:
    """K(X, Y) of two aggregated images (word ids sorted, vectors or packed codes per word)."""
    common, ix, iy = np.intersect1d(words_x, words_y, assume_unique=True, return_indices=True)
    if len(common) == 0:
        return 0.0
    k = selectivity(word_similarity(vecs_x[ix], vecs_y[iy], binary, dim), alpha, tau).sum()
    if normalise:
        k *= self_norm(vecs_x, binary, dim, alpha, tau) * self_norm(vecs_y, binary, dim, alpha, tau)
    return float(k)
