"""FeatureStore: one HDF5 file, one group per image, written resumably and durably.

Layout::

    /                      attrs: relook_store=1, meta (JSON: extractor, weights, data)
    /images/<quoted id>/   attrs: image_id (raw id), digest (SHA-1 of the arrays), complete (set last)
        global_desc, local_desc, keypoints, ...   one dataset per ImageFeatures field

Durability: an image group is marked ``complete`` only after all its datasets are written, and the
file is flushed after every image, so a writer killed at any point (even ``kill -9``) leaves every
earlier image readable; the half-written group has no ``complete`` mark, is invisible to readers, and
is deleted and redone when a writer reopens the store. Before each image the free disk space is checked
(``relook.io.check_free_space``): a nearly full disk stops the writer with one line and exit code 1,
every image written so far intact, before HDF5 meets the full disk. Image ids may contain ``/`` (they are
percent-quoted as HDF5 names).

Content fingerprint: ``digest()`` hashes the ids, the metadata and each image's ``digest`` attribute
(written with the image; computed from the arrays for stores written before it existed), so the stages
downstream (index, search, rerank) see when a store's content changed, not only its size.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from urllib.parse import quote

import h5py
import numpy as np

from relook.errors import DataError, RelookError, ShapeError
from relook.io import atomic_path, check_free_space
from relook.types import ImageFeatures

_GROUP = "images"


def _key(image_id: str) -> str:
    return quote(image_id, safe="")


#: what h5py raises on a damaged file (a bad B-tree, a truncated dataset, an attribute of the wrong type)
_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError, UnicodeDecodeError)


def _guarded(method):
    """Turn an h5py failure inside ``method`` into one ``DataError`` naming the store's file."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except RelookError:
            raise
        except _H5_ERRORS as e:
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            raise DataError(f"{self.path}: damaged feature store ({type(e).__name__}: {reason})") from None

    return wrapper


