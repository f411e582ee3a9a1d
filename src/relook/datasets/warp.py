"""Warped-photo benchmark: every real photo is one group, its views are random homographies with exact H.

Why: real image statistics (texture, colour, clutter) with exact ground-truth correspondences for every
positive pair, from nothing but a folder of photos.

For photo ``i`` (``list_photos`` order) all randomness comes from ``np.random.default_rng([seed, i])``:

* **View 0** is the photo, resized so its long side is ``size``.
* **View k >= 1**: three geometric steps, each an explicit 3x3 matrix, then occluders and photometry:

  1. *Geometry*, in coordinates centred on view 0 (``c``): ``G = T(c) T(shift) S(scale) R(rotation)
     P(tilt) T(-c)``; ``P`` is the homography ``K R_tilt K^-1`` of the photo plane turned by ``tilt``
     about an in-plane axis (focal length = view 0's long side), re-centred so the centre stays put.
     ``G`` maps view 0 into a frame of view 0's size.
  2. *Resize*: the frame is scaled so that the crop of step 3 gets ``size`` pixels on its long side:
     ``x' = r (x + 0.5) - 0.5`` per axis (OpenCV's resize; pixel centres at integer coordinates).
  3. *Crop*: a random rectangle keeping 80-100 % of each side of the frame: ``T(-x0, -y0)``.
  4. *Occluders* (``occluders=True``): 1-3 filled rectangles or ellipses, 2-8 % of the view each.
  5. *Photometric changes* (``photometric=True``): contrast, brightness, gamma, Gaussian blur (half of
     the views) and the JPEG quality of the file. Off (and occluders off), a view is
     ``warpPerspective(view 0, H_0_k)`` up to the file's compression (lossless with ``image_format="png"``).

  Pixels of steps 1-3: one ``cv2.warpPerspective`` of view 0 by ``Resize @ G`` (a single resampling, bilinear),
  then the crop is sliced out of the array. ``H_0_k = Crop @ Resize @ G`` maps view-0 pixel
  coordinates to view-k pixel coordinates, and ``H_a_b = H_0_b @ inv(H_0_a)`` relates any two views of
  a group. Draws whose view keeps less than 60 % of the photo, or shows less than 70 % photo, are
  redrawn (``relook.datasets.warp_geometry``, which holds all the matrices).

Layout (``OUT``): ``<split>/<group>/<k>.<ext>`` (k = 0 .. views-1), ``<split>/<group>/H_0_<k>.txt``
(3x3, k >= 1), ``<split>/<group>/meta.json`` (the photo and every drawn parameter; written last, it marks
the group finished, so a rerun skips it), ``groups.csv`` (``image,group,split``, images relative to OUT:
read it with the ``folder`` dataset, ``csv: groups.csv``, or the ``warp`` dataset) and ``warp.json``
(the settings; a rerun with other settings into the same OUT is refused). Groups are split by photo,
never by view: a seeded permutation puts ``round(test_fraction * n)`` photos in ``test``.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import re
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from relook.datasets.base import RetrievalDataset, register_dataset
from relook.datasets.folder import load_folder
from relook.datasets.photos import list_photos, load_photo
from relook.datasets.warp_geometry import ViewGeometry, draw_geometry
from relook.errors import ConfigError, DataError
from relook.io import atomic_path

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_SPLIT_STREAM = 1_000_003  # tag of the split's random stream, apart from the per-photo streams [seed, i]


# ----------------------------------------------------------------------------------------------- pixels
def render_view(view0: np.ndarray, geo: ViewGeometry, fill: tuple[int, int, int]) -> np.ndarray:
    """Steps 1-3 as image operations: one ``cv2.warpPerspective`` of view 0 by ``Resize @ G`` into the
    resized frame (outside the photo: ``fill``), then the crop sliced out. RGB uint8 of size ``geo.out_wh``."""
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

    frame = cv2.warpPerspective(
        view0,
        geo.render_matrix(),
        geo.render_wh,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=tuple(int(v) for v in fill),
    )
    x0, y0, cw, ch = geo.crop
    return np.ascontiguousarray(frame[y0 : y0 + ch, x0 : x0 + cw])


def draw_occluders(rng: np.random.Generator, img: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """1-3 filled rectangles / rotated ellipses of random colour, each 2-8 % of the image area."""
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

    img = img.copy()
    h, w = img.shape[:2]
    shapes = []
    for _ in range(int(rng.integers(1, 4))):
        area = rng.uniform(0.02, 0.08) * w * h
        aspect = np.exp(rng.uniform(np.log(0.4), np.log(2.5)))
        sw, sh = np.sqrt(area * aspect), np.sqrt(area / aspect)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            p, q = (int(cx - sw / 2), int(cy - sh / 2)), (int(cx + sw / 2), int(cy + sh / 2))
            cv2.rectangle(img, p, q, colour, -1)
            shapes.append({"kind": "rectangle", "p1": list(p), "p2": list(q), "rgb": list(colour)})
        else:
            # an ellipse of semi-axes (a, b) has area pi a b: scale the box so the area is as drawn
            axes = (max(1, int(sw / np.sqrt(np.pi))), max(1, int(sh / np.sqrt(np.pi))))
            angle = float(rng.uniform(0, 180))
            cv2.ellipse(img, (int(cx), int(cy)), axes, angle, 0, 360, colour, -1, cv2.LINE_AA)
            shapes.append(
                {
                    "kind": "ellipse",
                    "centre": [int(cx), int(cy)],
                    "axes": list(axes),
                    "angle": angle,
                    "rgb": list(colour),
                }
            )
    return img, shapes


def draw_photometric(rng: np.random.Generator) -> dict:
    """Contrast (x0.7-1.3 about the mean), brightness (+-25 levels), gamma (1/1.5-1.5), blur sigma (0 for
    half of the views, else 0.4-1.5 px) and JPEG quality (55-95)."""
    return {
        "contrast": float(rng.uniform(0.7, 1.3)),
        "brightness": float(rng.uniform(-25, 25)),
        "gamma": float(np.exp(rng.uniform(-np.log(1.5), np.log(1.5)))),
        "blur_sigma": float(rng.uniform(0.4, 1.5)) if rng.random() < 0.5 else 0.0,
        "jpeg_quality": int(rng.integers(55, 96)),
    }


def apply_photometric(img: np.ndarray, p: dict) -> np.ndarray:
    """``p`` (from ``draw_photometric``) applied to RGB uint8, except the JPEG quality (used when writing)."""
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

    x = img.astype(np.float32)
    x = (x - x.mean()) * p["contrast"] + x.mean() + p["brightness"]
    x = 255.0 * (np.clip(x, 0, 255) / 255.0) ** p["gamma"]
    if p["blur_sigma"] > 0:
        x = cv2.GaussianBlur(x, (0, 0), p["blur_sigma"])
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def write_image(path: Path, rgb: np.ndarray, quality: int = 95) -> None:
    """RGB uint8 -> ``path`` (JPEG at ``quality`` or PNG by suffix), via a temporary file."""
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if path.suffix == ".jpg" else []
    ok, buf = cv2.imencode(path.suffix, np.ascontiguousarray(rgb[..., ::-1]), params)
    if not ok:
        raise DataError(f"{path}: OpenCV could not encode the image")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def write_homography(path: Path, H: np.ndarray) -> None:
    """3x3 text, full double precision (``%.17g`` reads back bit for bit)."""
    with atomic_path(path) as tmp:
        np.savetxt(tmp, np.asarray(H, dtype=np.float64).reshape(3, 3), fmt="%.17g")


def read_homography(path: str | Path) -> np.ndarray:
    """A 3x3 homography text file; ``DataError`` naming the file if it is not one."""
    path = Path(path)
    try:
        H = np.loadtxt(path, dtype=np.float64)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable 3x3 homography ({e})") from None
    if H.shape != (3, 3) or not np.isfinite(H).all():
        raise DataError(f"{path}: expected a finite 3x3 homography, found shape {H.shape}")
    return H


# ----------------------------------------------------------------------------------------------- benchmark
def group_names(photos: list[Path], root: Path) -> list[str]:
    """One folder-safe group name per photo: its path under ``root`` without suffix, ``/`` -> ``__``
    (the suffix is appended where two photos would otherwise share a name)."""

    def clean(s: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", s)

    base = [clean(p.relative_to(root).with_suffix("").as_posix().replace("/", "__")) for p in photos]
    counts = {b: base.count(b) for b in base}
    return [b if counts[b] == 1 else f"{b}_{p.suffix.lower().lstrip('.')}" for b, p in zip(base, photos)]


def split_photos(n: int, seed: int, test_fraction: float) -> list[str]:
    """``"train"`` / ``"test"`` per photo: a seeded permutation, the first ``round(test_fraction * n)`` test
    (at least one of each when ``n >= 2`` and the fraction is strictly between 0 and 1)."""
    n_test = int(round(test_fraction * n))
    if n >= 2 and 0 < test_fraction < 1:
        n_test = min(max(n_test, 1), n - 1)
    order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(n)
    splits = ["train"] * n
    for i in order[:n_test]:
        splits[int(i)] = "test"
    return splits


def _make_group(photo: Path, index: int, group: str, split: str, out: Path, conf: dict) -> list[str]:
    """Write one photo's views, homographies and ``meta.json``; returns the image paths (relative to OUT)."""
    rng = np.random.default_rng([conf["seed"], index])
    ext, size = conf["format"], conf["size"]
    folder = out / split / group
    folder.mkdir(parents=True, exist_ok=True)
    view0 = load_photo(photo, size)
    h0, w0 = view0.shape[:2]
    images = [f"{split}/{group}/0.{ext}"]
    write_image(out / images[0], view0, 95)
    views = []
    for k in range(1, conf["views"]):
        geo = draw_geometry(rng, (w0, h0), size)
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        img = render_view(view0, geo, fill)
        shapes, photometric, quality = [], None, 95
        if conf["occluders"]:
            img, shapes = draw_occluders(rng, img)
        if conf["photometric"]:
            photometric = draw_photometric(rng)
            img = apply_photometric(img, photometric)
            quality = photometric["jpeg_quality"]
            if ext == "png":  # the JPEG loss is part of the change, whatever the file format
                # lazy (start-up): loads cv2; relook's entry points import this module
                import cv2

                ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
                img = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
        H = geo.homography()
        images.append(f"{split}/{group}/{k}.{ext}")
        write_image(out / images[-1], img, quality)
        write_homography(folder / f"H_0_{k}.txt", H)
        views.append(
            {
                "k": k,
                "image": images[-1],
                "H_0_k": H.tolist(),
                "geometry": asdict(geo),
                "fill_rgb": list(fill),
                "occluders": shapes,
                "photometric": photometric,
            }
        )
    meta = {
        "photo": str(photo),
        "photo_index": index,
        "group": group,
        "split": split,
        "view0_wh": [w0, h0],
        "images": images,
        "views": views,
    }
    with atomic_path(folder / "meta.json") as tmp:
        tmp.write_text(json.dumps(meta, indent=1))
    return images


