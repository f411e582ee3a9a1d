"""Training image transforms that report how they moved pixels, so intrinsics and F stay right.

Every geometric step returns the 3x3 pixel map ``A`` (new pixel ~ A @ old pixel, OpenCV convention:
pixel centres at integers; the maps and what follows from them, ``K' = A @ K`` and
``F' = A2^-T F A1^-1``, are in ``relook.geometry.pixel_maps``). A crop by (x0, y0) shifts the principal
point by (-x0, -y0); a resize by (sx, sy) maps u -> sx (u + 0.5) - 0.5, i.e. scales K and moves the
principal point by the half-pixel offset. This is the crop adjustment of the epipolar paper (Sec. 5.2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from relook.config import merge_conf
from relook.errors import ConfigError
from relook.geometry.pixel_maps import (
    adjust_intrinsics,
    center_crop_box,
    hflip_matrix,
    resize_matrix,
    translation,
)


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``image (H, W, ...)`` to integer ``box = (x0, y0, x1, y1)`` (x1, y1 exclusive) -> (crop, A)."""
    x0, y0, x1, y1 = (int(v) for v in box)
    h, w = image.shape[:2]
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ConfigError(f"crop box {box} is not inside a {w}x{h} image")
    return np.ascontiguousarray(image[y0:y1, x0:x1]), translation(-x0, -y0)


def resize(image: np.ndarray, size_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Resize to ``size_hw`` (bilinear; area when shrinking) -> (image, A). Pixel areas map onto pixel areas."""
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

    h, w = image.shape[:2]
    oh, ow = int(size_hw[0]), int(size_hw[1])
    if oh < 1 or ow < 1:
        raise ConfigError(f"resize target {size_hw} must be positive")
    sx, sy = ow / w, oh / h
    interp = cv2.INTER_AREA if sx * sy < 1 else cv2.INTER_LINEAR
    out = cv2.resize(image, (ow, oh), interpolation=interp)
    return out, resize_matrix((w, h), (ow, oh))


def hflip(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirror left-right -> (image, A): pixel column u goes to W - 1 - u (pixel centres at integers)."""
    return np.ascontiguousarray(image[:, ::-1]), hflip_matrix(image.shape[1])


def eval_transform(image: np.ndarray, resize_to: int = 256, size: int = 224) -> tuple[np.ndarray, np.ndarray]:
    """Official RRT SOP test preprocessing: resize to ``resize_to x resize_to`` (aspect not kept, as
    torchvision ``Resize((256, 256))``), then the central ``size x size`` crop -> (image, A). Used at
    extraction (``cnn_local`` option ``eval_resize``) and as the epipolar guidance's frame."""
    out, A1 = resize(image, (resize_to, resize_to))
    out, A2 = crop(out, center_crop_box(out.shape[:2], size))
    return out, A2 @ A1


def random_resized_crop_box(
    rng: np.random.Generator, hw: tuple[int, int], scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """A box of area fraction in ``scale`` and aspect (w/h) in ``ratio`` (log-uniform), inside ``hw``."""
    h, w = hw
    for _ in range(10):
        area = h * w * rng.uniform(*scale)
        aspect = np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1])))
        cw, ch = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return x0, y0, x0 + cw, y0 + ch
    side = min(h, w)  # fallback: central square
    return (w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side


def illumination(
    image: np.ndarray, rng: np.random.Generator, brightness: float = 0.3, contrast: float = 0.3, gamma: float = 0.3
) -> np.ndarray:
    """Photometric jitter of a uint8 RGB image (no pixel moves): brightness/contrast factors in
    ``1 +- brightness/contrast``, gamma ``exp(U(-gamma, gamma))``."""
    x = image.astype(np.float32) / 255.0
    x = x ** np.exp(rng.uniform(-gamma, gamma))
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - contrast, 1 + contrast) + mean
    x = x * rng.uniform(1 - brightness, 1 + brightness)
    return (x.clip(0, 1) * 255 + 0.5).astype(np.uint8)


class TrainTransform:
    """Random resized crop + horizontal flip (+ illumination); ``__call__(image, K, rng) -> (image, K', A)``.

    ``A`` maps original pixels to output pixels (crop, resize, then the flip when drawn), so a camera's
    intrinsics become ``A K`` and F between two such images ``A2^-T F A1^-1`` (``adjust_fundamental``).
    ``TrainTransform.official_sop()`` is the official RRT SOP training augmentation (torchvision
    ``RandomResizedCrop(224)`` with its default scale (0.08, 1) and ratio (3/4, 4/3), then
    ``RandomHorizontalFlip(0.5)``, no photometric change).
    """

    default_conf: dict[str, Any] = {
        "size": 224,  # output side (square), pixels; the paper's RRT training resolution
        "scale": (0.5, 1.0),  # area fraction of the random crop
        "ratio": (3 / 4, 4 / 3),  # aspect-ratio range (w / h) of the random crop
        "flip": 0.0,  # probability of a horizontal flip
        "brightness": 0.3,  # brightness factor range 1 +- this
        "contrast": 0.3,  # contrast factor range 1 +- this
        "gamma": 0.3,  # gamma drawn as exp(U(-this, this))
    }

    def __init__(self, **conf: Any) -> None:
        self.conf = merge_conf(self.default_conf, conf, "TrainTransform")

    @classmethod
    def official_sop(cls, size: int = 224) -> TrainTransform:
        return cls(
            size=size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), flip=0.5, brightness=0.0, contrast=0.0, gamma=0.0
        )

    def __call__(self, image: np.ndarray, K: np.ndarray | None, rng: np.random.Generator):
        c = self.conf
        box = random_resized_crop_box(rng, image.shape[:2], tuple(c["scale"]), tuple(c["ratio"]))
        out, A1 = crop(image, box)
        out, A2 = resize(out, (c["size"], c["size"]))
        A = A2 @ A1
        if c["flip"] > 0 and rng.random() < c["flip"]:
            out, A3 = hflip(out)
            A = A3 @ A
        if c["brightness"] or c["contrast"] or c["gamma"]:
            out = illumination(out, rng, c["brightness"], c["contrast"], c["gamma"])
        return out, (None if K is None else adjust_intrinsics(K, A)), A
