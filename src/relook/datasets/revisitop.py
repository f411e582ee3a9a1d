"""Revisited Oxford 5k / Paris 6k (``roxford5k``, ``rparis6k``), the optional R1M distractors, and the
original Oxford 5k / Paris 6k (``oxford5k``, ``paris6k``) with their classic protocol.

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

Original protocol (the "Oxf5k" and "Par6k" columns of every DToP table): ROOT/gnd_oxford5k.pkl
(gnd_paris6k.pkl), the same layout with per-query ``ok`` and ``junk`` lists (cirtorch's files: ``ok`` =
the original annotation's good + ok images, ``junk`` its junk) and ROOT/jpg/. Its ground truth is the
ORIGINAL annotation (Philbin et al.), not the revisited one: the revisited easy + hard is a re-labelling
(images were re-judged, some moved to junk, some original junk became positives, and the revisited image
lists drop images), so the classic lists cannot be derived from ``gnd_roxford5k.pkl``, and a classic
dataset is read only from the classic files. Protocol ``"classic"``: positives ``ok``, ignored ``junk``,
one mAP (``relook.eval.protocols.classic_ground_truth``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from relook.datasets.base import RetrievalDataset, register_dataset
from relook.datasets.tables import load_pickle, require
from relook.errors import DataError


def validate_gnd(cfg, path: Path, keys: tuple[str, ...] = ("easy", "hard", "junk")) -> dict:
    """Check the ground-truth structure (per-query index lists ``keys``); raise ``DataError`` naming
    ``path`` and the offending entry."""
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
        for key in keys:
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


def load_revisitop(
    name: str, root: Path, distractors: str | Path | None = None, distractor_root: str | Path | None = None
) -> RetrievalDataset:
    root = Path(root)
    path = root / f"gnd_{name}.pkl"
    cfg = validate_gnd(load_pickle(path, f"{name} ground truth"), path)
    require(root / "jpg", f"{name} image folder")
    gnd = [
        {
            "easy": np.asarray(g["easy"], np.int64).ravel(),
            "hard": np.asarray(g["hard"], np.int64).ravel(),
            "junk": np.asarray(g["junk"], np.int64).ravel(),
            "bbx": tuple(float(v) for v in np.ravel(g["bbx"])),
        }
        for g in cfg["gnd"]
    ]
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


def load_classic(name: str, root: Path) -> RetrievalDataset:
    """Original Oxford 5k / Paris 6k from ROOT/gnd_<name>.pkl (``ok``, ``junk``, ``bbx``) + ROOT/jpg/."""
    root = Path(root)
    path = root / f"gnd_{name}.pkl"
    cfg = validate_gnd(load_pickle(path, f"{name} ground truth"), path, keys=("ok", "junk"))
    require(root / "jpg", f"{name} image folder")
    gnd = [
        {
            "ok": np.asarray(g["ok"], np.int64).ravel(),
            "junk": np.asarray(g["junk"], np.int64).ravel(),
            "bbx": tuple(float(v) for v in np.ravel(g["bbx"])),
        }
        for g in cfg["gnd"]
    ]
    queries = [(f"q/{n}", root / "jpg" / f"{n}.jpg", g["bbx"]) for n, g in zip(cfg["qimlist"], gnd)]
    gallery = [(n, root / "jpg" / f"{n}.jpg", None) for n in cfg["imlist"]]
    return RetrievalDataset(
        name,
        root,
        queries,
        gallery,
        "classic",
        gnd=gnd,
        info={"note": "original protocol (ok/junk), not the revisited one"},
    )


@register_dataset("oxford5k")
def load_oxford5k(root: Path) -> RetrievalDataset:
    """Original Oxford 5k, classic protocol, from ROOT/gnd_oxford5k.pkl + ROOT/jpg/."""
    return load_classic("oxford5k", root)


@register_dataset("paris6k")
def load_paris6k(root: Path) -> RetrievalDataset:
    """Original Paris 6k, classic protocol, from ROOT/gnd_paris6k.pkl + ROOT/jpg/."""
    return load_classic("paris6k", root)
