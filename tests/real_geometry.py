"""Real image pairs with ground-truth homographies, read in place from ``../shared/data/geometry``.

The shared folder sits beside the repository (here and in CI); a missing folder skips the tests that use
it with the reason, and fails them under CI (``tests/shared_data.py``). Features are cached per (extractor config, image) for the whole session, so the
feature and the matcher tests share one extraction of each image.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import cv2
import numpy as np

from tests.shared_data import SHARED_DATA as DATA
from tests.shared_data import unavailable

GEOMETRY = DATA / "geometry"

#: pair name -> (image 1, image 2, 3x3 homography mapping image-1 pixels to image-2 pixels)
PAIRS = {
    **{
        f"{seq} 1-{k}": (
            f"hpatches_subset_tfeat/{seq}/1.png",
            f"hpatches_subset_tfeat/{seq}/{k}.png",
            f"hpatches_subset_tfeat/{seq}/H_1_{k}",
        )
        for seq in ("v_churchill", "v_wormhole")
        for k in range(2, 7)
    },
    **{
        f"graf 1-{k}": ("oxford_graf_affnet/img1.png", f"oxford_graf_affnet/img{k}.png", f"oxford_graf_affnet/H1to{k}p")
        for k in range(2, 7)
    },
}


def require(path: Path) -> Path:
    if not path.exists():
        unavailable(
            f"real test data missing: {path.resolve()} (the shared data folder must sit "
            f"beside the repository: ../shared/data, see shared/data/README.md)"
        )
    return path


@cache
def read_rgb(rel: str) -> np.ndarray:
    bgr = cv2.imread(str(require(GEOMETRY / rel)), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def homography(pair: str) -> np.ndarray:
    return np.loadtxt(require(GEOMETRY / PAIRS[pair][2]))


def project(h: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Points (N, 2) mapped by the homography ``h``."""
    y = np.c_[xy, np.ones(len(xy))] @ np.asarray(h, np.float64).T
    return y[:, :2] / y[:, 2:]


_EXTRACTORS: dict = {}  # (extractor name, conf) -> (image -> features, extractor)


def features(name: str, rel: str, **conf):
    """Features of one shared image by ``create_extractor(name, **conf)``, cached per session."""
    from relook.features import create_extractor

    key = (name, tuple(sorted(conf.items())))
    if key not in _EXTRACTORS:
        _EXTRACTORS[key] = ({}, create_extractor(name, **conf))
    cache, ex = _EXTRACTORS[key]
    if rel not in cache:
        cache[rel] = ex.extract_one(rel, read_rgb(rel))
    return cache[rel]


def correct(pair: str, fa, fb, iq: np.ndarray, ic: np.ndarray, px: float = 3.0) -> np.ndarray:
    """(P,) bool: match (iq[p], ic[p]) lands within ``px`` pixels of the true homography in image 2."""
    err = np.linalg.norm(project(homography(pair), fa.keypoints[iq]) - fb.keypoints[ic], axis=1)
    return err < px
