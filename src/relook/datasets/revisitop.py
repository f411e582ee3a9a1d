"""Revisited Oxford 5k / Paris 6k (``roxford5k``, ``rparis6k``) and the optional R1M distractors.

Official layout (as distributed by the revisitop project / cirtorch)::

    ROOT/gnd_roxford5k.pkl   dict: imlist (names), qimlist (query names), gnd (one dict per query:
                             bbx = [x1, y1, x2, y2], easy, hard, junk = imlist indices)
    ROOT/jpg/<name>.jpg

Queries are cropped to their ``bbx`` (the protocol's rule) and get ids ``q/<name>`` (a cropped query is
not the gallery image of the same name); the gallery is ``imlist``. The +1M distractors
(``distractors=``: a text file with one image path per line, relative to ``distractor_root``, default the
list's folder + ``/jpg``) are appended after the gallery, so the ground-truth indices stay valid.
The ground-truth pickle is read only from ``root`` (a path the user gave) with a restricted unpickler
(containers and numpy arrays only), and its structure is checked before use.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from relook.datasets.base import RetrievalDataset, register_dataset
from relook.datasets.tables import load_pickle, require
from relook.errors import DataError


def validate_gnd(cfg, path: Path) -> dict:
    """Check the ground-truth structure; raise ``DataError`` naming ``path`` and the offending entry."""
    if not isinstance(cfg, dict) or not {"imlist", "qimlist", "gnd"} <= set(cfg):
        keys = sorted(cfg) if isinstance(cfg, dict) else type(cfg).__name__
        raise DataError(f"{path}: expected a dict with imlist, qimlist, gnd; got {keys}")
    imlist, qimlist, gnd = cfg["imlist"], cfg["qimlist"], cfg["gnd"]
    for name, lst in (("imlist", imlist), ("qimlist", qimlist)):
        if not isinstance(lst, (list, tuple)) or not all(isinstance(s, str) for s in lst):
            raise DataError(f"{path}: {name} must be a list of image names")
    if not isinstance(gnd, (list, tuple)) or len(gnd) != len(qimlist):
        raise DataError(f"{path}: gnd must be a list with one entry per query ({len(qimlist)})")
    n = len(imlist)
    for q, entry in enumerate(gnd):
        if not isinstance(entry, dict):
            raise DataError(f"{path}: gnd[{q}] is not a dict")
        for key in ("easy", "hard", "junk"):
            if key not in entry:
                raise DataError(f"{path}: gnd[{q}] has no {key!r} list")
            idx = np.asarray(entry[key]).ravel()
            if idx.size and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= n):
                raise DataError(f"{path}: gnd[{q}][{key!r}] holds indices outside imlist (0..{n - 1})")
        bbx = np.asarray(entry.get("bbx", []), dtype=float).ravel()
        if bbx.shape != (4,) or not (bbx[2] > bbx[0] and bbx[3] > bbx[1]):
            raise DataError(f"{path}: gnd[{q}]['bbx'] must be [x1, y1, x2, y2] with x2 > x1, y2 > y1")
    return cfg


def read_distractors(list_path: Path, distractor_root: Path | None = None) -> list[tuple[str, Path, None]]:
    """R1M distractor items from a list file (one relative image path per line)."""
    require(list_path, "revisitop1m image list")
    base = Path(distractor_root) if distractor_root is not None else list_path.parent / "jpg"
    items = []
    for line in list_path.read_text(encoding="utf8", errors="replace").splitlines():
        rel = line.strip()
        if rel:
            items.append((f"r1m/{rel.rsplit('.', 1)[0]}", base / rel, None))
    return items


def load_revisitop(name: str, root: Path, distractors: str | Path | None = None,
                   distractor_root: str | Path | None = None) -> RetrievalDataset:
    root = Path(root)
    path = root / f"gnd_{name}.pkl"
    cfg = validate_gnd(load_pickle(path, f"{name} ground truth"), path)
    require(root / "jpg", f"{name} image folder")
    gnd = [{"easy": np.asarray(g["easy"], np.int64).ravel(), "hard": np.asarray(g["hard"], np.int64).ravel(),
            "junk": np.asarray(g["junk"], np.int64).ravel(), "bbx": tuple(float(v) for v in np.ravel(g["bbx"]))}
           for g in cfg["gnd"]]
    queries = [(f"q/{n}", root / "jpg" / f"{n}.jpg", g["bbx"]) for n, g in zip(cfg["qimlist"], gnd)]
    gallery = [(n, root / "jpg" / f"{n}.jpg", None) for n in cfg["imlist"]]
    info = {"num_gallery_without_distractors": len(gallery)}
    if distractors is not None:
        gallery += read_distractors(Path(distractors), None if distractor_root is None else Path(distractor_root))
    return RetrievalDataset(name, root, queries, gallery, "revisitop", gnd=gnd, info=info)


@register_dataset("roxford5k")
def load_roxford5k(root: Path, **conf) -> RetrievalDataset:
    """Revisited Oxford 5k from ROOT/gnd_roxford5k.pkl + ROOT/jpg/ (``distractors=`` for R1M)."""
    return load_revisitop("roxford5k", root, **conf)


@register_dataset("rparis6k")
def load_rparis6k(root: Path, **conf) -> RetrievalDataset:
    """Revisited Paris 6k from ROOT/gnd_rparis6k.pkl + ROOT/jpg/ (``distractors=`` for R1M)."""
    return load_revisitop("rparis6k", root, **conf)
