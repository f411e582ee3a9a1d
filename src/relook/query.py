"""Query by image: rank a finished run's gallery for new pictures, with the run's own models and reranker.

``query(images, run_dir, method="gv", k=10)`` answers "what in my collection looks like this picture?"
for images that need not be in the dataset. It reads ``<run>/config.yaml`` (what ``relook run`` saved),
rebuilds the run's extractors with the same options, and refuses to go on when the weights they load now
are not those the run's stores were made with (their provenance meta differs), because a query embedded
by another network is compared with gallery vectors it cannot be compared with. Then:

1. embed each image with the global extractor (and the extractor the chosen reranker reads), in memory;
2. search ``<run>/index.faiss`` for the top ``shortlist.k`` gallery images (the run's depth);
3. rerank with the run's reranker labelled ``method``, through the same ``rerank_shortlist`` the run
   used, the query's features held in memory (``FeaturesInMemory``) and the gallery's read from the
   run's stores, so a query gets what the run's own queries got (AQE's re-search and ASMK's
   gallery-trained codebook included); ``method=None`` keeps the global order.

Each ``QueryResult`` lists the top ``k`` as ``Hit``s: gallery id and file, the method's score, the global
score and the rank change against the global order. ``format_result`` prints it; ``relook.viz.query_page``
writes the thumbnails page.

``relook.query`` is the function (exported by the package), so take names from this module with
``from relook.query import Hit``; ``import relook.query as m`` binds the function, not the module.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from relook import pipeline
from relook.confidence import describe, ensure_calibration, threshold_of
from relook.errors import ConfigError, DataError
from relook.eval.calibration import is_confident
from relook.experiment import DEFAULTS as CONFIG_DEFAULTS
from relook.experiment import load_config
from relook.images import load_image
from relook.pipeline import index_fingerprints
from relook.types import ImageFeatures, Shortlist

GLOBAL = "global"  # the method name of the plain global order (no reranker)


@dataclass(frozen=True)
class Hit:
    """One gallery image in a query's ranked list."""

    rank: int  # 1-based rank after reranking
    gallery_id: str  # the image's id in the run's dataset
    score: float  # the method's score (the global score for the global order)
    global_score: float  # inner product of the global descriptors; NaN when not in the global top-k
    global_rank: int | None  # 1-based rank in the global order; None when not in the global top-k
    path: Path  # the gallery image file
    bbox: tuple[float, float, float, float] | None = None  # crop of the gallery item in its file
    confident: bool | None = None  # score >= the method's calibrated threshold (None: run not calibrated)

    @property
    def rank_change(self) -> int | None:
        """Places gained by reranking (positive: moved up); None for an image the global top-k lacked."""
        return None if self.global_rank is None else self.global_rank - self.rank


@dataclass
class QueryResult:
    """The ranked gallery for one query image."""

    image: Path  # the query image file
    method: str  # reranker label, or "global"
    hits: list[Hit] = field(default_factory=list)
    threshold: float | None = None  # the method's calibrated "match" threshold (relook.confidence); None: never
    calibration: str = ""  # how the threshold was calibrated, one line ("" when the run has none)

    @property
    def confident(self) -> bool:
        """Whether the best hit passes the method's calibrated threshold ("no confident match" if not)."""
        return bool(self.hits) and bool(self.hits[0].confident)

    @property
    def gallery_ids(self) -> list[str]:
        return [h.gallery_id for h in self.hits]


