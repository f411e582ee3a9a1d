"""Mapillary Street-Level Sequences (``msls``), image-to-image, cities with GPS (train_val).

Official layout: ROOT/train_val/<city>/{query,database}/ with ``images/<key>.jpg``, ``postprocessed.csv``
(index, ``key``, ``easting``, ``northing``, ...) and ``raw.csv`` (index, ``key``, ``lon``, ``lat``, ``ca``,
``captured_at``, ``pano``). As in the official loader, panoramas are dropped and a query's positives are
the database images of its city within ``pos_dist`` = 25 m (UTM); queries without any positive are
dropped. Ground truth uses the revisited-protocol structure with ``easy`` = positives and empty
``hard`` / ``junk`` (so every setting gives the same positives).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from relook.datasets.base import RetrievalDataset, register_dataset
from relook.datasets.tables import read_csv, require
from relook.errors import DataError

VAL_CITIES = ("cph", "sf")  # the official validation cities


def _side(folder: Path, exclude_panos: bool) -> tuple[list[str], np.ndarray]:
    post = folder / "postprocessed.csv"
    rows = read_csv(post, ["key", "easting", "northing"], "MSLS postprocessed metadata")
    raw_path = folder / "raw.csv"
    pano = {}
    if exclude_panos:
        pano = {
            r["key"]: r["pano"].strip().lower() == "true"
            for r in read_csv(raw_path, ["key", "pano"], "MSLS raw metadata")
        }
    keys, utm = [], []
    for r in rows:
        if pano.get(r["key"], False):
            continue
        try:
            utm.append((float(r["easting"]), float(r["northing"])))
        except ValueError:
            raise DataError(f"{post}: key {r['key']} has non-numeric easting/northing") from None
        keys.append(r["key"])
    return keys, np.asarray(utm, dtype=np.float64).reshape(-1, 2)


@register_dataset("msls")
def load_msls(
    root: Path,
    cities: str | list[str] | None = VAL_CITIES,
    subdir: str = "train_val",
    pos_dist: float = 25.0,
    exclude_panos: bool = True,
) -> RetrievalDataset:
    """MSLS queries vs database of ``cities`` (default the validation cities; ``None`` = every city found)."""
    # lazy (start-up): loads scipy; relook's entry points import this module
    from scipy.spatial import cKDTree

    root = Path(root)
    base = require(root / subdir, f"MSLS {subdir} folder")
    if cities is None:
        cities = sorted(p.name for p in base.iterdir() if (p / "query").is_dir())
    elif isinstance(cities, str):
        cities = cities.split(",")
    queries, gallery, gnd = [], [], []
    for city in cities:
        city_dir = require(base / city, f"MSLS city {city}")
        qkeys, qutm = _side(city_dir / "query", exclude_panos)
        dkeys, dutm = _side(city_dir / "database", exclude_panos)
        offset = len(gallery)
        gallery += [(f"{city}/database/{k}", city_dir / "database" / "images" / f"{k}.jpg", None) for k in dkeys]
        near = cKDTree(dutm).query_ball_point(qutm, pos_dist) if len(dkeys) and len(qkeys) else [[]] * len(qkeys)
        for k, pos in zip(qkeys, near):
            if len(pos):
                queries.append((f"{city}/query/{k}", city_dir / "query" / "images" / f"{k}.jpg", None))
                gnd.append(
                    {
                        "easy": np.sort(np.asarray(pos, np.int64)) + offset,
                        "hard": np.zeros(0, np.int64),
                        "junk": np.zeros(0, np.int64),
                    }
                )
    return RetrievalDataset(
        "msls", root, queries, gallery, "revisitop", gnd=gnd, info={"cities": list(cities), "pos_dist": pos_dist}
    )
