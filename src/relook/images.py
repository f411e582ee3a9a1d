"""Image loading with errors that name the file.

Every image comes back as RGB uint8 (H, W, 3), the way it is meant to be seen:

* **EXIF orientation** is applied (``PIL.ImageOps.exif_transpose``), so a portrait photo stored sideways
  with orientation tag 6 comes back upright; a ``bbox`` is in the coordinates of the upright image.
  ``exif_orientation=False`` keeps the stored pixel grid: benchmark datasets whose annotations (query
  boxes, cameras, homographies) are in stored pixels and whose official code reads stored pixels
  (revisitop, SfM-120k, GLDv2, SOP, CUB, Cars, CO3D) load that way (``RetrievalDataset.exif_orientation``).
* **16-bit** images (PNG / TIFF, grey ``I;16`` or RGB(A) with 16 bits per channel) are scaled to 8 bits
  by ``round(v / 257)`` (65535 -> 255), never clipped at 255 and never truncated to the high byte.
  Integer ``I`` images (32-bit) are read as 16-bit values clipped to [0, 65535].
* **CMYK** -> RGB by ``R = (255 - C)(255 - K) / 255`` (and likewise G, B), Pillow's conversion; an
  embedded ICC profile is not applied.
* **Palette, grey, grey+alpha, RGBA**: converted to RGB; alpha is dropped (the colour under it is kept).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from relook.errors import DataError

#: file name endings read as images (compared lower-case); other files in an image folder are ignored
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".gif")

_SIXTEEN_BIT_GREY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def is_image_file(path: str | Path) -> bool:
    """True for a visible file whose name ends in one of ``IMAGE_EXTENSIONS``."""
    path = Path(path)
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def to_uint8(values: np.ndarray) -> np.ndarray:
    """16-bit values (any integer dtype, clipped to [0, 65535]) -> uint8 by ``round(v / 257)``."""
    v = np.clip(np.asarray(values, dtype=np.int64), 0, 65535)
    return ((v + 128) // 257).astype(np.uint8)


def _is_sixteen_bit_colour(im) -> bool:
    """RGB(A) stored with 16 bits per channel: Pillow would keep only the high byte of each value."""
    return im.mode in ("RGB", "RGBA") and any(";16" in str(getattr(t, "args", "")) for t in im.tile)


def _read_sixteen_bit_colour(path: Path, im, exif_orientation: bool = True) -> np.ndarray:
    """Full-precision RGB of a 16-bit-per-channel file (OpenCV reads what Pillow cannot), upright."""
    import cv2
    from PIL import Image

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # BGR(A), EXIF orientation not applied
    if raw is None or raw.ndim != 3 or raw.shape[2] < 3:
        raise DataError(f"{path}: cannot decode 16-bit colour image")
    rgb = Image.fromarray(to_uint8(raw[..., 2::-1]))
    method = {
        2: Image.Transpose.FLIP_LEFT_RIGHT,
        3: Image.Transpose.ROTATE_180,
        4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE,
        6: Image.Transpose.ROTATE_270,
        7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_90,
    }.get(im.getexif().get(0x0112, 1) if exif_orientation else 1)  # EXIF table
    return np.asarray(rgb.transpose(method) if method is not None else rgb)


def _to_rgb(im) -> np.ndarray:
    """A loaded, upright Pillow image -> RGB uint8 (module docstring)."""
    if im.mode in _SIXTEEN_BIT_GREY:
        grey = to_uint8(np.asarray(im))
        return np.repeat(grey[..., None], 3, axis=2)
    return np.asarray(im.convert("RGB"))


def load_image(
    path: str | Path, bbox: tuple[float, float, float, float] | None = None, exif_orientation: bool = True
) -> np.ndarray:
    """Read an image as RGB uint8 (H, W, 3), upright (unless ``exif_orientation=False``); optionally crop to ``bbox`` = (x1, y1, x2, y2) in pixels.

    Conversions as in the module docstring. Corrupt or unreadable files raise ``DataError`` naming the file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            if _is_sixteen_bit_colour(im):
                arr = _read_sixteen_bit_colour(path, im, exif_orientation)
            else:
                im.load()
                arr = _to_rgb(ImageOps.exif_transpose(im) if exif_orientation else im)
    except DataError:
        raise
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
