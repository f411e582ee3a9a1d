"""The stages of an experiment, each reading and writing files and skipping finished work.

``extract`` -> ``features/<label>/{queries,gallery}.h5``; ``search`` -> ``shortlist.npz``;
``rerank`` -> ``rankings/<label>.npz``; ``evaluate`` -> ``results.json`` + a printed table. A stage whose
output exists and was made from the same inputs (a fingerprint stored in the output's metadata) does
nothing; extraction resumes image by image.

Stale results are never mixed: fingerprints cover the content of the feature stores
(``FeatureStore.digest``), so a changed gallery rebuilds the index and the shortlist; each ranking records
the shortlist, settings and features it came from, and ``evaluate`` (hence ``report``) refuses, in one
line naming the file and the command that redoes it, a shortlist or ranking whose inputs changed since.
A stage that does work records its wall time in
``<out>/timings.json`` (``record_timing``), which ``evaluate`` copies into ``results.json`` for the report.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

from relook.datasets import load_dataset
from relook.distributed import extract_sharded, process_group, world
from relook.environment import environment, git_commit  # git_commit: re-exported for older callers
from relook.errors import ConfigError, DataError
from relook.eval.evaluate import check_has_positives, format_table
from relook.eval.evaluate import evaluate as score
from relook.experiment import DEFAULTS as CONFIG_DEFAULTS
from relook.images import load_image
from relook.io import atomic_path, json_text
from relook.runpaths import data_root, remap, stored_form
from relook.types import Ranking, Shortlist


@contextlib.contextmanager
def open_pair(qpath: Path, gpath: Path):
    """(query store, gallery store) opened read-only; one handle when both are the same file."""
    from relook.store import FeatureStore

    with FeatureStore(gpath) as gs:
        if Path(qpath) == Path(gpath):
            yield gs, gs
        else:
            with FeatureStore(qpath) as qs:
                yield qs, gs


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def record_timing(out: str | Path, stage: str, seconds: float, **counts: int) -> None:
    """Merge ``{stage: {"seconds": ..., **counts}}`` into ``<out>/timings.json``.

    Called only by a stage that did work, so a rerun that skips finished work keeps the time of the run
    that made the files (the report's per-stage times describe the outputs, not the last, idle rerun).
    """
    path = Path(out) / "timings.json"
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[stage] = {"seconds": round(float(seconds), 4), **{k: int(v) for k, v in counts.items()}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(timings, indent=2, sort_keys=True))


def read_timings(out: str | Path) -> dict[str, dict]:
    """``<out>/timings.json`` as written by ``record_timing`` ({} when no stage has recorded yet)."""
    path = Path(out) / "timings.json"
    return json.loads(path.read_text()) if path.exists() else {}


def dataset_of(conf: dict):
    opts = dict(conf["dataset"])
    if "name" not in opts or "root" not in opts:
        raise ConfigError("dataset: needs 'name' and 'root' (e.g. dataset.name=co3d_retrieve dataset.root=PATH)")
    name, root = opts.pop("name"), data_root(conf)
    opts.pop("root")
    if isinstance(opts.get("csv"), str):
        opts["csv"] = remap(conf, opts["csv"])
    if not root.exists():
        moved = f" (data_root, standing for dataset.root {conf['dataset']['root']})" if conf.get("data_root") else ""
        hint = "" if moved else "; if the dataset moved, give its new place with --data-root (or -s data_root=DIR)"
        raise DataError(f"dataset root {root}{moved} does not exist{hint}")
    dataset = load_dataset(name, root, **opts)
    for what, items in (("gallery", dataset.gallery), ("query", dataset.queries)):
        if not items:
            split = f" (split {opts['split']!r})" if "split" in opts else ""
            raise DataError(f"dataset {name} at {root}{split} has no {what} images; check dataset.root and the split")
    return dataset


def _same_items(dataset) -> bool:
    """Every query is a gallery image (same id, same crop): SOP, CUB, Cars, CO3D-Retrieve, folder."""
    gallery = {(g[0], g[2]) for g in dataset.gallery}
    return all((q[0], q[2]) in gallery for q in dataset.queries)


def store_paths(conf: dict, label: str, dataset) -> tuple[Path, Path]:
    """(query store, gallery store) of extractor ``label``; one file when the queries are gallery images."""
    base = Path(conf["out"]) / "features" / label
    return (base / "gallery.h5" if _same_items(dataset) else base / "queries.h5"), base / "gallery.h5"


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
    from relook.store import FeatureStore

    if not Path(store_path).exists():
        return len(items)
    with FeatureStore(store_path, "r") as store:
        return len(store.missing([it[0] for it in items]))


def _global_label(conf: dict) -> str:
    if conf["global"]:
        return conf["global"]
    if not conf["extractors"]:
        raise ConfigError("no extractors configured: add one under 'extractors'")
    return conf["extractors"][0]["label"]


def _dataset_identity(conf: dict, legacy: bool = False) -> dict:
    """The dataset as fingerprints see it: its stored form (``relook.runpaths``: relative paths relative to
    the run), so a run moved with its data stays up to date; ``legacy``: the paths as typed, which is what
    fingerprints made before runs could move hashed (accepted too, so no older run is redone)."""
    return conf["dataset"] if legacy else stored_form(conf)["dataset"]


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
    from relook.search import build_index, write_index
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
    from relook.ondisk import read_on_disk
    from relook.search import read_index

    return read_on_disk(path) if path.parent.name == "index" else read_index(path)


def _stamp_fingerprint(stamp: Path) -> str | None:
    try:
        return json.loads(stamp.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


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


def _meta_of(path: Path, kind) -> dict:
    """The metadata of an existing shortlist/ranking file, or {} when it is unreadable (then it is redone)."""
    try:
        return kind.load(path).meta
    except DataError:
        return {}


def _features_for(conf: dict, reranker, item: dict, dataset) -> tuple[Path, Path]:
    from relook.store import FeatureStore

    labels = [item["features"]] if "features" in item else [e["label"] for e in conf["extractors"]]
    for label in labels:
        qpath, gpath = store_paths(conf, label, dataset)
        if not gpath.exists():
            continue
        with FeatureStore(gpath) as gs:
            if set(reranker.requires) <= set(gs.fields()):
                return qpath, gpath
    raise ConfigError(
        f"reranker {item['label']!r} needs fields {sorted(reranker.requires)} but no extractor "
        f"store among {labels} has them; add an extractor that writes them"
    )


def drop_junk(shortlist: Shortlist, dataset) -> Shortlist:
    """Oxford / Paris protocols: remove each query's junk images from its shortlist before reranking."""
    gpos = {g: i for i, g in enumerate(shortlist.gallery_ids)}
    dgal = dataset.gallery_ids
    idx, sc = shortlist.indices.copy(), shortlist.scores.copy()
    qpos = {q: i for i, q in enumerate(dataset.query_ids)}
    for r, qid in enumerate(shortlist.query_ids):
        junk = {gpos[dgal[j]] for j in dataset.gnd[qpos[qid]].get("junk", [])}
        keep = [c for c, g in enumerate(idx[r]) if g >= 0 and g not in junk]
        n = len(keep)
        idx[r, :n], sc[r, :n] = shortlist.indices[r, keep], shortlist.scores[r, keep]
        idx[r, n:], sc[r, n:] = -1, -float("inf")
    return Shortlist(shortlist.query_ids, shortlist.gallery_ids, idx, sc, {**shortlist.meta, "junk": "dropped"})


def _features_digest(qpath: Path, gpath: Path) -> str:
    with open_pair(qpath, gpath) as (qs, gs):
        return gs.digest() if qs is gs else f"{qs.digest()}+{gs.digest()}"


def _settings_fingerprints(conf: dict, item: dict) -> tuple[str, str]:
    """(current, legacy) fingerprint of reranker ``item``'s settings: current over its stored form (a
    checkpoint path relative to the run), legacy over the options as typed."""
    stored = next((r for r in stored_form(conf)["rerankers"] if r.get("label") == item["label"]), item)
    return _fingerprint(stored, conf["rerank_junk"]), _fingerprint(item, conf["rerank_junk"])


def _in_run(conf: dict, path: Path, legacy: bool) -> str:
    """A store path of the run as a ranking records it: relative to the run folder (as typed: ``legacy``)."""
    if legacy:
        return str(path)
    try:
        return path.relative_to(conf["out"]).as_posix()
    except ValueError:
        return str(path)


def _recorded_store(conf: dict, value: str) -> Path:
    """A store path recorded in a ranking's metadata, found from here: relative to the run, else as written."""
    path = Path(value)
    inside = Path(conf["out"]) / path
    return inside if value and not path.is_absolute() and inside.is_file() else path


def _legacy_stamps(conf: dict, item: dict, stamps: dict[str, str], qpath: Path, gpath: Path) -> dict[str, str]:
    """``stamps`` as rankings made before runs could move recorded them (paths and settings as typed)."""
    return {
        **stamps,
        "made_from.settings": _settings_fingerprints(conf, item)[1],
        "made_from.queries": _in_run(conf, qpath, True),
        "made_from.gallery": _in_run(conf, gpath, True),
    }


def _ranking_stamps(conf: dict, item: dict, shortlist: Shortlist, qpath: Path, gpath: Path) -> dict[str, str]:
    """What a ranking depends on, kept in its metadata so ``evaluate`` can tell a stale one: the shortlist's
    fingerprint, the reranker's settings, and the paths (relative to the run) and content of the feature
    stores it read (and of the pseudo ground-truth F file an EPE checkpoint reads)."""
    stamps = {
        "made_from.shortlist": str(shortlist.meta.get("fingerprint")),
        "made_from.settings": _settings_fingerprints(conf, item)[0],
        "made_from.queries": _in_run(conf, qpath, False),
        "made_from.gallery": _in_run(conf, gpath, False),
        "made_from.features": _features_digest(qpath, gpath),
    }
    if item.get("pseudo_gt") and Path(item["pseudo_gt"]).is_file():  # EPE input: its content, not just its path
        stamps["made_from.pseudo_gt"] = hashlib.sha256(Path(item["pseudo_gt"]).read_bytes()).hexdigest()[:16]
    return stamps


def stale_reason(conf: dict, item: dict, meta: dict, shortlist: Shortlist) -> str | None:
    """Why the ranking of reranker ``item`` (its metadata ``meta``) cannot be shown beside ``shortlist``,
    or None when it was made from that shortlist, these settings and the feature stores as they are now
    (stores no longer on disk are not compared)."""
    if meta.get("made_from.shortlist") != str(shortlist.meta.get("fingerprint")):
        return "made from another shortlist than shortlist.npz"
    if meta.get("made_from.settings") not in _settings_fingerprints(conf, item):
        return f"made with other settings than the config's reranker {item['label']!r}"
    qpath = _recorded_store(conf, meta.get("made_from.queries", ""))
    gpath = _recorded_store(conf, meta.get("made_from.gallery", ""))
    if qpath.is_file() and gpath.is_file() and meta.get("made_from.features") != _features_digest(qpath, gpath):
        return f"made from features that changed since ({gpath})"
    return None


def rerank(
    conf: dict, labels: list[str] | None = None, overwrite: bool = False, progress: bool = True, shard=None
) -> dict[str, Path]:
    """Run the configured rerankers (or those in ``labels``) on the same shortlist.

    ``shard`` (``--shard i/N``): only that share of the queries, each ranking into its part
    ``rankings/<label>.npz.partI-of-N`` (``relook.sharding``), joined by ``relook merge``.
    """
    from relook.rerank import create_reranker
    from relook.rerank.provenance import reranker_meta
    from relook.sharding import part_path, shard_ids

    dataset = dataset_of(conf)
    sl_path = Path(conf["out"]) / "shortlist.npz"
    if not sl_path.exists():
        raise DataError(f"{sl_path}: no shortlist; run `relook search` first")
    shortlist = Shortlist.load(sl_path)
    check_shortlist(conf, dataset, shortlist, sl_path)
    if conf["rerank_junk"] == "drop" and dataset.protocol in ("revisitop", "classic"):
        shortlist = drop_junk(shortlist, dataset)
    if shard is not None:
        shortlist = shortlist.rows(shard_ids(shortlist.query_ids, shard))
    known = [r["label"] for r in conf["rerankers"]]
    for lab in labels or []:
        if lab not in known:
            raise ConfigError(f"--methods: {lab!r} is not a configured reranker; configured: {known}")
    outs = {}
    for item in conf["rerankers"]:
        if labels and item["label"] not in labels:
            continue
        opts = {k: v for k, v in item.items() if k not in ("name", "label", "features")}
        reranker = create_reranker(item["name"], **opts)
        reranker.label = item["label"]  # the progress bar names the configuration (gv-lightglue, not gv)
        qpath, gpath = _features_for(conf, reranker, item, dataset)
        out = Path(conf["out"]) / "rankings" / f"{item['label']}.npz"
        out = out if shard is None else part_path(out, shard)
        stamps = _ranking_stamps(conf, item, shortlist, qpath, gpath)
        fp = _fingerprint(stamps)
        made = _meta_of(out, Ranking).get("fingerprint") if out.exists() and not overwrite else None
        if made is not None and made in (fp, _fingerprint(_legacy_stamps(conf, item, stamps, qpath, gpath))):
            outs[item["label"]] = out
            continue
        with open_pair(qpath, gpath) as (qs, gs):
            start = time.perf_counter()
            ranking = reranker.rerank_shortlist(shortlist, qs, gs, progress=progress)
            elapsed = time.perf_counter() - start
            feature_meta = gs.meta
        ranking.meta.update(
            {
                "fingerprint": fp,
                **stamps,
                "seconds_per_query": f"{elapsed / max(1, shortlist.num_queries):.4f}",
                "top_k": str(reranker.conf.get("top_k", "")),
                "features": str(gpath),
                **{f"features.{k}": v for k, v in feature_meta.items()},
                **({"checkpoint": str(opts["checkpoint"])} if "checkpoint" in opts else {}),
                **reranker_meta(reranker),  # settings, matcher weights, checkpoint sha256 (for the report)
            }
        )
        ranking.save(out)
        if shard is None:  # N shards would race on timings.json; merge records their sum
            record_timing(conf["out"], f"rerank:{item['label']}", elapsed, queries=shortlist.num_queries)
        outs[item["label"]] = out
    return outs


def shortlist_pairs(shortlist: Shortlist, top_k: int) -> list[tuple[str, str]]:
    """(query id, gallery id) of every query's first ``top_k`` shortlist entries, query first (as RRT pairs them)."""
    return [
        (shortlist.query_ids[q], shortlist.gallery_ids[g])
        for q in range(shortlist.num_queries)
        for g in shortlist.indices[q, :top_k]
        if g >= 0
    ]


def pseudo_gt_shortlist(
    conf: dict,
    output: str | Path,
    top_k: int | None = None,
    pgt_conf: dict | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Stage: pseudo ground-truth F (matches + MAGSAC++, ``relook.geometry.robust``) of every (query,
    candidate) pair in the run's top-``top_k`` shortlist (default: the rerankers' ``top_k``), from the dataset's images (crop boxes applied as
    at extraction) into ``output``; resumable. What an EPE checkpoint's ``rrt`` reranker reads (``pseudo_gt``)."""
    from relook.geometry.robust import main
    from relook.rerank.base import DEFAULTS as RERANK_DEFAULTS

    dataset = dataset_of(conf)
    sl_path = Path(conf["out"]) / "shortlist.npz"
    if not sl_path.exists():
        raise DataError(f"{sl_path}: no shortlist; run `relook search` first")
    items = {i: (path, box) for i, path, box in [*dataset.gallery, *dataset.queries]}
    pairs = shortlist_pairs(Shortlist.load(sl_path), RERANK_DEFAULTS["top_k"] if top_k is None else top_k)
    return main(pgt_conf, pairs, lambda i: load_image(*items[i]), output, overwrite=overwrite, progress=progress)


