"""Join the parts that ``--shard i/N`` runs wrote (``relook.sharding``) into the file one process writes.

Each merge first checks the partition (``sharding.check_partition``): every part holds only ids of its
own shard, so no id is there twice, and together with what the output already held they hold every id
the stage must produce; a failed check changes nothing on disk. Then the output is written atomically and
the parts are deleted.

* ``merge_store``: feature-store parts ``<store>.partI-of-N`` (+ the store itself when a shard run
  resumed one), all of the same extractor provenance, into ``<store>`` (``store.merge_stores``);
* ``merge_ranking``: ranking parts ``rankings/<label>.npz.partI-of-N``, each the rows of its queries, into
  one ``Ranking`` in the shortlist's query order, made from the same shortlist, settings and features
  (their fingerprints must agree); the seconds per query become the mean over all queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from relook.errors import DataError
from relook.sharding import check_partition, find_parts
from relook.types import Ranking

#: provenance keys that may differ between parts (how, not what, was computed)
_RUNTIME = ("extractor.batch_size", "extractor.device")


def _provenance(meta: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in meta.items() if k.startswith("extractor") and k not in _RUNTIME}


def merge_store(store_path: str | Path, ids: Sequence[str], stage: str = "extract") -> Path | None:
    """Merge the parts of ``store_path`` (module docstring); None when there are no parts and the store
    already holds every id (nothing to do). ``DataError`` when parts disagree on the extractor or the
    partition check fails."""
    # lazy (start-up): loads h5py; relook's entry points import this module
    from relook.store import FeatureStore, merge_stores

    store_path = Path(store_path)
    parts = find_parts(store_path, stage)
    done: list[str] = []
    metas = []
    if store_path.exists():
        with FeatureStore(store_path) as store:
            done = store.ids()
            if len(store):
                metas.append((store_path, _provenance(store.meta)))
    if not parts:
        missing = [i for i in ids if i not in set(done)]
        if missing:
            raise DataError(
                f"{store_path}: no parts to merge and {len(missing)} of {len(ids)} images missing "
                f"(e.g. {missing[0]!r}); run `relook {stage}` (or `relook {stage} --shard i/N` for every i) first"
            )
        return None
    held = {}
    for part in parts:
        with FeatureStore(part) as ps:
            held[part] = ps.ids()
            metas.append((part, _provenance(ps.meta)))
    for path, meta in metas[1:]:
        if meta != metas[0][1]:
            key = next(k for k in sorted(set(meta) | set(metas[0][1])) if meta.get(k) != metas[0][1].get(k))
            raise DataError(
                f"{path}: extracted with {key}={meta.get(key)!r}, {metas[0][0]} with {metas[0][1].get(key)!r}; "
                "every shard must run the same config"
            )
    overlap = set(done)
    check_partition({p: [i for i in h if i not in overlap] for p, h in held.items()}, ids, done)
    merge_stores(([store_path] if done else []) + parts, store_path, overwrite=True)
    for part in parts:
        part.unlink()
    return store_path


def merge_ranking(path: str | Path, query_ids: Sequence[str], stage: str = "rerank") -> Path | None:
    """Merge the ranking parts of ``path`` into ``path``, rows in ``query_ids`` order (module docstring);
    None when there are no parts (nothing to do)."""
    path = Path(path)
    parts = find_parts(path, stage)
    if not parts:
        return None
    loaded = [Ranking.load(p) for p in parts]
    first = loaded[0]
    for p, r in zip(parts[1:], loaded[1:]):
        if r.gallery_ids != first.gallery_ids:
            raise DataError(f"{p}: another gallery than {parts[0]}; every shard must rerank the same shortlist")
        if r.meta.get("fingerprint") != first.meta.get("fingerprint"):
            raise DataError(
                f"{p}: made from another shortlist, settings or features than {parts[0]} (fingerprints "
                "differ); rerun every shard with the same config"
            )
    check_partition({p: r.query_ids for p, r in zip(parts, loaded)}, query_ids)
    rows = {q: (r, i) for r in loaded for i, q in enumerate(r.query_ids)}
    k = max(r.k for r in loaded)
    idx = np.full((len(query_ids), k), -1, np.int64)
    scores = np.full((len(query_ids), k), -np.inf, np.float32)
    for n, q in enumerate(query_ids):
        r, i = rows[q]
        idx[n, : r.k], scores[n, : r.k] = r.indices[i], r.scores[i]
    meta = dict(first.meta)
    if all("seconds_per_query" in r.meta for r in loaded):
        total = sum(float(r.meta["seconds_per_query"]) * r.num_queries for r in loaded)
        meta["seconds_per_query"] = f"{total / max(1, len(query_ids)):.4f}"
    Ranking(list(query_ids), first.gallery_ids, idx, scores, meta).save(path)
    for part in parts:
        part.unlink()
    return path
