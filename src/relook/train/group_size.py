"""Group-size sampling of mini-batches (Yokoo et al., used by DToP; supplementary Table A12).

Images are grouped by aspect ratio so that one mini-batch holds images of similar shape, all resized to
ONE size of the group's aspect ratio (longer side ``max_size``, sides multiples of ``multiple``): no
distortion and close to the original shape; DPE (Eq. 2) lets the ViT take every batch's size. The number
and edges of the groups are not in the paper: ``num_groups`` aspect-ratio quantile groups (default 5).
``group_size=False`` is the fixed-size baseline of Table A12: every image at max_size x max_size.

Each epoch (``set_epoch``) shuffles images within groups and the order of the batches, seeded by
(seed, epoch); every image appears exactly once per epoch. A group of n images is cut into
full batches of ``batch_size`` and a remainder (``split_group``).

``batch_size`` is the GLOBAL batch (the paper's 64 over its 8 GPUs). Under DDP (``world_size`` > 1)
every rank walks the same sequence of global batches and takes its own contiguous share of each
(``batch_size / world_size`` images, one size for all ranks): one optimiser step sees exactly the batch
that one process would see, whatever the number of ranks, so the learning rate needs no rescaling.
``batch_size`` must be a multiple of ``world_size`` and every group must have at least ``world_size``
images, so that no rank ever gets an empty share.
The sampler yields lists of (index, height, width), read by the training dataset.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from relook.errors import ConfigError, ShapeError


def group_sizes(aspect: np.ndarray, max_size: int, multiple: int = 16) -> tuple[int, int]:
    """(height, width) for a group of width/height ratios ``aspect``: the median shape, longer side max_size."""
    a = float(np.median(aspect)) if len(aspect) else 1.0
    h, w = (max_size, max_size * a) if a < 1 else (max_size / a, max_size)
    snap = lambda v: max(multiple, int(round(v / multiple)) * multiple)  # noqa: E731
    return snap(h), snap(w)


def split_group(members: np.ndarray, batch_size: int, world_size: int = 1) -> list[np.ndarray]:
    """Consecutive batches of ``batch_size`` and a smaller remainder; a remainder of fewer than
    ``world_size`` images borrows from the batch before it (or, if that would leave it too small, joins it)
    so that every rank gets at least one image of every batch."""
    parts = [members[i : i + batch_size] for i in range(0, len(members), batch_size)]
    if len(parts) > 1 and len(parts[-1]) < world_size:
        need = world_size - len(parts[-1])
        if len(parts[-2]) - need >= world_size:
            parts[-2], parts[-1] = parts[-2][:-need], np.concatenate([parts[-2][-need:], parts[-1]])
        else:
            parts[-2:] = [np.concatenate(parts[-2:])]
    return parts


class GroupSizeBatchSampler:
    """Batches of (index, h, w) with one (h, w) per batch. sizes: (N, 2) image (height, width)."""

    def __init__(
        self,
        sizes: np.ndarray,
        batch_size: int = 64,
        max_size: int = 384,
        num_groups: int = 5,
        multiple: int = 16,
        group_size: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
        if (sizes <= 0).any():
            raise ShapeError("group-size sampler: every image size (height, width) must be positive")
        if batch_size < 1 or num_groups < 1 or not 0 <= rank < world_size:
            raise ConfigError(
                f"group-size sampler: bad batch_size={batch_size}, num_groups={num_groups}, "
                f"rank={rank}, world_size={world_size}"
            )
        if batch_size % world_size:
            raise ConfigError(
                f"group-size sampler: the global batch_size {batch_size} must be a multiple of "
                f"the number of ranks {world_size}"
            )
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
        small = [len(m) for m, _ in self.groups if len(m) < world_size]
        if small:
            raise ConfigError(
                f"group-size sampler: a group of {small[0]} images cannot feed {world_size} ranks; "
                f"use fewer num_groups or ranks"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def global_batches(self) -> list[list[tuple[int, int, int]]]:
        """This epoch's global batches (the same on every rank): each image once, one (h, w) per batch."""
        rng = np.random.default_rng([self.seed, self.epoch])
        batches = []
        for members, (h, w) in self.groups:
            members = rng.permutation(members)
            for part in split_group(members, self.batch_size, self.world_size):
                batches.append([(int(j), h, w) for j in part])
        return [batches[i] for i in rng.permutation(len(batches))]

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        """This rank's share of each global batch, in order (one optimiser step per global batch)."""
        for batch in self.global_batches():
            yield [batch[i] for i in np.array_split(np.arange(len(batch)), self.world_size)[self.rank]]

    def __len__(self) -> int:
        """Steps per epoch: the number of global batches, equal on every rank."""
        return sum(len(split_group(m, self.batch_size, self.world_size)) for m, _ in self.groups)