def evaluate(conf: dict) -> dict[str, Any]:
    """Metrics of the global shortlist and of every ranking -> ``results.json``; returns the results.

    A dataset where no query has a positive raises ``DataError`` (no metric is defined); a metric that is
    undefined for one protocol setting (e.g. no query has a Hard positive) is NaN in the returned dict,
    ``null`` in ``results.json`` and ``-`` in the table.
    """
    dataset, shortlist, rankings = evaluation_inputs(conf)
    rows = {"global only": score(shortlist, dataset)}
    rows.update({label: score(ranking, dataset) for label, ranking in rankings.items()})
    return write_results(conf, dataset, shortlist, rankings, rows)


def evaluation_inputs(conf: dict) -> tuple[Any, Shortlist, dict[str, Ranking]]:
    """(dataset, shortlist, {label: ranking}) that ``evaluate`` scores, after its checks: a dataset with
    positives, a shortlist and rankings made from the stores and settings as they are now."""
    dataset = dataset_of(conf)
    check_has_positives(dataset)
    out_dir = Path(conf["out"])
    sl_path = out_dir / "shortlist.npz"
    if not sl_path.exists():
        raise DataError(f"{sl_path}: no shortlist; run `relook search` first")
    shortlist = Shortlist.load(sl_path)
    check_shortlist(conf, dataset, shortlist, sl_path)
    rankings, stale = {}, []
    for item in conf["rerankers"]:
        path = out_dir / "rankings" / f"{item['label']}.npz"
        if path.exists():
            rankings[item["label"]] = ranking = Ranking.load(path)
            why = stale_reason(conf, item, ranking.meta, shortlist)
            if why:
                stale.append((item["label"], path, why))
    if stale:
        labels = ",".join(s[0] for s in stale)
        raise DataError(
            f"{stale[0][1]}: {stale[0][2]}"
            + (f" (also {', '.join(str(s[1]) for s in stale[1:])})" if len(stale) > 1 else "")
            + f"; run `relook rerank --methods {labels}` to redo "
            f"{'them' if len(stale) > 1 else 'it'} (or delete the file)"
        )
    return dataset, shortlist, rankings


