"""Seeded train / val / test splits **by group** (never by image), the protocol of every real-data result.

A group's images all land in one split, so a learned part never sees a view of a test object. The split is
a pure function of the sorted group names, the fractions and the seed: the same on every machine and in
every process, whatever the order in which the images were listed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from relook.errors import ConfigError

SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)


def split_groups(
    groups: Iterable[str], fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0
) -> dict[str, str]:
    """Group name -> "train" / "val" / "test".

    The unique group names are sorted, permuted by ``np.random.default_rng(seed)``, and cut at
    ``round(cumsum(fractions) * n)``: train takes the first share of the permutation, val the next, test the
    rest. ``fractions``: three non-negative numbers summing to 1.
    """
    fr = [float(f) for f in fractions]
    if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1) > 1e-6:
        raise ConfigError(f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    names = sorted(set(groups))
    order = np.random.default_rng(int(seed)).permutation(len(names))
    cuts = np.round(np.cumsum(fr) * len(names)).astype(int)
    out = {}
    for rank, i in enumerate(order):
        out[names[i]] = SPLITS[int(np.searchsorted(cuts, rank, side="right"))] if rank < cuts[-1] else "test"
    return out
