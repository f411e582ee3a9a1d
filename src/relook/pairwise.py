"""Score two images: ``score_pairs(pairs, method=..., run=... | config=...)`` (``relook pair``).

No dataset, index or store: both images are embedded in memory by the extractors that the method reads
and by the global extractor, built from the same config items as ``relook query`` builds them (a
finished run's ``config.yaml`` with ``run=``, any experiment YAML with ``config=``, else
``methods.DEFAULT_CONFIG``, which mirrors ``configs/folder.yaml``). With ``run=``, the same check as
``query``: when the run's store of an extractor exists and was made with other weights than those the
config loads now, a one-line ``DataError`` names the store and the keys (``query.differing_provenance``),
and images load upright or not as the run's dataset loads them (``query`` likewise); otherwise upright.

Each pair (A, B) is one row of a one-candidate shortlist (query A, candidate B, global score the cosine
of the two global descriptors), reranked through the reranker's own ``rerank_shortlist``, so the score is
exactly what the method gives B as a candidate of query A in a run (for ``gv``: the inlier count plus a
tie-break below 0.5 from the global order, here 0.25; ``inliers`` holds the count). Pairs are scored
independently of each other. Methods whose score needs a gallery (``aqe``, ``asmk``) are refused.

For matching methods (those with a ``verify(query, candidate)`` method, e.g. ``gv``) each ``PairScore``
also holds the putative matches and which are inliers, which ``pair_figure`` draws.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from relook.errors import ConfigError, DataError, RelookError
from relook.experiment import DEFAULTS, load_config, validate
from relook.images import load_image
from relook.methods import (
    build_extractor,
    build_reranker,
    default_config,
    extractor_item,
    global_item,
    methods,
    reranker_item,
)
from relook.pipeline import dataset_of
from relook.query import FeaturesInMemory, differing_provenance
from relook.types import ImageFeatures, Shortlist


@dataclass
class PairScore:
    """The method's verdict on one pair of images."""

    image_a: Path  # first image (the query side)
    image_b: Path  # second image (the candidate side)
    method: str  # the reranker's label
    score: float  # the method's score of B as a candidate of A
    global_cosine: float  # cosine of the two global descriptors
    inliers: int | None = None  # matching methods: the verified matches
    kp_a: np.ndarray | None = None  # matching methods: (P, 2) putative matches' (x, y) in A
    kp_b: np.ndarray | None = None  # (P, 2) their partners in B
    inlier_mask: np.ndarray | None = None  # (P,) bool
    provenance: dict[str, str] = field(default_factory=dict)  # extractor label -> name and weights


def resolve_config(
    run: str | Path | None = None, config: str | Path | Sequence[str | Path] | dict | None = None, overrides=()
) -> dict:
    """The experiment config a pair or an external shortlist is scored with: ``run/config.yaml``, the
    YAML file(s) ``config`` (or an already composed dict), or ``methods.default_config()``; then the
    ``key=value`` ``overrides``. Giving both ``run`` and ``config`` is a ``ConfigError``."""

    if run is not None and config is not None:
        raise ConfigError("give a run (--run) or a config (-c), not both")
    if run is not None:
        path = Path(run) / "config.yaml"
        if not path.is_file():
            raise DataError(f"{run}: no config.yaml, so not a relook run; make one with `relook run -c CONFIG`")
        conf = load_config([path], overrides)
        conf["out"] = str(run)
        return conf
    if isinstance(config, dict):
        return _override(validate({**copy.deepcopy(DEFAULTS), **copy.deepcopy(config)}), overrides)
    if config is not None:
        files = [config] if isinstance(config, (str, Path)) else list(config)
        return load_config(files, overrides)
    return _override(default_config(), overrides)


def _override(conf: dict, overrides) -> dict:
    """``overrides`` applied to an already composed ``conf`` (through a temporary YAML file)."""
    if not overrides:
        return conf

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "config.yaml"
        path.write_text(yaml.safe_dump(conf))
        return load_config([path], overrides)


def _check_against_run(conf: dict, item: dict, extractor) -> None:
    """``query``'s weights check: the run's store of ``item`` must have been made by ``extractor``."""
    # lazy (start-up): loads h5py; relook's entry points import this module
    from relook.store import FeatureStore

    store = Path(conf["out"]) / "features" / item["label"] / "gallery.h5"
    if not store.is_file():
        return
    with FeatureStore(store, "r") as fs:
        stored = fs.meta if len(fs) else None
    differ = differing_provenance(stored, extractor) if stored is not None else []
    if differ:
        raise DataError(
            f"{store}: made by another {item['label']!r} extractor than the run's config builds now, "
            f"differing in {'; '.join(differ[:4])}; score with the weights the run used"
        )


def _exif_orientation(conf: dict) -> bool:
    """Whether a run's dataset loads images upright (EXIF applied), as ``query`` reads new images; True (a
    user's photos) when the run's dataset cannot be opened here."""

    try:
        return bool(dataset_of(conf).exif_orientation)
    except RelookError:
        return True