def write_results(
    conf: dict, dataset, shortlist: Shortlist, rankings: dict[str, Ranking], rows: dict[str, dict]
) -> dict[str, Any]:
    """``results.json`` from the metric ``rows`` ("global only" and one per ranking label); returns it."""
    from relook.eval.intervals import delta_intervals

    out_dir = Path(conf["out"])
    timing = {label: _seconds(r.meta.get("seconds_per_query")) for label, r in rankings.items()}
    meta = {"global only": shortlist.meta, **{label: r.meta for label, r in rankings.items()}}
    results = {
        "dataset": f"{dataset.name} ({dataset.root})",
        "git": git_commit(),
        "metrics": rows,
        "seconds_per_query": timing,
        "provenance": provenance(meta),
        "data_note": " ".join(x for x in (conf.get("note", ""), dataset.info.get("note", "")) if x),
        "run": run_summary(conf, dataset, shortlist, meta),
        "timings": read_timings(out_dir),
        "environment": environment(),  # date, relook version, commit, hardware of this evaluation
        "intervals": delta_intervals({"global only": shortlist, **rankings}, dataset),  # mAP change, 95 % CI
    }

    with atomic_path(out_dir / "results.json") as tmp:
        tmp.write_text(json_text(results, indent=2))
    from relook.confidence import GLOBAL, calibrate_run, write_calibration  # "no confident match" thresholds

    write_calibration(out_dir, calibrate_run(dataset, {GLOBAL: shortlist, **rankings}))
    return results


