"""Extraction scaled out over processes: ``torchrun --nproc_per_node=N -m relook.cli extract ...``.

torchrun starts N copies of the command with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set. Each rank
takes every N-th image of the id-sorted list (``shard_items``: disjoint, together all of them), extracts
its share into its own store shard ``<store>.rank{r}-of-{N}`` (resumable like any store), and waits for
the others at a gloo barrier; rank 0 then merges the shards into ``<store>`` with ``merge_stores`` and
deletes them, and the others wait until the merged store is in place. A rerun after a crash resumes every
shard, then merges; images already in ``<store>`` (same provenance) are not extracted again. With one
process (no ``WORLD_SIZE``, or 1) nothing of this happens: the store is written directly.

The merged store holds the same ids and arrays as a single-process run; arrays are bit-identical when the
forward pass does not depend on which images share a batch (``batch_size: 1``), and equal up to float
rounding otherwise.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

from relook.errors import ConfigError

log = logging.getLogger(__name__)

#: how long a rank waits at a barrier for the slowest rank (and for rank 0's merge)
BARRIER_TIMEOUT = timedelta(hours=24)


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside torchrun."""
    try:
        rank, size, local = (
            int(os.environ.get(k, d)) for k, d in (("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0"))
        )
    except ValueError:
        raise ConfigError(
            f"RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them), got "
            f"{os.environ.get('RANK')!r}, {os.environ.get('WORLD_SIZE')!r}, "
            f"{os.environ.get('LOCAL_RANK')!r}"
        ) from None
    if size < 1 or not 0 <= rank < size:
        raise ConfigError(f"RANK={rank} must be in [0, WORLD_SIZE={size}) (launch with torchrun)")
    return rank, size, local


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """A gloo process group for the barriers when ``WORLD_SIZE`` > 1, destroyed on exit.

    Nothing is done with one process, or when the caller already made a group. On a CUDA machine each
    rank's default device becomes ``cuda:LOCAL_RANK``, so ``device: cuda`` spreads ranks over the GPUs.
    """
    import torch
    import torch.distributed as dist

    rank, size, local = world()
    if size == 1 or dist.is_initialized():
        yield
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(local % torch.cuda.device_count())
    dist.init_process_group("gloo", rank=rank, world_size=size, timeout=BARRIER_TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op without a process group)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shard_items(items: Sequence, rank: int, size: int) -> list:
    """Rank ``rank``'s share of ``items`` (tuples whose first element is the image id): every ``size``-th
    item of the id-sorted list, from position ``rank``. Disjoint over ranks, together all items."""
    return sorted(items, key=lambda it: it[0])[rank::size]


def shard_path(store_path: str | Path, rank: int, size: int) -> Path:
    """The store shard of one rank: ``gallery.h5`` -> ``gallery.h5.rank0-of-2``."""
    store_path = Path(store_path)
    return store_path.with_name(f"{store_path.name}.rank{rank}-of-{size}")


def extract_sharded(
    extractor, items: Sequence, store_path: str | Path, progress: bool = True, exif_orientation: bool = True
) -> Path:
    """``extract_to_store`` spread over the torchrun ranks (see the module docstring); one process: direct."""
    from relook.features.base import extract_to_store, mixing_error, stale_keys
    from relook.store import FeatureStore, merge_stores

    rank, size, _ = world()
    if size == 1:
        return extract_to_store(extractor, items, store_path, progress=progress, exif_orientation=exif_orientation)
    store_path = Path(store_path)
    ids = [it[0] for it in items]
    stale = stale_keys(store_path, extractor)  # every rank reads the same file: the same decisions
    keep = stale == []  # the final store has images of this very extractor: only its missing ones are done
    missing = set(ids)
    if keep:
        with FeatureStore(store_path) as store:
            missing = set(store.missing(ids))
        if not missing:
            return store_path
    elif stale:  # every rank refuses alike: the store holds features of another network
        raise mixing_error(store_path, extractor, stale)
    mine = [it for it in shard_items(items, rank, size) if it[0] in missing]
    extract_to_store(
        extractor, mine, shard_path(store_path, rank, size), progress=progress, exif_orientation=exif_orientation
    )
    barrier()  # every shard complete
    if rank == 0:
        shards = [shard_path(store_path, r, size) for r in range(size)]
        merge_stores(([store_path] if keep else []) + shards, store_path, overwrite=True)
        for shard in shards:
            shard.unlink()
    barrier()  # the merged store is in place before any rank goes on
    return store_path
