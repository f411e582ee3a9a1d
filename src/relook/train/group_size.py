"""Group-size sampling of mini-batches (Yokoo et al., used by DToP; supplementary Table A12).

Images are grouped by aspect ratio so that one mini-batch holds images of similar shape, all resized to
ONE size of the group's aspect ratio (longer side ``max_size``, sides multiples of ``multiple``): no
distortion and close to the original shape; DPE (Eq. 2) lets the ViT take every batch's size. The number
and edges of the groups are not in the paper: ``num_groups`` aspect-ratio quantile groups (default 5).
``group_size=False`` is the fixed-size baseline of Table A12: every image at max_size x max_size.

Each epoch (``set_epoch``) shuffles images within groups and the order of the batches, seeded by
(seed, epoch); every image appears exactly once per epoch (the last batch of a group may be smaller).
Under DDP each rank takes every ``world_size``-th batch; the batch list is padded with its first
batches so that all ranks run the same number of steps (those few images then appear twice).
The sampler yields lists of (index, height, width), read by the training dataset.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from relook.errors import ConfigError, ShapeError


def group_sizes(aspect: np.ndarray, max_size: int, multiple: int = 16) -> tuple[int, int]:
    """(height, width) for a group of width/height ratios ``aspect``: the median shape, longer side max_size."""
    a = float(np.median(aspect)) if len(aspect) else 1.0
    h, w = (max_size, max_size * a) if a < 1 else (max_size / a, max_size)
    snap = lambda v: max(multiple, int(round(v / multiple)) * multiple)  # noqa: E731
    return snap(h), snap(w)


class GroupSizeBatchSampler:
    """Batches of (index, h, w) with one (h, w) per batch. sizes: (N, 2) image (height, width)."""

    def __init__(self, sizes: np.ndarray, batch_size: int = 64, max_size: int = 384, num_groups: int = 5,
                 multiple: int = 16, group_size: bool = True, seed: int = 0, rank: int = 0,
                 world_size: int = 1) -> None:
        sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
        if (sizes <= 0).any():
            raise ShapeError("group-size sampler: every image size (height, width) must be positive")
        if batch_size < 1 or num_groups < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"group-size sampler: bad batch_size={batch_size}, num_groups={num_groups}, "
                              f"rank={rank}, world_size={world_size}")
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.epoch = 0
        n = len(sizes)
        if group_size and n:
            aspect = sizes[:, 1] / sizes[:, 0]
            order = np.argsort(aspect, kind="stable")
            chunks = [c for c in np.array_split(order, min(num_groups, n)) if len(c)]
            self.groups = [(c, group_sizes(aspect[c], max_size, multiple)) for c in chunks]
        else:
            self.groups = [(np.arange(n), (max_size, max_size))] if n else []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[list[tuple[int, int, int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = []
        for members, (h, w) in self.groups:
            members = rng.permutation(members)
            for i in range(0, len(members), self.batch_size):
                batches.append([(int(j), h, w) for j in members[i:i + self.batch_size]])
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        batches = self._all_batches()
        if self.world_size > 1 and batches:
            pad = (-len(batches)) % self.world_size
            batches = (batches + batches[:pad])[self.rank::self.world_size]
        return iter(batches)

    def __len__(self) -> int:
        n = sum(-(-len(m) // self.batch_size) for m, _ in self.groups)
        return -(-n // self.world_size)
