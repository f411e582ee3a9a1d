"""A folder of real photos as raw material for generated benchmarks (warped views, textured 3D objects).

Both generators need the same two things: a stable, sorted list of the photos under a folder (so a seed
picks the same photo on every machine) and a photo read upright and resized to a chosen long side.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from relook.errors import DataError
from relook.images import load_image

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")  # what the generators read as photos (compared lower-case)


def list_photos(folder: str | Path, what: str = "photo folder") -> list[Path]:
    """Every JPEG / PNG under ``folder`` (recursively, hidden files and folders skipped), sorted by relative path.

    The order is the same on every file system, so photo ``i`` is the same photo for a given folder.
    A missing folder or one without photos raises a one-line ``DataError`` naming it.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder ({what}); expected a folder of .jpg/.png photos")
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in PHOTO_EXTENSIONS:
                found.append(Path(dirpath) / name)
    if not found:
        raise DataError(f"{root}: no photos found ({what}); expected .jpg/.jpeg/.png files, at any depth")
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def load_photo(path: str | Path, long_side: int | None = None) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)``, upright (EXIF applied); with ``long_side`` resized so max(H, W) == long_side.

    Shrinking uses area averaging (no aliasing), enlarging bicubic interpolation; the aspect ratio is kept
    up to rounding of the short side (at least 1 pixel).
    """
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

    img = load_image(path)
    if long_side is None:
        return img
    h, w = img.shape[:2]
    s = long_side / max(h, w)
    size = (max(1, int(round(w * s))), max(1, int(round(h * s))))
    if size == (w, h):
        return img
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_CUBIC)