class FeaturesInMemory:
    """Read-only stand-in for a ``FeatureStore`` holding the query images' features, so rerankers that
    read a query store (``read``, ``stack``, ``fields``, ``ids``) work on images never written to disk."""

    def __init__(self, feats: Sequence[ImageFeatures], name: str = "query images") -> None:
        self._feats = {f.image_id: f for f in feats}
        self.path = Path(f"<{name}>")

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._feats

    def __len__(self) -> int:
        return len(self._feats)

    def ids(self) -> list[str]:
        return list(self._feats)

    def fields(self, image_id: str | None = None) -> list[str]:
        if image_id is not None:
            return self._get(image_id).fields()
        sets = [set(f.fields()) for f in self._feats.values()]
        return sorted(set.intersection(*sets)) if sets else []

    def _get(self, image_id: str) -> ImageFeatures:
        if image_id not in self._feats:
            raise DataError(f"image {image_id!r} not among the {len(self)} {self.path}")
        return self._feats[image_id]

    def read(self, image_id: str, fields: Sequence[str] | None = None) -> ImageFeatures:
        feats = self._get(image_id)
        names = feats.fields() if fields is None else list(fields)
        return ImageFeatures.from_arrays(image_id, {n: feats.get(n) for n in names})

    def stack(self, field_name: str, image_ids: Sequence[str] | None = None) -> np.ndarray:
        ids = self.ids() if image_ids is None else list(image_ids)
        if not ids:
            return np.zeros((0,), np.float32)
        return np.stack([self._get(i).get(field_name) for i in ids])


# ------------------------------------------------------------------------------------------- the run
def load_run(run_dir: str | Path, data_root: str | Path | None = None) -> dict[str, Any]:
    """The run's saved config, with ``out`` pointing at ``run_dir`` (the run may have been moved; its
    relative paths start at ``run_dir``, ``relook.runpaths``) and, given ``data_root``, the dataset read
    from there instead of ``dataset.root`` (a dataset that moved without the run).

    A folder without ``config.yaml`` or ``index.faiss`` raises a one-line ``DataError`` saying which
    command makes it.
    """
    run = Path(run_dir)
    if not (run / "config.yaml").is_file():
        raise DataError(
            f"{run}: no config.yaml, so not a finished run; make one first with `relook run -c CONFIG -s out={run}`"
        )
    if not ((run / "index.faiss").is_file() or (run / "index" / "index.faiss").is_file()):
        raise DataError(
            f"{run}: no index.faiss; run `relook run -c {run / 'config.yaml'}` "
            f"(or `relook index -c {run / 'config.yaml'}`) first"
        )
    conf = load_config([run / "config.yaml"])
    conf["out"] = str(run)
    if data_root is not None:
        conf["data_root"] = str(data_root)
    return conf


def methods(conf: dict) -> list[str]:
    """The methods a query on this run may use: the configured rerankers' labels."""
    return [r["label"] for r in conf["rerankers"]]


def _reranker_item(conf: dict, method: str | None) -> dict | None:
    if method is None or method == GLOBAL:
        return None
    for item in conf["rerankers"]:
        if item["label"] == method:
            return item
    raise ConfigError(
        f"method {method!r} is not one of this run's rerankers; choose from "
        f"{', '.join(methods(conf)) or '(none configured)'} (or '{GLOBAL}' for the global order)"
    )


def differing_provenance(stored: dict[str, str], extractor) -> list[str]:
    """Provenance keys on which a store's meta and a freshly built ``extractor`` disagree, as
    ``key (store: a, now: b)``; runtime options (batch size, device) are ignored, and so is a weights
    file's path when its sha256 agrees (the same file installed elsewhere)."""
    ignored = {f"extractor.{k}" for k in extractor.runtime_keys}
    now = extractor.provenance
    out = []
    for key in sorted(now):
        if key in ignored or stored.get(key) == now[key]:
            continue
        if key.endswith(".path") and stored.get(key[:-5] + ".sha256", "") == now.get(key[:-5] + ".sha256") != "":
            continue
        out.append(f"{key} (store: {_short(stored.get(key, 'missing'))}, now: {_short(now[key])})")
    return out


def _short(value: str, n: int = 48) -> str:
    return value if len(value) <= n else value[: n - 3] + "..."


