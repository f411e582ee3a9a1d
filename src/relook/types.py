"""The three records that flow through relook: ImageFeatures -> Shortlist -> Ranking.

Shapes (validated by ``ImageFeatures.validate``; the store calls it on every write and read):

=================  ===============  =========  ==========================================================
field              shape            dtype      meaning
=================  ===============  =========  ==========================================================
global_desc        (D,)             float32    global descriptor (L2-normalised by the extractor)
local_desc         (N, d)           float32    local descriptors
keypoints          (N, 2)           float32    (x, y) in pixels of the image as extracted
scales             (N,)             float32    scale of each local feature (1.0 when unknown)
attention          (N,)             float32    per-local-feature strength (DELG attention, SIFT response)
patch_tokens       (h, w, C)        float32    spatial feature map / ViT patch tokens
relevancy          (h*w,)           float32    attention-rollout relevancy of each patch, sums to 1
image_size         (2,)             int64      (height, width) in pixels
=================  ===============  =========  ==========================================================

Other named arrays (e.g. per-layer attention) go into ``extra`` and are stored as-is after a
finiteness check. Every field except ``image_id`` is optional.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from relook.checks import check_finite, check_shape
from relook.errors import DataError, ShapeError
from relook.io import atomic_path

#: field name -> (dims, numpy dtype) of every typed ImageFeatures array field
FIELD_SPECS: dict[str, tuple[tuple, type]] = {
    "global_desc": (("D",), np.float32),
    "local_desc": (("N", "d"), np.float32),
    "keypoints": (("N", 2), np.float32),
    "scales": (("N",), np.float32),
    "attention": (("N",), np.float32),
    "patch_tokens": (("h", "w", "C"), np.float32),
    "relevancy": (("P",), np.float32),
    "image_size": ((2,), np.int64),
}


@dataclass
class ImageFeatures:
    """Everything extracted from one image. See the module docstring for shapes and dtypes."""

    image_id: str
    global_desc: np.ndarray | None = None
    local_desc: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    scales: np.ndarray | None = None
    attention: np.ndarray | None = None
    patch_tokens: np.ndarray | None = None
    relevancy: np.ndarray | None = None
    image_size: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, (_, dtype) in FIELD_SPECS.items():
            value = getattr(self, name)
            if value is not None:
                arr = np.asarray(value)
                if arr.dtype.kind not in "fiub":
                    raise ShapeError(f"{self.image_id}: field {name} has non-numeric dtype {arr.dtype}")
                setattr(self, name, np.ascontiguousarray(arr, dtype=dtype))
        self.extra = {k: np.ascontiguousarray(v) for k, v in self.extra.items()}

    def fields(self) -> list[str]:
        """Names of the fields present (typed fields first, then extras)."""
        present = [n for n in FIELD_SPECS if getattr(self, n) is not None]
        return present + sorted(self.extra)

    def arrays(self) -> dict[str, np.ndarray]:
        """All present arrays by field name (what the store writes)."""
        out = {n: getattr(self, n) for n in FIELD_SPECS if getattr(self, n) is not None}
        out.update(self.extra)
        return out

    def get(self, name: str) -> np.ndarray:
        """A field by name, or a ``DataError`` saying which extractor to run."""
        value = getattr(self, name, None) if name in FIELD_SPECS else self.extra.get(name)
        if value is None:
            raise DataError(
                f"image {self.image_id!r} has no field {name!r} (present: {self.fields()}); "
                "run an extractor that writes it"
            )
        return value

    @property
    def num_local(self) -> int:
        return 0 if self.local_desc is None else int(self.local_desc.shape[0])

    def validate(self) -> ImageFeatures:
        """Check every shape, dtype and value; raise ``ShapeError`` naming the image and field."""
        sizes: dict = {}
        try:
            for name, (dims, _) in FIELD_SPECS.items():
                value = getattr(self, name)
                if value is None:
                    continue
                check_shape(value, list(dims), name, sizes)
                check_finite(value, name)
            if self.relevancy is not None and self.patch_tokens is not None:
                h, w = self.patch_tokens.shape[:2]
                if self.relevancy.shape[0] != h * w:
                    raise ShapeError(f"relevancy has {self.relevancy.shape[0]} entries, patch grid is {h}x{w}")
            if self.relevancy is not None and (self.relevancy < 0).any():
                raise ShapeError("relevancy has negative entries; it must be a probability vector")
            for name, value in self.extra.items():
                if name in FIELD_SPECS or not name.isidentifier():
                    raise ShapeError(f"extra field name {name!r} is reserved or not an identifier")
                check_finite(value, name)
        except ShapeError as e:
            raise ShapeError(f"image {self.image_id!r}: {e}") from None
        return self

    @classmethod
    def from_arrays(cls, image_id: str, arrays: dict[str, np.ndarray]) -> ImageFeatures:
        typed = {k: v for k, v in arrays.items() if k in FIELD_SPECS}
        extra = {k: v for k, v in arrays.items() if k not in FIELD_SPECS}
        return cls(image_id=image_id, extra=extra, **typed)

    def __eq__(self, other: object) -> bool:  # arrays compared by value
        if not isinstance(other, ImageFeatures) or other.image_id != self.image_id:
            return False
        a, b = self.arrays(), other.arrays()
        return a.keys() == b.keys() and all(x.dtype == b[k].dtype and np.array_equal(x, b[k]) for k, x in a.items())


@dataclass
class Shortlist:
    """The top-K gallery images of each query from a global search.

    ``indices[q, k]`` indexes ``gallery_ids`` (int64, -1 where fewer than K results exist) and
    ``scores[q, k]`` is its similarity (float32), sorted descending along K.
    """

    query_ids: list[str]
    gallery_ids: list[str]
    indices: np.ndarray  # (Q, K) int64
    scores: np.ndarray  # (Q, K) float32
    meta: dict[str, str] = field(default_factory=dict)  # provenance: data, weights, method

    def __post_init__(self) -> None:
        self.query_ids = [str(q) for q in self.query_ids]
        self.gallery_ids = [str(g) for g in self.gallery_ids]
        self.indices = np.ascontiguousarray(self.indices, dtype=np.int64)
        self.scores = np.ascontiguousarray(self.scores, dtype=np.float32)
        if self.indices.ndim == 1 and self.indices.size == 0:
            self.indices = self.indices.reshape(len(self.query_ids), 0)
            self.scores = self.scores.reshape(len(self.query_ids), 0)
        sizes = check_shape(self.indices, ["Q", "K"], "indices")
        check_shape(self.scores, ["Q", "K"], "scores", sizes)
        if sizes["Q"] != len(self.query_ids):
            raise ShapeError(f"indices has {sizes['Q']} rows but there are {len(self.query_ids)} query ids")
        if self.indices.size and (self.indices.max() >= len(self.gallery_ids) or self.indices.min() < -1):
            raise ShapeError(f"indices must lie in [-1, {len(self.gallery_ids)}) (gallery size)")
        if np.isnan(self.scores).any():
            raise ShapeError("scores contain NaN")

    @property
    def num_queries(self) -> int:
        return len(self.query_ids)

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def topk(self, k: int) -> Shortlist:
        """The first ``k`` columns (a view of the same ranking)."""
        return type(self)(self.query_ids, self.gallery_ids, self.indices[:, :k], self.scores[:, :k], dict(self.meta))

    def rows(self, query_ids: Sequence[str]) -> Shortlist:
        """The rows of ``query_ids``, in that order (same gallery, same metadata); ``DataError`` for an
        id that is not a query of this list."""
        pos = {q: i for i, q in enumerate(self.query_ids)}
        missing = [q for q in query_ids if q not in pos]
        if missing:
            raise DataError(f"query {missing[0]!r} is not in this {type(self).__name__.lower()}")
        r = np.array([pos[q] for q in query_ids], np.int64)
        return type(self)(list(query_ids), self.gallery_ids, self.indices[r], self.scores[r], dict(self.meta))

    def candidate_ids(self, q: int) -> list[str]:
        """Gallery ids of query ``q``'s candidates, in order (padding -1 dropped)."""
        return [self.gallery_ids[i] for i in self.indices[q] if i >= 0]

    def save(self, path: str | Path) -> Path:
        """Write to an ``.npz`` file atomically (temp file + rename)."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(
                f,
                kind=type(self).__name__,
                query_ids=np.array(self.query_ids, dtype=str),
                gallery_ids=np.array(self.gallery_ids, dtype=str),
                indices=self.indices,
                scores=self.scores,
                meta_keys=np.array(list(self.meta), dtype=str),
                meta_values=np.array(list(self.meta.values()), dtype=str),
            )
        return path

    @classmethod
    def load(cls, path: str | Path):
        path = Path(path)
        if not path.exists():
            raise DataError(f"{path}: no such file")
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = dict(zip(z["meta_keys"].tolist(), z["meta_values"].tolist()))
                return cls(z["query_ids"].tolist(), z["gallery_ids"].tolist(), z["indices"], z["scores"], meta)
        except (
            KeyError,
            ValueError,
            OSError,
            EOFError,
            RuntimeError,
            NotImplementedError,
            zipfile.BadZipFile,
            zlib.error,
        ) as e:
            reason = " ".join(str(e).split())[:200] or type(e).__name__
            raise DataError(f"{path}: not a relook {cls.__name__} file ({reason})") from None


class Ranking(Shortlist):
    """A (re)ranked list per query: same layout as ``Shortlist``, produced by a reranker.

    When a reranker rescored only the top-K of a longer shortlist, the remaining columns keep their
    global order after the reranked ones, so metrics see the full list.
    """


def ranked_indices(scores: np.ndarray, candidates: np.ndarray | None = None) -> np.ndarray:
    """Order of ``scores`` (Q, K) descending; ties broken by the earlier position (stable).

    With ``candidates`` (Q, K) the gallery indices are returned reordered; else the column order.
    """
    order = np.argsort(-np.asarray(scores, dtype=np.float64), axis=1, kind="stable")
    return order if candidates is None else np.take_along_axis(candidates, order, axis=1)
