"""What every stage of a run shares: the run's dataset, its feature-store paths, fingerprints of the inputs a
file was made from, and the per-stage wall times in ``<out>/timings.json``."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any

from relook.datasets import load_dataset
from relook.errors import ConfigError, DataError
from relook.io import atomic_path
from relook.runpaths import data_root, remap, stored_form


@contextlib.contextmanager
def open_pair(qpath: Path, gpath: Path):
    """(query store, gallery store) opened read-only; one handle when both are the same file."""
    # lazy (start-up): loads h5py; relook's entry points import this module
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


def _meta_of(path: Path, kind) -> dict:
    """The metadata of an existing shortlist/ranking file, or {} when it is unreadable (then it is redone)."""
    try:
        return kind.load(path).meta
    except DataError:
        return {}


def _stamp_fingerprint(stamp: Path) -> str | None:
    try:
        return json.loads(stamp.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return None
