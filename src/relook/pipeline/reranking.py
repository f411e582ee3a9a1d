"""The rerank stage: every configured reranker on the same shortlist -> ``rankings/<label>.npz``, each
ranking stamped with the shortlist, settings and feature stores it was made from (``stale_reason`` tells a
stale one); and the pseudo ground-truth F of the shortlist's pairs that an EPE checkpoint reads."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from relook.errors import ConfigError, DataError
from relook.geometry.robust import main
from relook.images import load_image
from relook.pipeline.runs import _fingerprint, _meta_of, dataset_of, open_pair, record_timing, store_paths
from relook.pipeline.shortlist import check_shortlist
from relook.runpaths import stored_form
from relook.sharding import part_path, shard_ids
from relook.types import Ranking, Shortlist


def _features_for(conf: dict, reranker, item: dict, dataset) -> tuple[Path, Path]:
    # lazy (start-up): loads h5py; relook's entry points import this module
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
    conf: dict,
    labels: list[str] | None = None,
    overwrite: bool = False,
    progress: bool = True,
    shard=None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Path]:
    """Run the configured rerankers (or those in ``labels``) on the same shortlist.

    ``shard`` (``--shard i/N``): only that share of the queries, each ranking into its part
    ``rankings/<label>.npz.partI-of-N`` (``relook.sharding``), joined by ``relook merge``. ``log``: where
    the estimate of each pairwise reranker's time goes before it starts (``rerank_shortlist_timed``).
    """
    # lazy (start-up): loads cv2, faiss, torch; relook's entry points import this module
    from relook.rerank import create_reranker

    # lazy (start-up): loads cv2, faiss, torch; relook's entry points import this module
    from relook.rerank.provenance import reranker_meta

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
            ranking = rerank_shortlist_timed(reranker, shortlist, qs, gs, progress, log)
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


def pair_count(shortlist: Shortlist, top_k: int) -> int:
    """How many (query, candidate) pairs a reranker of depth ``top_k`` scores on ``shortlist``."""
    return int((shortlist.indices[:, :top_k] >= 0).sum())


def estimate_line(label: str, pairs: int, timed_pairs: int, seconds: float) -> str:
    """``rerank:<label>: ~N pairs, estimated M min``: the time left after ``timed_pairs`` of the ``pairs``
    took ``seconds`` (the rest at the same rate per pair)."""
    left = seconds / max(timed_pairs, 1) * max(pairs - timed_pairs, 0)
    return (
        f"rerank:{label}: ~{pairs} pairs, estimated {left / 60:.1f} min "
        f"(the first query's {timed_pairs} pairs took {seconds:.1f} s on this machine)"
    )


def rerank_shortlist_timed(
    reranker, shortlist: Shortlist, qs, gs, progress: bool, log: Callable[[str], None] | None, clock=time.perf_counter
) -> Ranking:
    """``reranker.rerank_shortlist``, after timing the first query alone and logging ``estimate_line`` (a
    long rerank says how long before it starts). Only with ``log``, two or more queries and a ``pairwise``
    reranker (query expansion and ASMK spend their time on the gallery, not per pair); the timed query's
    scores are dropped, so the ranking is the one a single call makes."""
    if log is None or shortlist.num_queries < 2 or not getattr(reranker, "pairwise", False):
        return reranker.rerank_shortlist(shortlist, qs, gs, progress=progress)
    top_k = int(reranker.conf.get("top_k") or shortlist.k)
    first = shortlist.rows(shortlist.query_ids[:1])
    start = clock()
    reranker.rerank_shortlist(first, qs, gs, progress=False)
    seconds = clock() - start
    log(estimate_line(reranker.label or reranker.name, pair_count(shortlist, top_k), pair_count(first, top_k), seconds))
    return reranker.rerank_shortlist(shortlist, qs, gs, progress=progress)


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
    # lazy (start-up): loads cv2, torch; relook's entry points import this module
    from relook.rerank.base import DEFAULTS as RERANK_DEFAULTS

    dataset = dataset_of(conf)
    sl_path = Path(conf["out"]) / "shortlist.npz"
    if not sl_path.exists():
        raise DataError(f"{sl_path}: no shortlist; run `relook search` first")
    items = {i: (path, box) for i, path, box in [*dataset.gallery, *dataset.queries]}
    pairs = shortlist_pairs(Shortlist.load(sl_path), RERANK_DEFAULTS["top_k"] if top_k is None else top_k)
    return main(pgt_conf, pairs, lambda i: load_image(*items[i]), output, overwrite=overwrite, progress=progress)
