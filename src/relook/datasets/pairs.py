"""Training pairs by instance label: random positives / negatives and hard negatives from a shortlist.

A pair is two image indices into the same list of images and a target (1 = same instance, 0 = not);
the rerankers' training loops (RRT, its epipolar variant) read batches of them. Every sampler is seeded.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from relook.errors import ConfigError, ShapeError
from relook.types import Shortlist


def _groups(labels: np.ndarray) -> dict:
    groups: dict = {}
    for i, lab in enumerate(labels.tolist()):
        groups.setdefault(lab, []).append(i)
    return groups


def sample_pairs(
    labels: Sequence, num_pairs: int, positive_fraction: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random pairs ``(P, 2)`` int64 and targets ``(P,)`` int64 (1 = same label).

    ``round(num_pairs * positive_fraction)`` positives (anchor drawn uniformly among images whose label
    has >= 2 images, partner uniformly among the other images of the label), the rest negatives (anchor
    uniform, partner uniform among images of other labels). Positives first, then negatives.
    Impossible requests (no label with two images, or a single label) give fewer pairs of that kind.
    """
    labels = np.asarray(labels)
    if not 0.0 <= positive_fraction <= 1.0 or num_pairs < 0:
        raise ConfigError(
            f"positive_fraction must be in [0, 1] and num_pairs >= 0 (got {positive_fraction}, {num_pairs})"
        )
    rng = np.random.default_rng(seed)
    groups = _groups(labels)
    n_pos = int(round(num_pairs * positive_fraction))
    n_neg = num_pairs - n_pos
    pairs: list[tuple[int, int]] = []
    multi = np.array([i for g in groups.values() if len(g) > 1 for i in g], dtype=np.int64)
    if len(multi):
        for a in rng.choice(multi, size=n_pos):
            others = [j for j in groups[labels[a].item()] if j != a]
            pairs.append((int(a), int(others[rng.integers(len(others))])))
    n_pos = len(pairs)
    if len(groups) > 1:
        for a in rng.integers(len(labels), size=n_neg):
            while True:  # rejection: the partner has another label
                b = int(rng.integers(len(labels)))
                if labels[b] != labels[a]:
                    break
            pairs.append((int(a), b))
    targets = np.r_[np.ones(n_pos, np.int64), np.zeros(len(pairs) - n_pos, np.int64)]
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2), targets


def hard_negatives(
    shortlist: Shortlist, query_labels: Sequence, gallery_labels: Sequence, per_query: int = 5
) -> np.ndarray:
    """The ``per_query`` highest-ranked gallery items of another label, per query: ``(M, 2)`` (query, gallery).

    The shortlist order is the mining order (hardest first); padding (-1) is skipped. Rows are grouped by
    query, in shortlist order.
    """
    query_labels, gallery_labels = np.asarray(query_labels), np.asarray(gallery_labels)
    if len(query_labels) != shortlist.num_queries or len(gallery_labels) != len(shortlist.gallery_ids):
        raise ShapeError(
            f"labels ({len(query_labels)} queries, {len(gallery_labels)} gallery) do not match the "
            f"shortlist ({shortlist.num_queries} x {len(shortlist.gallery_ids)})"
        )
    out = []
    for q in range(shortlist.num_queries):
        cand = shortlist.indices[q]
        cand = cand[cand >= 0]
        neg = cand[gallery_labels[cand] != query_labels[q]][:per_query]
        out += [(q, int(g)) for g in neg]
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)


def hard_positives(
    shortlist: Shortlist,
    query_labels: Sequence,
    gallery_labels: Sequence,
    per_query: int = 1,
    query_in_gallery: Sequence[int] | None = None,
) -> np.ndarray:
    """The ``per_query`` *lowest*-ranked same-label items of each query's shortlist: ``(M, 2)`` (query, gallery).

    ``query_in_gallery[q]`` (gallery index of the query itself, or -1) is never paired with q.
    """
    query_labels, gallery_labels = np.asarray(query_labels), np.asarray(gallery_labels)
    out = []
    for q in range(shortlist.num_queries):
        cand = shortlist.indices[q]
        cand = cand[cand >= 0]
        pos = cand[gallery_labels[cand] == query_labels[q]]
        if query_in_gallery is not None:
            pos = pos[pos != int(query_in_gallery[q])]
        out += [(q, int(g)) for g in pos[::-1][:per_query]]
    return np.asarray(out, dtype=np.int64).reshape(-1, 2)