def score_pairs(
    pairs: Sequence[tuple[str | Path, str | Path]],
    method: str = "gv",
    run: str | Path | None = None,
    config: str | Path | Sequence[str | Path] | dict | None = None,
    overrides: Sequence[str] = (),
    options: dict | None = None,
    progress: bool = False,
) -> list[PairScore]:
    """Score each (image A, image B) of ``pairs`` with ``method`` (module docstring).

    ``method``: a reranker label of the config or a registered reranker name; ``options``: reranker
    options that override the config's (e.g. ``{"checkpoint": "rrt.pt"}``). Raises ``DataError`` for an
    unreadable image or a run whose stores were made with other weights, ``ConfigError`` for an unknown
    method or one that needs a gallery.
    """

    conf = resolve_config(run, config, overrides)
    item = reranker_item(conf, method, options)
    reranker = build_reranker(item)
    if not reranker.pairwise:
        raise ConfigError(
            f"method {method!r} ({item['name']}) scores against a whole gallery, not a pair; pairwise "
            f"methods: {', '.join(methods(conf))} (use `relook rerank --shortlist` for {item['name']})"
        )
    pairs = [(Path(a), Path(b)) for a, b in pairs]
    if not pairs:
        return []
    paths = list(dict.fromkeys(p for pair in pairs for p in pair))
    ids = {p: f"{n}:{p.name}" for n, p in enumerate(paths)}
    images = [(ids[p], load_image(p, exif_orientation=_exif_orientation(conf) if run else True)) for p in paths]
    built: dict = {}
    eitem = extractor_item(conf, reranker, item, built)
    gitem = global_item(conf)
    feats: dict[str, list[ImageFeatures]] = {}
    provenance = {}
    for e in (gitem, eitem):
        if e["label"] in feats:
            continue
        extractor = built.get(e["label"]) or build_extractor(e)
        if run is not None:
            _check_against_run(conf, e, extractor)
        feats[e["label"]] = list(extractor.extract(images))
        prov = extractor.provenance
        provenance[e["label"]] = f"{prov['extractor']} ({prov.get('weights', 'no learned weights')})"
    glob = {f.image_id: f.get("global_desc").astype(np.float64) for f in feats[gitem["label"]]}

    def cosine(a: str, b: str) -> float:
        x, y = glob[a], glob[b]
        return float(x @ y / max(np.linalg.norm(x) * np.linalg.norm(y), 1e-12))

    gallery = list(ids.values())
    gpos = {g: i for i, g in enumerate(gallery)}
    cos = [cosine(ids[a], ids[b]) for a, b in pairs]
    shortlist = Shortlist(
        [ids[a] for a, _ in pairs],
        gallery,
        np.array([[gpos[ids[b]]] for _, b in pairs], np.int64),
        np.array([[c] for c in cos], np.float32),
    )
    store = FeaturesInMemory(feats[eitem["label"]], "pair images")
    ranking = reranker.rerank_shortlist(shortlist, store, store, progress=progress)
    out = []
    for n, (a, b) in enumerate(pairs):
        res = PairScore(a, b, item["label"], float(ranking.scores[n, 0]), cos[n], provenance=dict(provenance))
        if hasattr(reranker, "verify"):
            fields = sorted(reranker.requires)
            res.kp_a, res.kp_b, res.inlier_mask = reranker.verify(
                store.read(ids[a], fields), store.read(ids[b], fields)
            )
            res.inliers = int(res.inlier_mask.sum())
        out.append(res)
    return out


def format_pair(res: PairScore) -> str:
    """One line per pair: the method's score, the global cosine, the inliers, and what made the features."""
    inl = "" if res.inliers is None else f"  inliers {res.inliers} of {len(res.inlier_mask)} matches"
    feats = "; ".join(f"{k}: {v}" for k, v in res.provenance.items())
    return (
        f"{res.image_a} vs {res.image_b}: {res.method} score {res.score:.4f}  global cosine "
        f"{res.global_cosine:.4f}{inl}  [features {feats}]"
    )


def pair_figure(res: PairScore, out_path: str | Path, max_lines: int | None = 200) -> Path:
    """The two images side by side with the inlier matches drawn (for methods without matches, no lines),
    titled with the method, its score and the global cosine."""
    # lazy: tests monkeypatch this name on its module (a top import would not see it)
    from relook.viz.correspondences import draw_matches

    a, b = load_image(res.image_a), load_image(res.image_b)
    if res.inlier_mask is not None:
        kp_a, kp_b = res.kp_a[res.inlier_mask], res.kp_b[res.inlier_mask]
    else:
        kp_a = kp_b = np.zeros((0, 2), np.float32)
    title = f"{res.method}: score {res.score:.3f}, global cosine {res.global_cosine:.3f}"
    if res.inliers is not None:
        title += f", {res.inliers} inliers of {len(res.inlier_mask)} matches"
    return draw_matches(a, b, kp_a, kp_b, out_path, title=title, max_lines=max_lines)
