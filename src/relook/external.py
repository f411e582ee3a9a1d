"""Rerank a shortlist made by another system (a vector database, faiss, a search service).

``rerank_external(shortlist_file, methods, ...)`` (``relook rerank --shortlist FILE``) reads the file,
finds each image by its id, extracts into feature stores only what the chosen rerankers read for only the
images they look at, reranks, and writes the reranked list in the format it came in:

* **CSV** with a header ``query,gallery,score`` (more columns are ignored): one row per candidate;
  a query's candidates are ordered by ``score``, higher first (negate distances), ties in file order.
  Output: the same columns, each query's rows in the new order, ``score`` the method's score.
* **NPZ** (``numpy.savez``, read without pickle): ``query_ids`` (Q,) strings, ``scores`` (Q, K), and
  either ``gallery_ids`` (G,) + ``indices`` (Q, K) into it (-1 pads; relook's own ``shortlist.npz`` is
  one) or ``ids`` (Q, K) candidate ids ("" pads). Output: the same keys, rows reordered.

Ids are image paths relative to ``image_root`` (``--image-root``), or paths as given without a root; an
id without its file extension is looked up with the common ones (.jpg, .jpeg, .png, ...). Every missing
image is reported before any work starts. Stores: ``<out>/features/<label>/images.h5`` per extractor
(``out`` of the config), resumable image by image as ``relook extract`` (a store of other weights is
refused, never mixed). The extractors and rerankers come from the config (``pairwise.resolve_config``:
a run, a YAML file, or ``methods.DEFAULT_CONFIG``); each method is a reranker label or a registered name
(``methods.reranker_item``). Pairwise rerankers extract the queries and their first ``top_k``
candidates; those that need the gallery (``aqe``, ``asmk``) extract every candidate.

Reranking a relook shortlist given as a file gives relook's own ranking (the test checks it on real
photos): the same reranker, on the same features, through the same ``rerank_shortlist``.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from relook.errors import DataError
from relook.io import atomic_path
from relook.methods import build_extractor, build_reranker, extractor_item, reranker_item
from relook.pairwise import resolve_config
from relook.types import Ranking, Shortlist

#: suffixes tried for an id that is not a file as given
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class ExternalShortlist:
    """A shortlist read from a file, and how it was written (so the output takes the same form)."""

    shortlist: Shortlist
    kind: str  # "csv" or "npz"
    npz_layout: str = "indices"  # npz only: "indices" (gallery_ids + indices) or "ids" ((Q, K) ids)


def read_external(path: str | Path) -> ExternalShortlist:
    """The shortlist in ``path`` (CSV or NPZ, module docstring); ``DataError`` naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: shortlist file not found")
    if path.suffix.lower() == ".npz":
        return _read_npz(path)
    if path.suffix.lower() in (".csv", ".txt"):
        return ExternalShortlist(_read_csv(path), "csv")
    raise DataError(f"{path}: a shortlist must be .csv (query,gallery,score) or .npz (query_ids, scores, ...)")


def _read_csv(path: Path) -> Shortlist:
    rows: dict[str, list[tuple[float, int, str]]] = {}
    try:
        with open(path, newline="", encoding="utf8") as f:
            reader = csv.DictReader(f)
            need = {"query", "gallery", "score"}
            if reader.fieldnames is None or not need <= {c.strip() for c in reader.fieldnames}:
                raise DataError(f"{path}: needs a header with columns query,gallery,score; got {reader.fieldnames}")
            reader.fieldnames = [c.strip() for c in reader.fieldnames]
            for n, row in enumerate(reader):
                q, g = (row["query"] or "").strip(), (row["gallery"] or "").strip()
                try:
                    s = float(row["score"])
                except (TypeError, ValueError):
                    raise DataError(f"{path}, line {n + 2}: score {row['score']!r} is not a number") from None
                if not q or not g or not np.isfinite(s):
                    raise DataError(f"{path}, line {n + 2}: needs a query id, a gallery id and a finite score")
                rows.setdefault(q, []).append((-s, n, g))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a UTF-8 text file ({e.reason} at byte {e.start})") from None
    if not rows:
        raise DataError(f"{path}: no rows under the header query,gallery,score")
    gallery = list(dict.fromkeys(g for cands in rows.values() for _, _, g in cands))
    gpos = {g: i for i, g in enumerate(gallery)}
    k = max(len(c) for c in rows.values())
    idx = np.full((len(rows), k), -1, np.int64)
    sc = np.full((len(rows), k), -np.inf, np.float32)
    for r, cands in enumerate(rows.values()):
        cands = sorted(cands)  # score descending, then file order
        dup = len({g for _, _, g in cands}) != len(cands)
        if dup:
            raise DataError(f"{path}: query {list(rows)[r]!r} lists a gallery id twice")
        idx[r, : len(cands)] = [gpos[g] for _, _, g in cands]
        sc[r, : len(cands)] = [-s for s, _, _ in cands]
    return Shortlist(list(rows), gallery, idx, sc, {"source": str(path)})


