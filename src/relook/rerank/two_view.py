"""Two-view geometry from real images with relook's own parts, and the errors that score it.

A ``TwoViewMatcher`` is one row of the real-geometry table (``benchmarks/geometry.py``): a local-feature
extractor (``sift``, ``aliked``, ``disk``, ``xfeat``, downscaled to a long side of ``resize`` px, at most
``max_keypoints`` features, keypoints mapped back to the original pixels) and the putative matches that
``gv`` itself uses (``GeometricVerification.matches``: mutual nearest neighbours, optionally with Lowe's
ratio test, or LightGlue). The robust fits are ``gv``'s (``count_inliers``: OpenCV USAC with MAGSAC++,
seeded) for homographies and the pseudo ground-truth's (``robust.estimate_fundamental``, MAGSAC++ plus the
epipolar paper's reliability rule of Sec. 5.2) for fundamental matrices, so the table measures exactly
what relook runs. ``LearnedMatcher`` serves the pseudo ground truth (``relook.geometry.robust``, which
registers it by name: matchers built from extractors live above the geometry package).

Errors (pure functions, numpy in, numpy out):

- ``corner_error``: the HPatches homography error, the mean distance between the four image-1 corners
  mapped by the estimated and by the true H (SuperPoint / hloc protocol);
- ``virtual_correspondences``: point pairs that satisfy a true F exactly (Zhang 1998: grid points of
  image 1, points sampled on their epipolar lines inside image 2), so an estimated F can be scored by
  the symmetric epipolar distance of correspondences consistent with the ground truth when no depth
  (hence no real correspondence) is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from relook.errors import ConfigError, ShapeError
from relook.features import create_extractor
from relook.features.selection import keep_top_n
from relook.geometry.robust import LEARNED_MATCHERS, register_matcher
from relook.rerank.gv import GeometricVerification, count_inliers
from relook.types import ImageFeatures
from relook.weights import WeightsRecord

#: method name -> (extractor, extractor conf, gv conf); sizes are filled in by ``TwoViewMatcher``
METHODS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "sift+mnn": ("sift", {}, {"matcher": "mnn"}),
    "sift+ratio": ("sift", {}, {"matcher": "mnn", "ratio": 0.8}),
    "aliked+mnn": ("aliked", {}, {"matcher": "mnn"}),
    "aliked+lightglue": ("aliked", {}, {"matcher": "lightglue", "lightglue_weights": "lightglue-aliked"}),
    "disk+lightglue": ("disk", {}, {"matcher": "lightglue", "lightglue_weights": "lightglue-disk"}),
    "xfeat+lighterglue": ("xfeat", {}, {"matcher": "lightglue", "lightglue_weights": "lighterglue"}),
}


def extractor_conf(name: str, max_keypoints: int, resize: int | None) -> dict[str, Any]:
    """The size settings of extractor ``name`` (SIFT and the learned ones name them differently)."""
    if name == "sift":
        return {"num_features": int(max_keypoints), "max_image_size": resize}
    return {"max_keypoints": int(max_keypoints), "resize": resize}


class TwoViewMatcher:
    """Extractor + ``gv``'s putative matches for one ``METHODS`` entry; ``match`` gives pixel pairs."""

    def __init__(self, method: str, max_keypoints: int = 2048, resize: int | None = 640) -> None:
        if method not in METHODS:
            raise ConfigError(f"two-view: unknown method {method!r}; known: {sorted(METHODS)}")
        ex_name, ex_conf, gv_conf = METHODS[method]
        self.method, self.max_keypoints, self.resize = method, int(max_keypoints), resize
        self.extractor_name = ex_name
        self.extractor_conf = {**ex_conf, **extractor_conf(ex_name, max_keypoints, resize)}
        self.extractor = create_extractor(ex_name, **self.extractor_conf)
        self.gv = GeometricVerification(**gv_conf, max_local=self.max_keypoints)

    @property
    def weights(self) -> list[WeightsRecord]:
        """The learned weights the method reads (extractor, then matcher); empty for SIFT + MNN."""
        out = [w for w in (getattr(self.extractor, "weights", None), self.gv.lightglue_weights) if w is not None]
        return out

    def features(self, image_id: str, image: np.ndarray) -> ImageFeatures:
        """Local features of an RGB uint8 image (H, W, 3), keypoints in its own pixels."""
        return self.extractor.extract_one(image_id, image)

    def match(self, f1: ImageFeatures, f2: ImageFeatures) -> tuple[np.ndarray, np.ndarray]:
        """Matched keypoints x1, x2 (P, 2) float64 of two images' features (gv's matcher)."""
        f1, f2 = keep_top_n(f1, self.max_keypoints), keep_top_n(f2, self.max_keypoints)
        ((i1, i2),) = self.gv.matches(f1, [f2])
        return np.asarray(f1.keypoints, np.float64)[i1], np.asarray(f2.keypoints, np.float64)[i2]


def threshold_px(base: float, image_size, resize: int | None) -> float:
    """A residual threshold of ``base`` pixels of the network input, expressed in original pixels.

    Keypoints come from an image downscaled to a long side of ``resize``, so their localisation error in
    the original frame grows with the downscale factor; the robust fit's threshold follows it.
    """
    long_side = float(max(image_size[:2]))
    return float(base) * max(1.0, long_side / resize) if resize else float(base)


