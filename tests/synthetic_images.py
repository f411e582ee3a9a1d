"""Textured test images made with numpy/OpenCV (no files, no weights) and known homographies."""

from __future__ import annotations

import cv2
import numpy as np


def textured_image(size: int = 320, seed: int = 0, shapes: int = 120) -> np.ndarray:
    """RGB uint8 (size, size, 3): random rectangles, circles and lines on a smooth noisy background."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (size, size, 3), dtype=np.uint8), (0, 0), 3)
    for _ in range(shapes):
        color = tuple(int(v) for v in rng.integers(0, 255, 3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(4, size // 10))
        kind = rng.integers(3)
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + r, y + int(rng.integers(4, size // 10))), color, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), r, color, -1)
        else:
            cv2.line(img, (x, y), (x + int(rng.integers(-r, r)), y + r), color, 2)
    return img


def known_homography(size: int = 320, seed: int = 0, strength: float = 0.12) -> np.ndarray:
    """A random, moderate (3, 3) homography mapping the image roughly onto itself."""
    rng = np.random.default_rng(seed)
    src = np.float32([[0, 0], [size, 0], [size, size], [0, size]])
    dst = src + rng.uniform(-strength, strength, src.shape).astype(np.float32) * size
    return cv2.getPerspectiveTransform(src, dst).astype(np.float64)


def apply_homography(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map (N, 2) points by the (3, 3) homography ``h``."""
    p = np.concatenate([pts, np.ones((len(pts), 1))], 1) @ h.T
    return p[:, :2] / p[:, 2:3]


def huge_png(path, width: int = 20_000, height: int = 10_000):
    """A PNG whose header announces ``width`` x ``height`` pixels (200 megapixels by default, past Pillow's
    decompression-bomb error at ~179) with almost no data: what a decoder sees first of a huge photo."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    return path