def _array_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-1 of named arrays: names, dtypes, shapes and bytes (the content of one image's group)."""
    h = hashlib.sha1()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


class FeatureStore:
    """Open a store: ``mode`` is ``"r"`` (read), ``"a"`` (create or resume) or ``"w"`` (truncate).

    >>> with FeatureStore("feats.h5", "a", meta={"extractor": "sift"}) as store:
    ...     for feats in extractor.extract(images):
    ...         if feats.image_id not in store:
    ...             store.write(feats)
    """

    def __init__(self, path: str | Path, mode: str = "r", meta: dict | None = None) -> None:
        if mode not in ("r", "a", "w"):
            raise ValueError(f"mode must be 'r', 'a' or 'w', got {mode!r}")
        self.path = Path(path)
        self.mode = mode
        if mode == "r" and not self.path.exists():
            raise DataError(f"{self.path}: feature store not found; run `relook extract` first")
        if mode != "r":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._h5 = h5py.File(self.path, mode, libver="earliest")
        except OSError as e:
            raise DataError(f"{self.path}: cannot open as an HDF5 feature store ({e})") from None
        try:
            self._open(mode, meta)
        except BaseException:
            self._h5.close()
            raise

    @_guarded
    def _open(self, mode: str, meta: dict | None) -> None:
        if mode == "r":
            if self._h5.attrs.get("relook_store") != 1:
                self._h5.close()
                raise DataError(f"{self.path}: not a relook feature store (missing relook_store attribute)")
        else:
            if self._h5.attrs.get("relook_store") != 1:  # write only what changes: reopening is free
                self._h5.attrs["relook_store"] = 1
            self._h5.require_group(_GROUP)
            if meta:
                merged = {**self.meta, **{k: str(v) for k, v in meta.items()}}
                if merged != self.meta:
                    self.meta = merged
            self._drop_incomplete()
            self._h5.flush()
        self._complete = {
            self._h5[_GROUP][k].attrs["image_id"]: k
            for k in self._h5.get(_GROUP, {})
            if self._h5[_GROUP][k].attrs.get("complete", 0) == 1
        }

    # -- metadata ---------------------------------------------------------------------------------
    @property
    @_guarded
    def meta(self) -> dict[str, str]:
        """Provenance of the features: extractor, weights, data (JSON in the root attributes)."""
        meta = json.loads(self._h5.attrs.get("meta", "{}"))
        if not isinstance(meta, dict):
            raise DataError(f"{self.path}: metadata is not a JSON object")
        return meta

    @meta.setter
    def meta(self, value: dict) -> None:
        self._check_writable()
        self._h5.attrs["meta"] = json.dumps(value, sort_keys=True)

    # -- membership -------------------------------------------------------------------------------
    def __contains__(self, image_id: object) -> bool:
        return image_id in self._complete

    def __len__(self) -> int:
        return len(self._complete)

    def __iter__(self) -> Iterator[str]:
        return iter(self.ids())

    def ids(self) -> list[str]:
        """Ids of the complete images, in write order of their names (sorted)."""
        return sorted(self._complete)

    def missing(self, image_ids: Iterable[str]) -> list[str]:
        """The ids among ``image_ids`` not yet complete here (what a resumed writer must do)."""
        return [i for i in image_ids if i not in self._complete]

    @_guarded
    def digest(self, image_ids: Iterable[str] | None = None) -> str:
        """Fingerprint of the content of ``image_ids`` (default: every complete image) and the metadata.

        Equal digests mean equal ids, arrays and provenance; any rewritten image changes it.
        """
        ids = self.ids() if image_ids is None else list(image_ids)
        h = hashlib.sha1(json.dumps(self.meta, sort_keys=True).encode())
        for image_id in ids:
            group = self._group(image_id)
            d = group.attrs.get("digest")
            if not isinstance(d, str):  # a store written before per-image digests existed
                d = _array_digest({n: group[n][()] for n in group})
            h.update(f"{len(image_id)}:{image_id}={d};".encode())
        return h.hexdigest()[:16]

    @_guarded
    def fields(self, image_id: str | None = None) -> list[str]:
        """Fields of one image, or the fields every complete image has."""
        if image_id is not None:
            return sorted(self._group(image_id).keys())
        common: set[str] | None = None
        for key in self._complete.values():
            names = set(self._h5[_GROUP][key].keys())
            common = names if common is None else common & names
        return sorted(common or ())

    # -- read / write -----------------------------------------------------------------------------
    def _group(self, image_id: str) -> h5py.Group:
        key = self._complete.get(image_id)
        if key is None:
            raise DataError(f"image {image_id!r} not in {self.path} ({len(self)} images); run extract for it")
        return self._h5[_GROUP][key]

    @_guarded
    def read(self, image_id: str, fields: Sequence[str] | None = None) -> ImageFeatures:
        """Read one image's features (all fields, or only ``fields``), validated."""
        group = self._group(image_id)
        names = list(group.keys()) if fields is None else list(fields)
        missing = [n for n in names if n not in group]
        if missing:
            raise DataError(
                f"{self.path}: image {image_id!r} lacks field(s) {missing} (has {sorted(group)}); "
                "run an extractor that writes them"
            )
        arrays = {n: group[n][()] for n in names}
        try:
            return ImageFeatures.from_arrays(image_id, arrays).validate()
        except ShapeError as e:
            raise DataError(f"{self.path}: {e}") from None

    def read_many(self, image_ids: Sequence[str], fields: Sequence[str] | None = None) -> list[ImageFeatures]:
        return [self.read(i, fields) for i in image_ids]

    def stack(self, field: str, image_ids: Sequence[str] | None = None) -> np.ndarray:
        """One fixed-shape field of many images stacked: e.g. ``stack("global_desc") -> (n, D)``."""
        ids = self.ids() if image_ids is None else list(image_ids)
        if not ids:
            return np.zeros((0,), np.float32)
        rows = [self.read(i, [field]).get(field) for i in ids]
        shapes = {r.shape for r in rows}
        if len(shapes) != 1:
            raise DataError(f"{self.path}: field {field!r} has differing shapes {sorted(shapes)[:3]}...")
        return np.stack(rows)

    def write(self, feats: ImageFeatures, overwrite: bool = False) -> bool:
        """Write one image durably; returns False (and writes nothing) if it is already complete."""
        self._check_writable()
        try:
            feats.validate()
        except ShapeError as e:
            raise ShapeError(f"{self.path}: {e}") from None
        if feats.image_id in self._complete and not overwrite:
            return False
        arrays = feats.arrays()
        check_free_space(self.path, sum(a.nbytes for a in arrays.values()), f"image {feats.image_id!r}")
        images = self._h5[_GROUP]
        key = _key(feats.image_id)
        if key in images:
            del images[key]
            self._complete.pop(feats.image_id, None)
        group = images.create_group(key)
        group.attrs["image_id"] = feats.image_id
        for name, arr in arrays.items():
            group.create_dataset(name, data=arr)
        group.attrs["digest"] = _array_digest(arrays)
        group.attrs["complete"] = 1  # the commit mark: written last
        self._h5.flush()
        self._complete[feats.image_id] = key
        return True

    def write_many(self, feats: Iterable[ImageFeatures], overwrite: bool = False) -> int:
        return sum(self.write(f, overwrite) for f in feats)

    def _drop_incomplete(self) -> None:
        images = self._h5[_GROUP]
        for key in [k for k in images if images[k].attrs.get("complete", 0) != 1]:
            del images[key]

    def _check_writable(self) -> None:
        if self.mode == "r":
            raise RelookError(f"{self.path} is open read-only")

    # -- lifecycle --------------------------------------------------------------------------------
    def close(self) -> None:
        if self._h5.id.valid:
            self._h5.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, {len(self)} images)"


def merge_stores(shards: Sequence[str | Path], output: str | Path, overwrite: bool = False) -> Path:
    """Merge shard stores (e.g. one per extraction process) into one new store, atomically.

    An image present in several shards must be identical in each; otherwise ``DataError``. The result
    is written to a temporary file and renamed, so a failed merge leaves ``output`` untouched.
    """
    output = Path(output)
    if output.exists() and not overwrite:
        raise DataError(f"{output} exists; pass overwrite=True (--overwrite) to replace it")
    if not shards:
        raise DataError("merge needs at least one shard store")

    with atomic_path(output) as tmp:
        meta: dict = {}
        with FeatureStore(tmp, "w") as out:
            for shard in shards:
                with FeatureStore(shard, "r") as src:
                    meta.update(src.meta)
                    for image_id in src.ids():
                        feats = src.read(image_id)
                        if image_id in out:
                            if out.read(image_id) != feats:
                                raise DataError(f"image {image_id!r} differs between {shard} and an earlier shard")
                            continue
                        out.write(feats)
            out.meta = meta
    return output