def generate_warp(
    photos: str | Path,
    out: str | Path,
    views: int = 5,
    seed: int = 0,
    size: int = 480,
    test_fraction: float = 0.3,
    occluders: bool = True,
    photometric: bool = True,
    image_format: str = "jpg",
    progress: bool = False,
) -> Path:
    """Write the warped-photo benchmark of the photos under ``photos`` into ``out`` (module docstring).

    ``views``: images per photo (view 0 + ``views - 1`` warps); ``size``: long side of every view;
    ``image_format``: "jpg" or "png" (lossless files, for checking the geometry). Deterministic from
    ``seed`` (byte-identical files); resumable (finished groups are skipped). Returns ``out``.
    """

    if views < 2:
        raise ConfigError(f"warp: views must be >= 2 (view 0 and at least one warped view), got {views}")
    if size < 32:
        raise ConfigError(f"warp: size must be >= 32 pixels, got {size}")
    if not 0.0 <= test_fraction <= 1.0:
        raise ConfigError(f"warp: test_fraction must be in [0, 1], got {test_fraction}")
    if image_format not in ("jpg", "png"):
        raise ConfigError(f"warp: image_format must be 'jpg' or 'png', got {image_format!r}")
    root = Path(photos)
    files = list_photos(root, "warp PHOTOS")
    out = Path(out)
    names, splits = group_names(files, root), split_photos(len(files), seed, test_fraction)
    conf = {
        "generator": "relook.datasets.warp.generate_warp",
        "version": FORMAT_VERSION,
        "views": views,
        "seed": seed,
        "size": size,
        "test_fraction": test_fraction,
        "occluders": occluders,
        "photometric": photometric,
        "format": image_format,
        "photos": [p.relative_to(root).as_posix() for p in files],
    }
    settings = out / "warp.json"
    if settings.exists():
        try:
            old = json.loads(settings.read_text())
        except ValueError:
            old = None
        if not isinstance(old, dict) or {k: old.get(k) for k in conf} != conf:
            raise DataError(
                f"{out}: holds a warp benchmark made with other settings or photos ({settings}); "
                f"write to a new folder or delete it"
            )
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(settings) as tmp:
        tmp.write_text(json.dumps({**conf, "photos_root": str(root)}, indent=1))
    t0, made, skipped, unreadable = time.time(), 0, 0, []
    rows: list[tuple[str, str, str]] = []
    for i, (photo, group, split) in enumerate(
        tqdm(list(zip(files, names, splits)), desc="warp photos", disable=not progress)
    ):
        meta_path = out / split / group / "meta.json"
        if meta_path.exists():
            images = json.loads(meta_path.read_text())["images"]
            skipped += 1
        else:
            try:
                images = _make_group(photo, i, group, split, out, conf)
            except DataError as e:
                unreadable.append(photo.relative_to(root).as_posix())
                log.debug("%s", e)
                continue
            made += 1
        rows += [(img, group, split) for img in images]
    if unreadable:
        log.warning("warp: skipped %d unreadable photo(s): %s", len(unreadable), ", ".join(unreadable[:8]))
    if not rows:
        raise DataError(f"{root}: none of the {len(files)} photo(s) could be decoded (e.g. {unreadable[0]})")
    with atomic_path(out / "groups.csv") as tmp, open(tmp, "w", newline="", encoding="utf8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["image", "group", "split"])
        writer.writerows(rows)
    log.info("warp: %d groups made, %d already there, %.1f s", made, skipped, time.time() - t0)
    return out


# ----------------------------------------------------------------------------------------------- reader
def view_homography(root: str | Path, image_a: str, image_b: str) -> np.ndarray:
    """``H_a_b`` between two views of one group (image ids as in ``groups.csv``): ``H_0_b @ inv(H_0_a)``."""
    root = Path(root)
    pa, pb = Path(image_a), Path(image_b)
    if pa.parent != pb.parent:
        raise DataError(f"warp: {image_a} and {image_b} are views of different photos; no homography relates them")

    def h0(p: Path) -> np.ndarray:
        k = p.stem
        return np.eye(3) if k == "0" else read_homography(root / p.parent / f"H_0_{k}.txt")

    H = h0(pb) @ np.linalg.inv(h0(pa))
    return H / H[2, 2]


@register_dataset("warp")
def load_warp(root: Path, split: str | None = "test", check: bool = True) -> RetrievalDataset:
    """The benchmark ``generate_warp`` wrote in ``root``: the ``folder`` dataset on ``root/groups.csv``
    (``split``: "test", "train" or None for both); ``info["homography"](a, b)`` gives ``H_a_b``."""
    root = Path(root)
    if not (root / "groups.csv").is_file():
        raise DataError(f"{root}: no groups.csv; make the benchmark with `relook datasets warp PHOTOS {root}`")
    ds = load_folder(root, csv="groups.csv", split=split, check=check)
    ds.name = "warp"
    ds.info["homography"] = functools.partial(view_homography, root)
    return ds
