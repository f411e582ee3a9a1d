"""Choosing and counting local features: top-n by strength and distinct grid locations.

``keep_top_n`` is the knob of the RRT supplementary's Table 1 ablation (200..1000 local descriptors per
image, kept by DELG attention score). ``distinct_grid_locations`` is the count of its Sec. B: each local
feature at pixel (u, v) is assigned to the grid cell (floor(u / 16), floor(v / 16)) of the stride-16
feature map it was read from, and features sharing a cell count once (DELG extracts at 7 scales, so
many of its ~1000 features repeat a location: 585/465/655 distinct on average in the paper).
"""

from __future__ import annotations

import numpy as np

from relook.checks import check_shape
from relook.errors import ConfigError
from relook.types import ImageFeatures

#: per-local-feature fields of ImageFeatures (first axis = feature index)
LOCAL_FIELDS = ("local_desc", "keypoints", "scales", "attention")


def top_n_indices(strength: np.ndarray, n: int | None) -> np.ndarray:
    """Indices of the ``n`` largest ``strength`` (N,) values, strongest first; ties keep input order."""
    strength = np.asarray(strength, dtype=np.float64).ravel()
    order = np.argsort(-strength, kind="stable")
    return order if n is None else order[: max(int(n), 0)]


def keep_top_n(feats: ImageFeatures, n: int | None, by: str = "attention") -> ImageFeatures:
    """A copy of ``feats`` holding only its ``n`` strongest local features (by ``by``, default attention).

    Every local field and every ``extra`` array whose first axis has the local-feature count is
    subset the same way; the other fields are kept as they are. ``n=None`` keeps all (sorted).
    """
    if n is not None and n < 0:
        raise ConfigError(f"keep_top_n: n must be >= 0 or None, got {n}")
    num = feats.num_local
    if num == 0:
        return feats
    strength = feats.get(by) if by != "none" else -np.arange(num, dtype=np.float32)
    if len(strength) != num:
        raise ConfigError(f"keep_top_n: field {by!r} has {len(strength)} entries for {num} local features")
    idx = top_n_indices(strength, n)
    sub = {name: getattr(feats, name)[idx] for name in LOCAL_FIELDS if getattr(feats, name) is not None}
    extra = {k: (v[idx] if v.ndim >= 1 and v.shape[0] == num else v) for k, v in feats.extra.items()}
    rest = {name: getattr(feats, name) for name in ("global_desc", "patch_tokens", "relevancy", "image_size")}
    return ImageFeatures(feats.image_id, extra=extra, **sub, **rest)


def grid_cells(keypoints: np.ndarray, stride: float = 16.0) -> np.ndarray:
    """Grid cell (floor(u / stride), floor(v / stride)) of each keypoint (N, 2) -> (N, 2) int64."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.size == 0:
        return np.zeros((0, 2), np.int64)
    check_shape(keypoints, ["N", 2], "keypoints")
    if stride <= 0:
        raise ConfigError(f"grid stride must be > 0, got {stride}")
    return np.floor(keypoints / stride).astype(np.int64)


def distinct_grid_locations(keypoints: np.ndarray, stride: float = 16.0) -> int:
    """Number of distinct stride-``stride`` grid cells hit by ``keypoints`` (N, 2) (RRT supp. Sec. B)."""
    cells = grid_cells(keypoints, stride)
    return 0 if len(cells) == 0 else int(len(np.unique(cells, axis=0)))


def local_feature_stats(feats_iter, top_n: int | None = None, stride: float = 16.0) -> dict[str, float]:
    """Mean number of local features and of distinct grid locations per image (after ``keep_top_n``)."""
    counts, distinct = [], []
    for feats in feats_iter:
        feats = keep_top_n(feats, top_n) if top_n is not None else feats
        counts.append(feats.num_local)
        distinct.append(distinct_grid_locations(feats.keypoints, stride) if feats.keypoints is not None else 0)
    if not counts:
        return {"images": 0, "mean_local": 0.0, "mean_distinct": 0.0}
    return {"images": len(counts), "mean_local": float(np.mean(counts)), "mean_distinct": float(np.mean(distinct))}
