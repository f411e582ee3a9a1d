"""The extract stage: every configured extractor over the dataset's queries and gallery into
``features/<label>/{queries,gallery}.h5`` (resumable image by image; sharded under torchrun or ``--shard``)."""

from __future__ import annotations

import time
from pathlib import Path

from relook.distributed import extract_sharded, process_group, world
from relook.pipeline.runs import dataset_of, record_timing, store_paths


def extract(conf: dict, progress: bool = True, shard=None) -> dict[str, tuple[Path, Path]]:
    """Run every configured extractor over queries and gallery (resumable per image).

    The extractor is told the role of each store (``Extractor.set_role``): "database" for the gallery,
    "query" for a separate query store, so role-dependent settings (DToP's Table A11 switches) apply.
    Queries that are gallery images are extracted once, as database images.

    Under ``torchrun --nproc_per_node=N`` each rank extracts every N-th image into its own store shard and
    rank 0 merges them (``relook.distributed``); the stores are the same as from one process. With
    ``shard`` (a ``relook.sharding.Shard``, ``--shard i/N``) only that share is extracted, into store parts
    that ``relook merge`` joins.
    """
    # lazy (start-up): loads cv2, torch; relook's entry points import this module
    from relook.features import create_extractor

    dataset = dataset_of(conf)
    progress = progress and world()[0] == 0
    out = {}
    with process_group():
        for item in conf["extractors"]:
            opts = {k: v for k, v in item.items() if k not in ("name", "label")}
            extractor = create_extractor(item["name"], **opts)
            qpath, gpath = store_paths(conf, item["label"], dataset)
            exif = dataset.exif_orientation
            jobs = [(dataset.gallery, gpath, "database")] + (
                [(dataset.queries, qpath, "query")] if qpath != gpath else []
            )
            todo = sum(_missing_count(path, items) for items, path, _ in jobs)
            start = time.perf_counter()
            for items, path, role in jobs:  # separate queries (e.g. cropped Oxford/Paris queries): query role
                extractor.set_role(role)
                extract_sharded(extractor, items, path, progress=progress, exif_orientation=exif, shard=shard)
            if todo and world()[0] == 0 and shard is None:  # N shards would race on timings.json
                record_timing(conf["out"], f"extract:{item['label']}", time.perf_counter() - start, images=todo)
            out[item["label"]] = (qpath, gpath)
    return out


def _missing_count(store_path: Path, items) -> int:
    """How many of ``items`` the store at ``store_path`` lacks (all of them when it does not exist yet)."""
    # lazy (start-up): loads h5py; relook's entry points import this module
    from relook.store import FeatureStore

    if not Path(store_path).exists():
        return len(items)
    with FeatureStore(store_path, "r") as store:
        return len(store.missing([it[0] for it in items]))