def _read_npz(path: Path) -> ExternalShortlist:

    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            if not {"query_ids", "scores"} <= keys or not ({"gallery_ids", "indices"} <= keys or "ids" in keys):
                raise DataError(
                    f"{path}: needs query_ids and scores, and gallery_ids + indices or ids; has {sorted(keys)}"
                )
            qids, scores = z["query_ids"].astype(str).tolist(), z["scores"].astype(np.float32)
            if "ids" in keys and not {"gallery_ids", "indices"} <= keys:
                ids = z["ids"].astype(str)
                if ids.shape != scores.shape:
                    raise DataError(f"{path}: ids {ids.shape} and scores {scores.shape} differ in shape")
                gallery = list(dict.fromkeys(i for i in ids.ravel().tolist() if i))
                gpos = {g: n for n, g in enumerate(gallery)}
                idx = np.array([[gpos[i] if i else -1 for i in row] for row in ids.tolist()], np.int64)
                layout = "ids"
            else:
                gallery, idx, layout = z["gallery_ids"].astype(str).tolist(), z["indices"].astype(np.int64), "indices"
            meta = {}
            if "meta_keys" in keys and "meta_values" in keys:
                meta = dict(zip(z["meta_keys"].astype(str).tolist(), z["meta_values"].astype(str).tolist()))
    except (ValueError, OSError, KeyError, zipfile.BadZipFile) as e:
        reason = " ".join(str(e).split())[:200] or type(e).__name__
        raise DataError(f"{path}: not a readable shortlist .npz ({reason})") from None
    scores = np.where(idx >= 0, scores, -np.inf).astype(np.float32)
    order = np.argsort(-scores.astype(np.float64), axis=1, kind="stable")  # higher first, ties: file order
    idx, scores = np.take_along_axis(idx, order, 1), np.take_along_axis(scores, order, 1)
    try:
        sl = Shortlist(qids, gallery, idx, scores, {**meta, "source": str(path)})
    except Exception as e:  # ShapeError: rows, index range, NaN
        raise DataError(f"{path}: {e}") from None
    return ExternalShortlist(sl, "npz", layout)


def write_external(ranking: Ranking, like: ExternalShortlist, path: str | Path) -> Path:
    """``ranking`` written in the form ``like`` was read in (CSV rows or the same NPZ keys), atomically."""

    path = Path(path)
    with atomic_path(path) as tmp:
        if like.kind == "csv":
            with open(tmp, "w", newline="", encoding="utf8") as f:
                w = csv.writer(f)
                w.writerow(["query", "gallery", "score"])
                for q, qid in enumerate(ranking.query_ids):
                    for g, s in zip(ranking.indices[q], ranking.scores[q]):
                        if g >= 0:
                            w.writerow([qid, ranking.gallery_ids[g], repr(float(s))])
        else:
            arrays = {
                "query_ids": np.array(ranking.query_ids, dtype=str),
                "scores": ranking.scores,
                "meta_keys": np.array(list(ranking.meta), dtype=str),
                "meta_values": np.array(list(ranking.meta.values()), dtype=str),
            }
            if like.npz_layout == "ids":
                gal = np.array([*ranking.gallery_ids, ""], dtype=str)
                arrays["ids"] = gal[ranking.indices]  # -1 -> the "" pad
            else:
                arrays.update(gallery_ids=np.array(ranking.gallery_ids, dtype=str), indices=ranking.indices)
            with open(tmp, "wb") as f:
                np.savez(f, kind="Ranking", **arrays)
    return path