def _seconds(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def is_random_weights(record: str) -> bool:
    """Whether a store's one-line weights record names a random initialisation (no trained weights)."""
    return "random init" in record.lower()


def run_summary(conf: dict, dataset, shortlist: Shortlist, meta: dict[str, dict]) -> dict[str, Any]:
    """What a reader needs before the numbers: data, sizes, shortlist and reranked lengths (and whether
    they were clamped to the gallery), each extractor's weights record and seed, and caveats.

    ``meta``: each method's ranking metadata (``top_k`` as the reranker used it). Extractor records come
    from the gallery stores' provenance, so they describe the features actually scored.
    """
    from relook.rerank.base import DEFAULTS as RERANK_DEFAULTS  # lazy (start-up): loads every reranker
    from relook.rerank.base import RERANKERS
    from relook.store import FeatureStore

    requested = int(conf["shortlist"].get("k", CONFIG_DEFAULTS["shortlist"]["k"]))
    extractors, notes = {}, []
    for item in conf["extractors"]:
        _, gpath = store_paths(conf, item["label"], dataset)
        store_meta = {}
        if gpath.exists():
            with FeatureStore(gpath, "r") as gs:
                store_meta = gs.meta
        weights = store_meta.get("weights", "")
        seed = store_meta.get("extractor.seed", item.get("seed", ""))
        head = f" + {store_meta['head']}" if store_meta.get("head") else ""  # `relook train global`'s head
        extractors[item["label"]] = {
            "name": item["name"],
            "weights": (weights or "no learned weights") + head,
            "seed": str(seed),
        }
        if weights and is_random_weights(weights):
            notes.append(
                f"extractor {item['label']} has random weights ({weights}): its numbers say nothing "
                "about a trained model"
            )
    rerankers = {}
    for item in conf["rerankers"]:
        m = meta.get(item["label"], {})
        default = getattr(RERANKERS.get(item["name"]), "default_conf", {}) if item["name"] in RERANKERS else {}
        top_k = int(m.get("top_k") or item.get("top_k", default.get("top_k", RERANK_DEFAULTS["top_k"])))
        rerankers[item["label"]] = {
            "name": item["name"],
            "top_k": top_k,
            "top_k_used": min(top_k, shortlist.k),
            **({"seed": str(item["seed"])} if "seed" in item else {}),
        }
    info = dataset.info
    synthetic = (
        bool(info.get("synthetic"))
        or "synthetic" in " ".join(str(x) for x in (conf.get("note", ""), info.get("note", ""))).lower()
    )
    if synthetic:
        notes.append("synthetic data: these numbers are not a benchmark on real photos")
    return {
        "dataset": dataset.name,
        "root": str(dataset.root),
        "split": split_name(conf, dataset),
        "queries": len(dataset.query_ids),
        "gallery": len(dataset.gallery_ids),
        "shortlist_k": requested,
        "shortlist_k_used": int(shortlist.k),
        "clamped": int(shortlist.k) < requested,
        "extractors": extractors,
        "rerankers": rerankers,
        "synthetic": synthetic,
        "notes": notes,
    }


def split_name(conf: dict, dataset) -> str:
    """The split the numbers are on: the configured one, else the reader's, else what the protocol makes
    of the whole dataset (never "None")."""
    split = conf["dataset"].get("split", dataset.info.get("split"))
    if split not in (None, "", "None"):
        return str(split)
    if _same_items(dataset):
        return "all images (no split: each image queries all the others)"
    return "the dataset's own query and gallery sets (no split)"


def _describe(meta: dict, prefix: str) -> str:
    """``cnn_local(arch=resnet50, pretrained=False)`` from a store's provenance keys under ``prefix``."""
    name = meta.get(f"{prefix}.extractor")
    if not name:
        return ""
    keys = ("arch", "backbone", "model", "pretrained", "weights", "checkpoint")
    if meta.get(f"{prefix}.weights"):  # the resolved weights record says more than the option that named it
        keys = tuple(k for k in keys if k not in ("weights", "pretrained"))
    opts = [
        f"{k}={meta[f'{prefix}.extractor.{k}']}"
        for k in keys
        if meta.get(f"{prefix}.extractor.{k}") not in (None, "None", "")
    ]
    if meta.get(f"{prefix}.weights"):
        opts.append(f"weights={meta[f'{prefix}.weights']}")
    if meta.get(f"{prefix}.head"):  # a learned head of `relook train global` (projection: PATH)
        opts.append(f"head={meta[f'{prefix}.head']}")
    return f"{name}({', '.join(opts)})" if opts else name


def provenance(meta: dict[str, dict]) -> dict[str, str]:
    """Per method: which features, weights and checkpoint produced it (from the files' metadata)."""
    from relook.rerank.provenance import describe_reranker

    out = {}
    for method, m in meta.items():
        parts = [f"shortlist from {_describe(m, 'global')}"]
        if _describe(m, "features"):
            parts.append(f"reranker reads {_describe(m, 'features')}")
        if m.get("reranker"):  # a ranking: its matcher, weights, thresholds, top-k, checkpoint with sha256
            parts.append(describe_reranker(m) or f"reranker {m['reranker']} (settings not recorded)")
        if m.get("checkpoint") and not m.get("reranker.checkpoint"):
            parts.append(f"checkpoint {m['checkpoint']}")
        out[method] = "; ".join(p for p in parts if p)
    return out


def results_table(results: dict) -> str:
    extra = {
        m: {"s/query": "-" if t is None or t != t else f"{t:.3f}"} for m, t in results["seconds_per_query"].items()
    }
    lines = [
        f"data: {results['dataset']}" + (f" [{results['data_note']}]" if results.get("data_note") else ""),
        format_table(results["metrics"], extra),
        f"git commit: {results['git']}",
    ]
    lines += [f"  {m}: {p}" for m, p in results["provenance"].items() if p]
    for m, ci in (results.get("intervals") or {}).items():  # paired bootstrap over queries (eval.intervals)
        if ci.get("delta") is not None and ci["delta"] == ci["delta"]:
            lines.append(
                f"  {m}: {ci['metric']} change vs global {100 * ci['delta']:+.2f} points, 95% CI "
                f"[{100 * ci['lo']:+.2f}, {100 * ci['hi']:+.2f}] (paired bootstrap over {ci['queries']} queries)"
            )
    return "\n".join(lines)
