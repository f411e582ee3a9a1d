"""Pixel maps: the 3x3 matrices that say where an image transform moves each pixel, and what follows.

One convention everywhere (OpenCV's): pixel centres at integer coordinates, points ``(x, y)``, a map ``A``
sends an old pixel to a new one (``x' ~ A x``). A crop by (x0, y0) is ``translation(-x0, -y0)``; a resize
by r per axis maps ``x -> r (x + 0.5) - 0.5`` (``resize_matrix``: pixel areas onto pixel areas, as
``cv2.resize``); a left-right flip sends column u to ``W - 1 - u``. Intrinsics follow as ``K' = A K`` and a
fundamental matrix between two transformed images as ``F' = A2^-T F A1^-1``: the crop adjustment of the
epipolar paper (Sec. 5.2: "RandomCrop ... shifts the principal point location ... we adjust the
Fundamental Matrix"). Pure functions of numbers: the image operations that report these maps live in
``relook.datasets.transforms`` and ``relook.datasets.warp``.
"""

from __future__ import annotations

import numpy as np

from relook.errors import ConfigError


def translation(tx: float, ty: float) -> np.ndarray:
    """3x3 homography ``x -> x + (tx, ty)`` (a crop by (x0, y0) is ``translation(-x0, -y0)``)."""
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])


def scaling(sx: float, sy: float | None = None) -> np.ndarray:
    """3x3 homography ``(x, y) -> (sx x, sy y)`` about the origin (``sy`` defaults to ``sx``)."""
    return np.diag([sx, sx if sy is None else sy, 1.0])


def resize_matrix(src_wh: tuple[int, int], dst_wh: tuple[int, int]) -> np.ndarray:
    """The map ``cv2.resize`` applies from ``src_wh`` to ``dst_wh`` pixels: ``x' = r (x + 0.5) - 0.5``,
    ``r = dst / src`` per axis (pixel centres at integer coordinates)."""
    rx, ry = dst_wh[0] / src_wh[0], dst_wh[1] / src_wh[1]
    return np.array([[rx, 0.0, 0.5 * rx - 0.5], [0.0, ry, 0.5 * ry - 0.5], [0.0, 0.0, 1.0]])


def hflip_matrix(width: int) -> np.ndarray:
    """The map of a left-right mirror of an image ``width`` pixels wide: column u goes to ``W - 1 - u``."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def center_crop_box(hw: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    """Central ``size x size`` box (x0, y0, x1, y1) of an image of ``hw`` (torchvision CenterCrop rounding)."""
    h, w = hw
    if size > h or size > w:
        raise ConfigError(f"centre crop {size} does not fit a {w}x{h} image")
    y0, x0 = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return x0, y0, x0 + size, y0 + size


def eval_transform_map(hw: tuple[int, int], resize_to: int | None, size: int) -> np.ndarray:
    """Pixel map (3, 3) of ``relook.datasets.transforms.eval_transform`` for an image of ``hw`` = (H, W),
    without touching pixels: resize to ``resize_to x resize_to``, then the central ``size x size`` crop
    (``resize_to=None``: a plain resize to ``size x size``)."""
    h, w = hw
    if resize_to is None:
        return resize_matrix((w, h), (size, size))
    x0, y0, _, _ = center_crop_box((resize_to, resize_to), size)
    return translation(-x0, -y0) @ resize_matrix((w, h), (resize_to, resize_to))


def adjust_intrinsics(K: np.ndarray, A: np.ndarray) -> np.ndarray:
    """``K' = A @ K`` for the pixel map ``A`` of a crop / resize (or their product)."""
    return np.asarray(A, dtype=np.float64) @ np.asarray(K, dtype=np.float64)


def adjust_fundamental(F: np.ndarray, A1: np.ndarray, A2: np.ndarray) -> np.ndarray:
    """F for transformed images: ``x2'^T F' x1' = 0`` with ``x' = A x``, i.e. ``F' = A2^-T F A1^-1``."""
    return np.linalg.inv(A2).T @ np.asarray(F) @ np.linalg.inv(A1)


def apply_h(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Points ``(N, 2)`` mapped by the homography ``H`` (3, 3) -> ``(N, 2)``."""
    p = np.c_[xy, np.ones(len(xy))] @ np.asarray(H, dtype=np.float64).T
    return p[:, :2] / p[:, 2:]
