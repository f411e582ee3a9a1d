"""The index and search stages: the faiss index of the gallery's global descriptors (``index.faiss``, or
IVF-PQ built on disk) and every query's global top-k (``shortlist.npz``), each stamped with a fingerprint of
what it was made from, so a stale one is rebuilt or refused (``check_shortlist``)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from relook.errors import DataError
from relook.experiment import DEFAULTS as CONFIG_DEFAULTS
from relook.io import atomic_path
from relook.pipeline.runs import (
    _dataset_identity,
    _fingerprint,
    _global_label,
    _meta_of,
    _stamp_fingerprint,
    dataset_of,
    open_pair,
    record_timing,
    store_paths,
)
from relook.types import Shortlist


def index_fingerprints(conf: dict, label: str, gallery_store, gallery_ids: list[str]) -> tuple[str, str]:
    """(current, legacy) fingerprint of what ``<out>/index.faiss`` was built from: index kind, dataset,
    global extractor and the content of its gallery store (``FeatureStore.digest`` of the gallery ids, so a
    re-extracted store changes it). An index stamped with either is up to date."""
    digest = gallery_store.digest(gallery_ids)
    kind = conf["shortlist"].get("index", CONFIG_DEFAULTS["shortlist"]["index"])
    options = [conf["shortlist"].get("ivfpq") or {}] if kind == "ivfpq" else []  # flat: as before
    return tuple(
        _fingerprint(kind, *options, _dataset_identity(conf, legacy), label, digest) for legacy in (False, True)
    )


def index_fingerprint(conf: dict, label: str, gallery_store, gallery_ids: list[str]) -> str:
    """The current fingerprint of ``index_fingerprints``: what a newly built index is stamped with."""
    return index_fingerprints(conf, label, gallery_store, gallery_ids)[0]


def index(conf: dict, overwrite: bool = False) -> Path:
    """Build the faiss index of the gallery's global descriptors -> ``<out>/index.faiss`` (+ fingerprint).

    The fingerprint covers the gallery store's content (``FeatureStore.digest``), so an index built from
    an older or re-extracted store is rebuilt, never reused.
    """
    # lazy (start-up): loads faiss; relook's entry points import this module
    from relook.search import build_index, write_index

    # lazy (start-up): loads h5py; relook's entry points import this module
    from relook.store import FeatureStore

    dataset = dataset_of(conf)
    label = _global_label(conf)
    _, gpath = store_paths(conf, label, dataset)
    kind = conf["shortlist"].get("index", CONFIG_DEFAULTS["shortlist"]["index"])
    out = index_file(conf)
    stamp = out.with_suffix(".json")
    with FeatureStore(gpath) as gs:
        missing = gs.missing(dataset.gallery_ids)
        if missing:
            raise DataError(f"{gpath}: {len(missing)} gallery images not extracted (e.g. {missing[0]!r}); run extract")
        fp, legacy = index_fingerprints(conf, label, gs, dataset.gallery_ids)
        if out.exists() and not overwrite and _stamp_fingerprint(stamp) in (fp, legacy):
            return out
        start = time.perf_counter()
        if kind == "ivfpq":  # trained on a sample, filled in parts, merged on disk, memory-mapped at search
            _build_ivfpq_on_disk(conf, gs, dataset.gallery_ids, out.parent)
        else:
            write_index(build_index(gs.stack("global_desc", dataset.gallery_ids), kind=kind), out)
        record_timing(conf["out"], "index", time.perf_counter() - start, gallery=len(dataset.gallery_ids))
    with atomic_path(stamp) as tmp:  # written after the index: a crash in between leaves a mismatch -> rebuild
        tmp.write_text(json.dumps({"fingerprint": fp, "gallery": gpath.relative_to(conf["out"]).as_posix()}))
    return out


def _build_ivfpq_on_disk(conf: dict, gs, ids: list[str], out_dir: Path) -> Path:
    """``relook.ondisk``: quantisers trained on a seeded sample, the store read chunk by chunk."""
    # lazy (start-up): loads faiss; relook's entry points import this module
    from relook.ondisk import build_on_disk, ivfpq_conf, sample_rows, train_ivfpq

    c = ivfpq_conf(conf["shortlist"].get("ivfpq"), len(ids))

    def chunks():
        for i in range(0, len(ids), c["chunk"]):
            yield gs.stack("global_desc", ids[i : i + c["chunk"]])

    sample = sample_rows(chunks(), c["train_size"], len(ids), c["seed"])
    trained = train_ivfpq(sample, c["nlist"], c["m"], c["nbits"], c["seed"])
    shutil.rmtree(out_dir / "parts", ignore_errors=True)  # parts of an index built from other features
    return build_on_disk(chunks(), out_dir, trained, c["nprobe"])


def index_file(conf: dict) -> Path:
    """Where the run's index lives: ``<out>/index.faiss``, or ``<out>/index/index.faiss`` beside its
    memory-mapped inverted lists for ``shortlist.index: ivfpq``."""
    on_disk = conf["shortlist"].get("index", "flat") == "ivfpq"
    return Path(conf["out"]) / ("index/index.faiss" if on_disk else "index.faiss")


def read_any_index(path: Path):
    """The flat / in-memory index, or the on-disk IVF-PQ (``index/index.faiss``) with its lists mapped."""
    # lazy (start-up): loads faiss; relook's entry points import this module
    from relook.ondisk import read_on_disk

    # lazy (start-up): loads faiss; relook's entry points import this module
    from relook.search import read_index

    return read_on_disk(path) if path.parent.name == "index" else read_index(path)


def _search_fingerprints(conf: dict, dataset, qs, gs, label: str) -> tuple[str, str]:
    """(current, legacy) fingerprint of what the shortlist depends on: its options, the dataset
    (``_dataset_identity``) and the content of both global stores."""
    digests = (gs.digest(dataset.gallery_ids), qs.digest(dataset.query_ids))
    return tuple(
        _fingerprint(
            conf["shortlist"],
            _dataset_identity(conf, legacy),
            label,
            *digests,
            "self excluded, ties by gallery index",
        )
        for legacy in (False, True)
    )


def _check_extracted(dataset, qs, gs) -> None:
    for ids, store in ((dataset.query_ids, qs), (dataset.gallery_ids, gs)):
        missing = store.missing(ids)
        if missing:
            raise DataError(f"{store.path}: {len(missing)} images not extracted (e.g. {missing[0]!r}); run extract")


def check_shortlist(conf: dict, dataset, shortlist: Shortlist, path: Path) -> None:
    """``DataError`` when ``shortlist`` no longer matches the config or the global feature stores (they
    were re-extracted or the search options changed since): later stages must not use it. Without the
    stores on disk there is nothing newer to compare with, and the shortlist stands."""
    label = _global_label(conf)
    qpath, gpath = store_paths(conf, label, dataset)
    if not (qpath.exists() and gpath.exists()):
        return
    with open_pair(qpath, gpath) as (qs, gs):
        _check_extracted(dataset, qs, gs)
        fps = _search_fingerprints(conf, dataset, qs, gs, label)
    if shortlist.meta.get("fingerprint") not in fps:
        raise DataError(
            f"{path}: out of date (the config's dataset/shortlist options or the {label!r} features "
            "changed since it was made); run `relook search` to redo it"
        )


def search(conf: dict, overwrite: bool = False) -> Path:
    """Global top-k shortlist from the global extractor's stores -> ``<out>/shortlist.npz``.

    When queries are gallery images (``dataset.query_in_gallery``), each query is left out of its own
    list before the top-k is cut, so k real candidates reach the rerankers (``relook.search.search``).
    """
    # lazy (start-up): loads faiss; relook's entry points import this module
    from relook.search import search as faiss_search

    dataset = dataset_of(conf)
    label = _global_label(conf)
    qpath, gpath = store_paths(conf, label, dataset)
    out = Path(conf["out"]) / "shortlist.npz"
    with open_pair(qpath, gpath) as (qs, gs):
        qids, gids = dataset.query_ids, dataset.gallery_ids
        _check_extracted(dataset, qs, gs)
        exclude = dataset.query_in_gallery
        fp, legacy = _search_fingerprints(conf, dataset, qs, gs, label)
        if out.exists() and not overwrite and _meta_of(out, Shortlist).get("fingerprint") in (fp, legacy):
            return out
        faiss_index = read_any_index(index(conf))
        meta = {
            "fingerprint": fp,
            "dataset": f"{dataset.name} ({dataset.root})",
            "global": label,
            **{f"global.{k}": v for k, v in gs.meta.items()},
        }
        start = time.perf_counter()
        shortlist = faiss_search(
            faiss_index,
            qs.stack("global_desc", qids),
            int(conf["shortlist"].get("k", CONFIG_DEFAULTS["shortlist"]["k"])),
            qids,
            gids,
            meta,
            exclude=exclude,
        )
        seconds = time.perf_counter() - start
    shortlist.save(out)
    record_timing(conf["out"], "search", seconds, queries=len(qids))  # once the shortlist is saved
    return out
