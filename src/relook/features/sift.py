"""SIFT / RootSIFT local features from OpenCV (weight-free), up to 1000 per image, optionally multi-scale.

RootSIFT (Arandjelovic & Zisserman, CVPR 2012): L1-normalise each SIFT vector and take the element-wise
square root, so that the dot product of two RootSIFTs is the Hellinger kernel of the SIFTs; the result
has unit L2 norm. Plain SIFT is L2-normalised here too, so every descriptor the reranker sees is on the
unit sphere (as DELG's are) and distance thresholds mean the same for both.

Fields written (``ImageFeatures``): ``local_desc`` (N, 128), ``keypoints`` (N, 2) (x, y) in pixels of the
image as given, ``scales`` (N,) the image scale the feature was detected at (DELG's meaning of "scale",
1.0 for single-scale), ``attention`` (N,) the detector response (strength), ``image_size`` and, in
``extra``, ``kp_size`` (N,) the SIFT region diameter in original pixels and ``kp_angle`` (N,) in degrees.
Features are sorted by response, strongest first, and the ``num_features`` strongest over all scales kept.
"""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np

from relook.errors import ConfigError, ShapeError
from relook.features.base import Extractor, register_extractor
from relook.features.selection import top_n_indices
from relook.types import ImageFeatures


def root_sift(desc: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """RootSIFT of SIFT descriptors (N, 128): sqrt(x / |x|_1); rows have unit L2 norm (zero rows stay 0)."""
    desc = np.maximum(np.asarray(desc, dtype=np.float32), 0)
    return np.sqrt(desc / (desc.sum(axis=1, keepdims=True) + eps)).astype(np.float32)


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return (x / (np.linalg.norm(x, axis=-1, keepdims=True) + eps)).astype(np.float32)


@register_extractor("sift")
class SiftExtractor(Extractor):
    """OpenCV SIFT (RootSIFT by default) at one or several image scales."""

    name = "sift"
    default_conf: ClassVar[dict[str, Any]] = {
        "num_features": 1000,  # keep the strongest N features over all scales (DELG keeps up to 1000)
        "root": True,  # RootSIFT (Hellinger) instead of L2-normalised SIFT
        "scales": [1.0],  # image scales to detect at, e.g. [0.7071, 1.0, 1.4142] for multi-scale
        "max_image_size": None,  # resize so the longer side is at most this before extraction (None: no)
        "contrast_threshold": 0.04,  # OpenCV SIFT contrastThreshold (Lowe's default)
        "edge_threshold": 10.0,  # OpenCV SIFT edgeThreshold
        "sigma": 1.6,  # OpenCV SIFT base Gaussian sigma
        "n_octave_layers": 3,  # OpenCV SIFT layers per octave
    }
    writes = frozenset({"local_desc", "keypoints", "scales", "attention", "image_size"})

    def __init__(self, **conf: Any) -> None:
        super().__init__(**conf)
        scales = [float(s) for s in self.conf["scales"]]
        if not scales or min(scales) <= 0:
            raise ConfigError(f"sift: scales must be a non-empty list of positive numbers, got {scales}")
        if int(self.conf["num_features"]) < 1:
            raise ConfigError(f"sift: num_features must be >= 1, got {self.conf['num_features']}")
        self._sift = cv2.SIFT_create(
            nfeatures=int(self.conf["num_features"]),
            nOctaveLayers=int(self.conf["n_octave_layers"]),
            contrastThreshold=float(self.conf["contrast_threshold"]),
            edgeThreshold=float(self.conf["edge_threshold"]),
            sigma=float(self.conf["sigma"]),
        )

    def extract_one(self, image_id: str, image: np.ndarray) -> ImageFeatures:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ShapeError(f"sift: image {image_id!r} must be RGB uint8 (H, W, 3), got {image.shape} {image.dtype}")
        h, w = image.shape[:2]
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        base = 1.0
        if self.conf["max_image_size"] and max(h, w) > int(self.conf["max_image_size"]):
            base = int(self.conf["max_image_size"]) / max(h, w)
        pts, desc, resp, scl, size, angle = [], [], [], [], [], []
        for s in self.conf["scales"]:
            f = base * float(s)
            img = (
                gray
                if f == 1.0
                else cv2.resize(
                    gray,
                    (max(1, round(w * f)), max(1, round(h * f))),
                    interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR,
                )
            )
            kps, d = self._sift.detectAndCompute(img, None)
            if not kps or d is None:
                continue
            pts.append(np.array([k.pt for k in kps], np.float32) / f)
            desc.append(d.astype(np.float32))
            resp.append(np.array([k.response for k in kps], np.float32))
            size.append(np.array([k.size for k in kps], np.float32) / f)
            angle.append(np.array([k.angle for k in kps], np.float32))
            scl.append(np.full(len(kps), float(s), np.float32))
        if not pts:
            z = np.zeros((0,), np.float32)
            return ImageFeatures(
                image_id,
                local_desc=np.zeros((0, 128), np.float32),
                keypoints=np.zeros((0, 2)),
                scales=z,
                attention=z,
                image_size=np.array([h, w]),
                extra={"kp_size": z, "kp_angle": z},
            )
        desc_all = np.concatenate(desc)
        desc_all = root_sift(desc_all) if self.conf["root"] else l2_normalise(desc_all)
        resp_all = np.concatenate(resp)
        keep = top_n_indices(resp_all, int(self.conf["num_features"]))
        return ImageFeatures(
            image_id,
            local_desc=desc_all[keep],
            keypoints=np.concatenate(pts)[keep],
            scales=np.concatenate(scl)[keep],
            attention=resp_all[keep],
            image_size=np.array([h, w]),
            extra={"kp_size": np.concatenate(size)[keep], "kp_angle": np.concatenate(angle)[keep]},
        )