def embed(item: dict, store_path: Path, images: Sequence[tuple[str, np.ndarray]]) -> list[ImageFeatures]:
    """Features of ``images`` (id, RGB array) by the run's extractor ``item``, after checking that it is
    the network that made ``store_path`` (a one-line ``DataError`` naming the store and the keys if not)."""
    # lazy (start-up): loads cv2, torch; relook's entry points import this module
    from relook.features import create_extractor

    # lazy (start-up): loads h5py; relook's entry points import this module
    from relook.store import FeatureStore

    with FeatureStore(store_path, "r") as store:
        if not len(store):
            raise DataError(f"{store_path}: no extracted images; run `relook run` on this run's config first")
        stored = store.meta
    extractor = create_extractor(item["name"], **{k: v for k, v in item.items() if k not in ("name", "label")})
    differ = differing_provenance(stored, extractor)
    if differ:
        raise DataError(
            f"{store_path}: made by another {item['label']!r} extractor than the run's config builds "
            f"now, differing in {'; '.join(differ[:4])}{f' and {len(differ) - 4} more' if len(differ) > 4 else ''}; re-extract with `relook run` or query with the "
            "weights the run used"
        )
    return list(extractor.extract(images))


def _check_index(conf: dict, label: str, gpath: Path, index_path: Path, gallery_ids: list[str]) -> None:
    """The index must have been built from the global store as it is now (``pipeline.index``'s stamp)."""
    # lazy (start-up): loads h5py; relook's entry points import this module
    from relook.store import FeatureStore

    stamp = index_path.with_suffix(".json")
    fp = json.loads(stamp.read_text()).get("fingerprint") if stamp.is_file() else None
    with FeatureStore(gpath, "r") as gs:
        if fp not in index_fingerprints(conf, label, gs, gallery_ids):
            raise DataError(
                f"{index_path}: not built from {gpath} as it is now; rebuild it with "
                f"`relook index -c {Path(conf['out']) / 'config.yaml'} --overwrite`"
            )


# ------------------------------------------------------------------------------------------- the query
def query(
    images: Sequence[str | Path],
    run_dir: str | Path,
    method: str | None = None,
    k: int = 10,
    data_root: str | Path | None = None,
) -> list[QueryResult]:
    """Rank the gallery of the finished run ``run_dir`` for each image in ``images`` (module docstring).

    ``method``: a reranker label of the run (``gv``, ``aqe``, ...) or None / "global" for the global
    order; ``k``: hits returned per image; ``data_root``: where the run's dataset is now, if it moved
    (``load_run``). Raises ``DataError`` for an unreadable image, a run without
    config or index, or stores made with other weights; ``ConfigError`` for an unknown method.
    """
    # lazy (start-up): loads faiss; relook's entry points import this module
    from relook.search import search

    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    conf = load_run(run_dir, data_root)
    item = _reranker_item(conf, method)
    paths = [Path(p) for p in images]
    if not paths:
        return []
    dataset = pipeline.dataset_of(conf)
    arrays = [load_image(p, exif_orientation=dataset.exif_orientation) for p in paths]
    qids = [f"query:{i}:{p.name}" for i, p in enumerate(paths)]
    extractors = {e["label"]: e for e in conf["extractors"]}

    label = pipeline._global_label(conf)
    _, gpath = pipeline.store_paths(conf, label, dataset)
    index_path = pipeline.index_file(conf)
    _check_index(conf, label, gpath, index_path, dataset.gallery_ids)
    feats = {label: embed(extractors[label], gpath, list(zip(qids, arrays)))}
    gids = dataset.gallery_ids
    shortlist = search(
        pipeline.read_any_index(index_path),
        np.stack([f.get("global_desc") for f in feats[label]]),
        int(conf["shortlist"].get("k", CONFIG_DEFAULTS["shortlist"]["k"])),
        qids,
        gids,
        {"global": label},
    )
    ranking: Shortlist = shortlist
    if item is not None:
        # lazy (start-up): loads cv2, faiss, torch; relook's entry points import this module
        from relook.rerank import create_reranker

        # lazy (start-up): loads h5py; relook's entry points import this module
        from relook.store import FeatureStore

        opts = {key: v for key, v in item.items() if key not in ("name", "label", "features")}
        reranker = create_reranker(item["name"], **opts)
        _, fpath = pipeline._features_for(conf, reranker, item, dataset)
        flabel = fpath.parent.name
        if flabel not in feats:
            feats[flabel] = embed(extractors[flabel], fpath, list(zip(qids, arrays)))
        with FeatureStore(fpath, "r") as gs:
            ranking = reranker.rerank_shortlist(shortlist, FeaturesInMemory(feats[flabel]), gs, progress=False)

    calibration = ensure_calibration(conf["out"], dataset, methods(conf))
    name = item["label"] if item else GLOBAL
    threshold = threshold_of(calibration, name)
    rescored = shortlist.k if item is None else min(int(reranker.conf.get("top_k", shortlist.k)), shortlist.k)
    results = []
    for q in range(len(paths)):
        res = _result(paths[q], name, shortlist, ranking, q, k, dataset)
        res.threshold, res.calibration = threshold, describe(calibration, name)
        res.hits = [
            replace(h, confident=h.rank <= rescored and is_confident(h.score, threshold)) for h in res.hits
        ]  # past the rescored top-k the scores are shifted global ones, never a match by this method
        results.append(res)
    return results


