"""Extraction scaled out over processes: ``torchrun --nproc_per_node=N -m relook.cli extract ...``.

torchrun starts N copies of the command with ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` set. Each rank
takes every N-th image of the id-sorted list (``shard_items``: disjoint, together all of them), extracts
its share into its own store part ``<store>.part{r}-of-{N}`` (resumable like any store), and waits for
the others at a gloo barrier; rank 0 then merges the parts into ``<store>`` with ``relook.merge.merge_store``
(which checks that every id is there exactly once) and deletes them, and the others wait until the merged
store is in place. This is one driver of ``--shard r/N`` (``relook.sharding``): the same partition, the
same part files and the same merge as N separate ``relook extract --shard r/N`` runs and ``relook merge``. A rerun after a crash resumes every
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

from relook import sharding
from relook.errors import ConfigError
from relook.merge import merge_store
from relook.sharding import Shard, part_path

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
    # lazy (start-up): loads torch; relook's entry points import this module
    import torch

    # lazy (start-up): loads torch; relook's entry points import this module
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
    # lazy (start-up): loads torch; relook's entry points import this module
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def shard_items(items: Sequence, rank: int, size: int) -> list:
    """Rank ``rank``'s share of ``items`` (tuples whose first element is the image id): ``--shard rank/size``
    of ``relook.sharding`` (every ``size``-th item of the id-sorted list, from position ``rank``)."""
    return sharding.shard_items(items, Shard(rank, size))


def shard_path(store_path: str | Path, rank: int, size: int) -> Path:
    """The store part of one rank, the same file ``--shard rank/size`` writes: ``gallery.h5.part0-of-2``."""
    return part_path(store_path, Shard(rank, size))


def extract_part(
    extractor,
    items: Sequence,
    store_path: str | Path,
    shard: Shard,
    progress: bool = True,
    exif_orientation: bool = True,
) -> Path | None:
    """Extract shard ``shard``'s share of the ``items`` that ``store_path`` lacks into its part
    (``<store>.partI-of-N``, resumable like any store); None when the store already holds every item.

    A store of another extractor's provenance is refused alike by every shard (nothing is mixed).
    """
    # lazy (start-up): loads cv2, torch; relook's entry points import this module
    from relook.features.base import extract_to_store, mixing_error, stale_keys

    # lazy (start-up): loads h5py; relook's entry points import this module
    from relook.store import FeatureStore

    store_path = Path(store_path)
    ids = [it[0] for it in items]
    stale = stale_keys(store_path, extractor)  # every shard reads the same file: the same decisions
    if stale:
        raise mixing_error(store_path, extractor, stale)
    missing = set(ids)
    if stale == []:  # the store holds images of this very extractor: only its missing ones are done
        with FeatureStore(store_path) as store:
            missing = set(store.missing(ids))
        if not missing:
            return None
    mine = [it for it in sharding.shard_items(items, shard) if it[0] in missing]
    part = part_path(store_path, shard)
    return extract_to_store(extractor, mine, part, progress=progress, exif_orientation=exif_orientation)


def extract_sharded(
    extractor,
    items: Sequence,
    store_path: str | Path,
    progress: bool = True,
    exif_orientation: bool = True,
    shard: Shard | None = None,
) -> Path:
    """``extract_to_store`` spread over processes. ``shard`` given (``--shard i/N``): this process's part
    only, merged later by ``relook merge``; under torchrun: the rank's part, then rank 0 merges (module
    docstring); one process: the store directly. Returns the store (or, with ``shard``, the part) written."""
    # lazy (start-up): loads cv2, torch; relook's entry points import this module
    from relook.features.base import extract_to_store

    rank, size, _ = world()
    if shard is not None:
        if size > 1:
            raise ConfigError(f"--shard {shard} under torchrun (WORLD_SIZE={size}): use one driver, not both")
        return extract_part(extractor, items, store_path, shard, progress, exif_orientation) or Path(store_path)
    if size == 1:
        return extract_to_store(extractor, items, store_path, progress=progress, exif_orientation=exif_orientation)
    store_path = Path(store_path)
    done = extract_part(extractor, items, store_path, Shard(rank, size), progress, exif_orientation) is None
    if done:  # every rank saw a complete store: nobody waits, nothing to merge
        return store_path
    barrier()  # every part complete
    if rank == 0:
        merge_store(store_path, [it[0] for it in items])
    barrier()  # the merged store is in place before any rank goes on
    return store_path