def estimate_homography(
    x1: np.ndarray, x2: np.ndarray, threshold: float, seed: int = 0, max_iters: int = 10000
) -> tuple[np.ndarray | None, int]:
    """H (3, 3) mapping x1 to x2 (P, 2) by ``gv.count_inliers`` (MAGSAC++), and the inlier count; None if none."""

    n, H = count_inliers(x1, x2, "homography", "magsac", threshold, max_iters, 0.999, seed)
    if H is None or H.shape != (3, 3) or not np.isfinite(H).all():
        return None, 0
    return H, n


def project(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Points (N, 2) mapped by the homography H (3, 3)."""
    y = np.c_[np.asarray(xy, np.float64), np.ones(len(xy))] @ np.asarray(H, np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return y[:, :2] / y[:, 2:]


def image_corners(image_size) -> np.ndarray:
    """The four corner pixel centres (4, 2) (x, y) of an image of ``image_size = (H, W)``."""
    h, w = float(image_size[0]), float(image_size[1])
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)


def corner_error(H_est: np.ndarray | None, H_true: np.ndarray, image_size) -> float:
    """HPatches corner error: mean distance (px) of image-1 corners mapped by ``H_est`` vs ``H_true``.

    ``image_size`` = (H, W) of image 1. No estimate (None) or a corner sent to infinity gives ``inf``.
    """
    if H_est is None:
        return float("inf")
    H_est, H_true = np.asarray(H_est, np.float64), np.asarray(H_true, np.float64)
    if H_est.shape != (3, 3) or H_true.shape != (3, 3):
        raise ShapeError(f"corner_error: H must be (3, 3), got {H_est.shape} and {H_true.shape}")
    c = image_corners(image_size)
    d = np.linalg.norm(project(H_est, c) - project(H_true, c), axis=1)
    return float(d.mean()) if np.isfinite(d).all() else float("inf")


def virtual_correspondences(
    F: np.ndarray, size1, size2, grid: int = 10, per_line: int = 5
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (x1, x2) (N, 2) with ``x2^T F x1 = 0`` exactly, spread over both images.

    x1: a ``grid x grid`` lattice of image 1 (``size1 = (H, W)``); x2: ``per_line`` points evenly spaced on
    the part of the epipolar line ``F x1`` inside image 2 (``size2``); a line that misses image 2 adds none.
    """
    F = np.asarray(F, np.float64)
    if F.shape != (3, 3):
        raise ShapeError(f"virtual_correspondences: F must be (3, 3), got {F.shape}")
    (h1, w1), (h2, w2) = size1[:2], size2[:2]
    gx, gy = np.meshgrid((np.arange(grid) + 0.5) * w1 / grid - 0.5, (np.arange(grid) + 0.5) * h1 / grid - 0.5)
    p1 = np.stack([gx.ravel(), gy.ravel()], 1)
    out1, out2 = [], []
    xmin, xmax, ymin, ymax = -0.5, w2 - 0.5, -0.5, h2 - 0.5
    for x in p1:
        a, b, c = F @ np.array([x[0], x[1], 1.0])
        hits = []
        if abs(b) > 1e-12:  # crossings with the left / right borders
            hits += [(u, -(a * u + c) / b) for u in (xmin, xmax)]
        if abs(a) > 1e-12:  # crossings with the top / bottom borders
            hits += [(-(b * v + c) / a, v) for v in (ymin, ymax)]
        hits = np.array([p for p in hits if xmin - 1e-9 <= p[0] <= xmax + 1e-9 and ymin - 1e-9 <= p[1] <= ymax + 1e-9])
        if len(hits) < 2:
            continue
        d = np.linalg.norm(hits[:, None] - hits[None], axis=-1)
        i, j = np.unravel_index(np.argmax(d), d.shape)
        if d[i, j] < 1e-6:
            continue
        s = (np.arange(per_line) + 0.5) / per_line
        out2.append(hits[i] + s[:, None] * (hits[j] - hits[i]))
        out1.append(np.repeat(x[None], per_line, 0))
    if not out1:
        return np.zeros((0, 2)), np.zeros((0, 2))
    return np.concatenate(out1), np.concatenate(out2)


class LearnedMatcher:
    """Learned local features + LightGlue for pseudo ground truth (``relook.geometry.robust``): the extractor
    at ``resize`` px long side, at most ``max_keypoints`` per image, keypoints mapped back to the original
    pixels, gv's LightGlue."""

    def __init__(self, method: str, max_keypoints: int = 2048, resize: int | None = 640) -> None:
        self.matcher = TwoViewMatcher(method, max_keypoints, resize)
        self.resize = resize

    def __call__(self, img1: np.ndarray, img2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = self.matcher
        return m.match(m.features("image1", img1), m.features("image2", img2))

    def input_threshold(self, base: float, long_side: int) -> float:
        """MAGSAC++'s threshold of ``base`` px of the matcher's input, in original pixels (``threshold_px``)."""
        return threshold_px(base, (long_side,), self.resize)


for _name in LEARNED_MATCHERS:
    register_matcher(
        _name,
        lambda conf: LearnedMatcher(conf["matcher"], conf["learned_max_keypoints"], conf["learned_resize"]),
    )
