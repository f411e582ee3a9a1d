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
* **Huge images** (one policy for queries, gallery and training): at most ``MAX_PIXELS`` pixels are decoded.
  A larger JPEG is decoded at 1/2, 1/4 or 1/8 scale (the JPEG decoder's own reduced decoding, which never
  holds the full image), with one warning line, and a ``bbox`` is scaled with it; any other larger file is
  refused with a ``DataError`` giving its size and the limit. Pillow's own decompression-bomb check is
  replaced by this one, so its error never surfaces.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from relook.errors import DataError

log = logging.getLogger(__name__)

#: most pixels relook decodes from one image (a 12,000 x 8,300 photo); larger JPEGs are decoded reduced
MAX_PIXELS = 100_000_000
_pillow_limit = threading.Lock()
_warned: set[str] = set()

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
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

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


@contextlib.contextmanager
def open_image(path: Path) -> Iterator:
    """``PIL.Image.open`` with Pillow's decompression-bomb check off (``fit_pixel_limit`` replaces it):
    opening reads only the header, so no pixel is decoded here."""

    with _pillow_limit:
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    with im:
        yield im


def fit_pixel_limit(im, path: Path, quiet: bool = False) -> float:
    """Make the opened image ``im`` decode to at most ``MAX_PIXELS`` pixels; returns the scale factor
    (1 when it fits; 2, 4 or 8 for a JPEG decoded reduced). ``DataError`` naming the file, its size and the
    limit when it cannot (not a JPEG, or over 64 x the limit)."""
    w, h = im.size
    if w * h <= MAX_PIXELS:
        return 1.0
    size = f"{w}x{h} pixels ({w * h / 1e6:.0f} megapixels)"
    scale = next((s for s in (2, 4, 8) if w * h / s**2 <= MAX_PIXELS), None)
    if im.format != "JPEG" or scale is None:
        kind = "only JPEGs are decoded reduced" if im.format != "JPEG" else "more than 1/8 scale would be needed"
        raise DataError(
            f"{path}: {size}, over relook's limit of {MAX_PIXELS / 1e6:.0f} megapixels (relook.images.MAX_PIXELS; "
            f"{kind}); downscale the file first"
        )
    im.draft(im.mode, (math.ceil(w / scale), math.ceil(h / scale)))
    if not quiet and str(path) not in _warned:
        _warned.add(str(path))
        log.warning(
            f"{path}: {size}, over relook's limit of {MAX_PIXELS / 1e6:.0f} megapixels: decoded at "
            f"1/{scale} scale ({im.size[0]}x{im.size[1]})"
        )
    return w / im.size[0]


def image_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be loaded by ``load_image`` (a short reason), or None when it decodes. Reads the
    whole file (a JPEG at reduced scale), under the same pixel limit as ``load_image``."""
    path = Path(path)
    try:
        with open_image(path) as im:
            if fit_pixel_limit(im, path, quiet=True) == 1.0 and im.format == "JPEG":
                im.draft("RGB", (64, 64))
            im.load()
    except DataError as e:
        return str(e).removeprefix(f"{path}: ")
    except Exception as e:  # Pillow raises many kinds on a damaged file
        # lazy: optional dependency (absent on some installs)
        from PIL import UnidentifiedImageError

        if isinstance(e, UnidentifiedImageError):
            return "not an image format Pillow reads"
        reason = " ".join(str(e).replace(repr(str(path)), "").replace(str(path), "").split())[:80]
        return f"cannot decode: {reason or type(e).__name__}"
    return None


def load_image(
    path: str | Path, bbox: tuple[float, float, float, float] | None = None, exif_orientation: bool = True
) -> np.ndarray:
    """Read an image as RGB uint8 (H, W, 3), upright (unless ``exif_orientation=False``); optionally crop to ``bbox`` = (x1, y1, x2, y2) in pixels.

    Conversions and the pixel limit as in the module docstring (a ``bbox`` is in the file's pixels, scaled
    with an image decoded reduced). Corrupt or unreadable files raise ``DataError`` naming the file.
    """

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: image not found")
    try:
        with open_image(path) as im:
            scale = fit_pixel_limit(im, path)
            if _is_sixteen_bit_colour(im):
                arr = _read_sixteen_bit_colour(path, im, exif_orientation)
            else:
                im.load()
                arr = _to_rgb(ImageOps.exif_transpose(im) if exif_orientation else im)
    except DataError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: cannot decode image ({e})") from None
    if bbox is not None:
        x1, y1, x2, y2 = (int(round(v / scale)) for v in bbox)
        h, w = arr.shape[:2]
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
        if x2 <= x1 or y2 <= y1:
            raise DataError(f"{path}: bounding box {bbox} is empty inside a {w}x{h} image")
        arr = arr[y1:y2, x1:x2]
    return np.ascontiguousarray(arr)