def image_paths(ids: Sequence[str], image_root: str | Path | None) -> dict[str, Path]:
    """id -> image file (module docstring); one ``DataError`` listing how many are missing and the first."""
    root = None if image_root is None else Path(image_root)
    if root is not None and not root.is_dir():
        raise DataError(f"--image-root {root}: not a folder")
    out, missing = {}, []
    for i in ids:
        base = Path(i) if root is None else root / i
        found = (
            base if base.is_file() else next((p for s in IMAGE_SUFFIXES if (p := Path(f"{base}{s}")).is_file()), None)
        )
        if found is None:
            missing.append(str(base))
        else:
            out[i] = found
    if missing:
        where = f"under {root}" if root is not None else "as paths (give --image-root if they are ids under a folder)"
        raise DataError(f"{len(missing)} of {len(ids)} images not found {where}, e.g. {missing[0]}")
    return out


def rerank_external(
    shortlist_file: str | Path,
    methods: Sequence[str] = ("gv",),
    output: str | Path | None = None,
    image_root: str | Path | None = None,
    run: str | Path | None = None,
    config=None,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> dict[str, Path]:
    """Rerank the shortlist in ``shortlist_file`` with each of ``methods`` (module docstring) -> one file per
    method: ``output`` for a single method (default ``<out>/reranked/<stem>.<method><suffix>``), else
    ``<output stem>.<method><suffix>``. Returns {method: path}."""
    # lazy (start-up): loads cv2, torch; relook's entry points import this module
    from relook.features.base import extract_to_store

    # lazy (start-up): loads h5py; relook's entry points import this module
    from relook.store import FeatureStore

    src = read_external(shortlist_file)
    sl = src.shortlist
    conf = resolve_config(run, config, overrides)
    src_path = Path(shortlist_file)
    if not methods:
        raise DataError("no method given; name one or more rerankers (e.g. --methods gv)")
    jobs = []
    built: dict = {}
    for method in methods:
        item = reranker_item(conf, method)
        reranker = build_reranker(item)
        jobs.append((item, reranker, extractor_item(conf, reranker, item, built)))
    need: dict[str, set[str]] = {}  # extractor label -> ids its rerankers look at
    for _item, reranker, eitem in jobs:
        top_k = None if not reranker.pairwise else int(reranker.conf.get("top_k", sl.k))
        ids = set(sl.query_ids)
        cols = sl.indices if top_k is None else sl.indices[:, :top_k]
        ids.update(sl.gallery_ids[g] for g in np.unique(cols[cols >= 0]))
        need.setdefault(eitem["label"], set()).update(ids)
    files = image_paths(sorted(set().union(*need.values())), image_root)
    stores = {}
    for label, ids in need.items():
        eitem = next(e for e in conf["extractors"] if e["label"] == label)
        extractor = built.get(label) or build_extractor(eitem)
        extractor.set_role("database")
        stores[label] = Path(conf["out"]) / "features" / label / "images.h5"
        items = [(i, files[i], None) for i in sorted(ids)]
        extract_to_store(extractor, items, stores[label], progress=progress)
    out = {}
    for item, reranker, eitem in jobs:
        with FeatureStore(stores[eitem["label"]]) as fs:
            ranking = reranker.rerank_shortlist(sl, fs, fs, progress=progress)
        ranking.meta.update({"reranker": item["label"], "features": str(stores[eitem["label"]])})
        if output is None:
            path = Path(conf["out"]) / "reranked" / f"{src_path.stem}.{item['label']}{src_path.suffix}"
        elif len(jobs) == 1:
            path = Path(output)
        else:
            path = Path(output).with_name(f"{Path(output).stem}.{item['label']}{Path(output).suffix}")
        out[item["label"]] = write_external(ranking, src, path)
    return out
