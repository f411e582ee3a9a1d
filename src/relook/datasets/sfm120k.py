"""retrieval-SfM-120k (``sfm120k``): the training set of Radenovic et al. (cirtorch layout).

Official layout: ROOT/retrieval-SfM-120k.pkl, a dict with ``train`` and ``val``, each a dict with
``cids`` (image ids), ``cluster`` (3D-model id per image), ``qidxs`` and ``pidxs`` (query / positive
image indices, paired), optionally ``bbxs``; images at ROOT/ims/<cid[-2:]>/<cid[-4:-2]>/<cid[-6:-4]>/<cid>.

As a ``RetrievalDataset``: gallery = all images of the split, queries = the ``qidxs`` images, label =
cluster (positives share the 3D model). ``info["pairs"]`` = (P, 2) the official (query, positive) pairs.
The pickle is read only from ``root`` with a restricted unpickler and its structure is checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from relook.datasets.base import RetrievalDataset, register_dataset
from relook.datasets.tables import load_pickle
from relook.errors import ConfigError, DataError


def cid_path(root: Path, cid: str) -> Path:
    return root / "ims" / cid[-2:] / cid[-4:-2] / cid[-6:-4] / cid


def validate_sfm(db, path: Path, split: str) -> dict:
    if not isinstance(db, dict) or split not in db or not isinstance(db[split], dict):
        raise DataError(
            f"{path}: expected a dict with a {split!r} dict (keys found: "
            f"{sorted(db) if isinstance(db, dict) else type(db).__name__})"
        )
    d = db[split]
    missing = [k for k in ("cids", "cluster", "qidxs", "pidxs") if k not in d]
    if missing:
        raise DataError(f"{path}: {split!r} lacks {missing}")
    n = len(d["cids"])
    if not all(isinstance(c, str) for c in d["cids"]):
        raise DataError(f"{path}: {split}['cids'] must be image id strings")
    if len(d["cluster"]) != n:
        raise DataError(f"{path}: {split}['cluster'] has {len(d['cluster'])} entries for {n} images")
    if len(d["qidxs"]) != len(d["pidxs"]):
        raise DataError(f"{path}: {split}['qidxs'] and ['pidxs'] differ in length")
    for key in ("qidxs", "pidxs"):
        idx = np.asarray(d[key]).ravel()
        if idx.size and (not np.issubdtype(idx.dtype, np.integer) or idx.min() < 0 or idx.max() >= n):
            raise DataError(f"{path}: {split}[{key!r}] holds indices outside 0..{n - 1}")
    return d


@register_dataset("sfm120k")
def load_sfm120k(root: Path, split: str = "train", name: str = "retrieval-SfM-120k") -> RetrievalDataset:
    """SfM-120k ``split`` ("train" | "val") from ROOT/<name>.pkl and ROOT/ims/."""
    if split not in ("train", "val"):
        raise ConfigError(f"sfm120k: split must be 'train' or 'val', got {split!r}")
    root = Path(root)
    path = root / f"{name}.pkl"
    d = validate_sfm(load_pickle(path, "SfM-120k database"), path, split)
    cids, cluster = list(d["cids"]), np.asarray(d["cluster"], dtype=np.int64).ravel()
    qidxs, pidxs = np.asarray(d["qidxs"], np.int64).ravel(), np.asarray(d["pidxs"], np.int64).ravel()
    gallery = [(c, cid_path(root, c), None) for c in cids]
    queries = [gallery[q] for q in qidxs]
    return RetrievalDataset(
        "sfm120k",
        root,
        queries,
        gallery,
        "labels",
        query_labels=cluster[qidxs],
        gallery_labels=cluster,
        query_in_gallery=qidxs,
        info={"pairs": np.stack([qidxs, pidxs], 1), "split": split},
    )
