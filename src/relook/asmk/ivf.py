"""Inverted file for ASMK: gallery word vectors grouped by visual word, scored against a query at once."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from relook.asmk.codebook import assign
from relook.asmk.kernel import aggregate, binarize, selectivity, self_norm, word_similarity
from relook.errors import ShapeError


@dataclass
class AsmkIndex:
    """Entries (one per gallery image and visual word) sorted by word: ``offsets[c]:offsets[c+1]`` is word c."""

    centroids: np.ndarray  # (k, d) visual words
    offsets: np.ndarray  # (k + 1,) int64
    image_ids: np.ndarray  # (E,) int64 gallery index of each entry
    vecs: np.ndarray  # (E, d) float32, or (E, ceil(d/8)) uint8 codes when binary
    gamma: np.ndarray  # (G,) float64 self-similarity normalisation per gallery image
    binary: bool = True
    alpha: float = 3.0
    tau: float = 0.0

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    @property
    def num_images(self) -> int:
        return len(self.gamma)

    def encode(self, descs: np.ndarray, multiple: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(word ids (W,), vectors or codes (W, .)) of one image's descriptors (N, d)."""
        descs = np.asarray(descs, np.float32).reshape(-1, self.dim) if np.size(descs) else np.zeros((0, self.dim))
        words, agg = aggregate(descs, assign(descs, self.centroids, multiple), self.centroids)
        return words, (binarize(agg) if self.binary else agg)

    @classmethod
    def build(
        cls,
        centroids: np.ndarray,
        gallery_descs: Iterable[np.ndarray],
        binary: bool = True,
        alpha: float = 3.0,
        tau: float = 0.0,
        multiple: int = 1,
    ) -> AsmkIndex:
        """Index each gallery image's local descriptors (single assignment by default)."""
        centroids = np.ascontiguousarray(centroids, np.float32)
        k, d = centroids.shape
        probe = cls(
            centroids,
            np.zeros(k + 1, np.int64),
            np.zeros(0, np.int64),
            np.zeros((0, d)),
            np.zeros(0),
            binary,
            alpha,
            tau,
        )
        words, imgs, vecs, gamma = [], [], [], []
        for g, descs in enumerate(gallery_descs):
            w, v = probe.encode(descs, multiple)
            words.append(w)
            imgs.append(np.full(len(w), g, np.int64))
            vecs.append(v)
            gamma.append(self_norm(v, binary, d, alpha, tau))
        width = (d + 7) // 8 if binary else d
        words_all = np.concatenate(words) if words else np.zeros(0, np.int64)
        order = np.argsort(words_all, kind="stable")
        vecs_all = np.concatenate(vecs) if vecs else np.zeros((0, width), np.uint8 if binary else np.float32)
        offsets = np.searchsorted(words_all[order], np.arange(k + 1)).astype(np.int64)
        imgs_all = np.concatenate(imgs) if imgs else np.zeros(0, np.int64)
        return cls(
            centroids, offsets, imgs_all[order], vecs_all[order], np.asarray(gamma, np.float64), binary, alpha, tau
        )

    def scores(self, words: np.ndarray, vecs: np.ndarray) -> np.ndarray:
        """K(query, g) for every gallery image g (G,), the query given as ``encode`` output."""
        out = np.zeros(self.num_images, np.float64)
        if len(words) == 0 or self.num_images == 0:
            return out
        if vecs.shape[1] != self.vecs.shape[1]:
            raise ShapeError(f"asmk: query word vectors have width {vecs.shape[1]}, index has {self.vecs.shape[1]}")
        starts, ends = self.offsets[words], self.offsets[words + 1]
        counts = ends - starts
        total = int(counts.sum())
        if total == 0:
            return out
        qpos = np.repeat(np.arange(len(words)), counts)
        entry = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(starts, counts)
        u = word_similarity(vecs[qpos], self.vecs[entry], self.binary, self.dim)
        out += np.bincount(self.image_ids[entry], selectivity(u, self.alpha, self.tau), minlength=self.num_images)
        return out * self.gamma * self_norm(vecs, self.binary, self.dim, self.alpha, self.tau)