def _result(path: Path, method: str, shortlist: Shortlist, ranking: Shortlist, q: int, k: int, dataset) -> QueryResult:
    """Row ``q`` of ``ranking`` cut at ``k``, each hit with its place and score in the global ``shortlist``."""
    files = {g[0]: (Path(g[1]), g[2]) for g in dataset.gallery}
    global_pos = {int(g): r for r, g in enumerate(shortlist.indices[q]) if g >= 0}
    hits = []
    for r, (g, s) in enumerate(zip(ranking.indices[q], ranking.scores[q])):
        if g < 0 or r >= k:
            break
        pos = global_pos.get(int(g))
        gid = ranking.gallery_ids[g]
        hits.append(
            Hit(
                rank=r + 1,
                gallery_id=gid,
                score=float(s),
                global_score=float("nan") if pos is None else float(shortlist.scores[q, pos]),
                global_rank=None if pos is None else pos + 1,
                path=files[gid][0],
                bbox=files[gid][1],
            )
        )
    return QueryResult(path, method, hits)


def verdict(result: QueryResult) -> str:
    """ "confident match" / "no confident match", the best score against the threshold, and how it was set."""
    if not result.hits:
        return "no confident match (empty gallery)"
    best = result.hits[0].score
    if result.hits[0].confident is None:
        return f"confidence unknown: no calibration for {result.method}"
    if result.threshold is None:
        return f"no confident match: for {result.method}, {result.calibration}"
    sign = ">=" if result.confident else "<"
    head = "confident match" if result.confident else "no confident match"
    return f"{head}: best {result.method} score {best:.4f} {sign} {result.calibration}"


def format_result(result: QueryResult) -> str:
    """The ranked list as a text table: rank, gallery id, method score, global score, rank change and
    whether the score passes the method's calibrated threshold; then the verdict line (``verdict``)."""
    width = max([10, *(len(h.gallery_id) for h in result.hits)])
    head = (
        f"{'rank':>4}  {'gallery id':<{width}}  {result.method + ' score':>12}  {'global score':>12}  change  confident"
    )
    lines = [f"query {result.image} ({result.method}):", head]
    for h in result.hits:
        change = "new" if h.rank_change is None else (f"{h.rank_change:+d}" if h.rank_change else "0")
        glob = "-" if h.global_rank is None else f"{h.global_score:.4f}"
        sure = "-" if h.confident is None else ("yes" if h.confident else "no")
        lines.append(f"{h.rank:>4}  {h.gallery_id:<{width}}  {h.score:>12.4f}  {glob:>12}  {change:>6}  {sure:>9}")
    if not result.hits:
        lines.append("  (empty gallery)")
    lines.append(verdict(result))
    return "\n".join(lines)
