"""Image loading with errors that name the file."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from relook.errors import DataError


def load_image(path: str | Path, bbox: tuple[float, float, float, float] | None = None) -> np.ndarray:
    """Read an image as RGB uint8 (H, W, 3); optionally crop to ``bbox`` = (x1, y1, x2, y2) in pixels.

    Corrupt or unreadable files raise ``DataError`` naming the file.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"{path}: cannot decode image ({e})") from None
    if bbox is not None:
        x1, y1, x2, y2 = (int(round(v)) for v in bbox)
        h, w = arr.shape[:2]
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
        if x2 <= x1 or y2 <= y1:
            raise DataError(f"{path}: bounding box {bbox} is empty inside a {w}x{h} image")
        arr = arr[y1:y2, x1:x2]
    return np.ascontiguousarray(arr)
