"""CO3D-Retrieve (Sec. 4 of the epipolar paper, Bhalgat et al. CVPR 2023), built from a CO3Dv2 root.

* **Frames**: 5 per video, "each frame separated from the next by approximately 72 degrees of rotation
  around the object". The rotation around the object is measured from the camera poses
  (``rotation_about_object``): the object centre is the point closest to all optical axes, the axis is
  the normal of the plane through the camera centres (the mean camera "up" when the centres are close
  to a line), and a frame's angle is the azimuth of its camera centre about that axis, unwrapped along
  the video. ``select_frames`` then picks, over every possible first frame, the frames nearest to
  first + 72 k degrees (k = 0..4, circular distance) with the smallest total error. The paper does not
  say how it measured the angle; this is our reading.
* **Split**: object instances (one per video) are split into two disjoint seeded halves, per category
  (so every category is in both halves): train gets ``floor(n / 2)`` of a category's videos, test the
  rest. The paper gives only the totals (18,241 / 18,265 instances).
* **Protocol**: every test image queries all other test images; positives are the other frames of the
  same instance (``labelled_split``: label = instance id).
* **Masked variant**: the background (mask probability < 0.5) is set to black, written as JPEG under
  ``OUT/masked/``.

``OUT/manifest.json`` holds ``co3d_root`` and one record per image: ``image_id``, ``path`` (relative to
the CO3D root), ``masked_path`` (relative to OUT), ``instance``, ``category``, ``split``, ``frame_number``,
``angle_deg`` (rotation about the object from the first picked frame), ``image_size`` (H, W), ``K``,
``R``, ``t`` (OpenCV world-to-camera, see ``relook.datasets.co3d``).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from relook.datasets.base import RetrievalDataset, labelled_split, register_dataset
from relook.datasets.co3d import Co3dFrame, list_categories, read_category
from relook.datasets.synthetic import generate_synthetic
from relook.errors import ConfigError, DataError
from relook.io import atomic_path

NUM_FRAMES = 5  # frames per video (Sec. 4)
STEP_DEG = 72.0  # degrees between consecutive frames (Sec. 4)


def rotation_about_object(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Unwrapped rotation (degrees) of each camera about the object, relative to the first camera.

    R: (N, 3, 3), t: (N, 3) world-to-camera (OpenCV). Returns (N,) (empty in, empty out).
    """
    R, t = np.asarray(R, dtype=np.float64).reshape(-1, 3, 3), np.asarray(t, dtype=np.float64).reshape(-1, 3)
    n = len(R)
    if n < 2:
        return np.zeros(n)
    centers = -np.einsum("nji,nj->ni", R, t)  # C = -R^T t
    axes = R[:, 2, :]  # optical axes in world coordinates (third row of R)
    up_mean = -R[:, 1, :].mean(0)  # camera y points down
    # object centre: least squares point closest to every optical axis (small pull to the camera mean)
    P = np.eye(3)[None] - axes[:, :, None] * axes[:, None, :]
    A = P.sum(0) + 1e-6 * np.eye(3)
    b = np.einsum("nij,nj->i", P, centers) + 1e-6 * centers.mean(0)
    center = np.linalg.solve(A, b)
    _, s, vt = np.linalg.svd(centers - centers.mean(0))
    up = vt[2] if s[1] > 0.2 * s[0] else up_mean
    up = up / (np.linalg.norm(up) + 1e-12) * (1.0 if up @ up_mean >= 0 else -1.0)
    e1 = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    d = centers - center
    ang = np.unwrap(np.arctan2(d @ e2, d @ e1))
    return np.degrees(ang - ang[0])


def select_frames(angles_deg: np.ndarray, num: int = NUM_FRAMES, step: float = STEP_DEG) -> np.ndarray:
    """Indices of ``num`` frames whose angles are nearest to ``a_s + step * k`` (k = 0..num-1), best start s.

    Circular distance, distinct frames, total error minimised over the start frame s; the order follows k
    (in the video's direction of travel). Fewer frames than ``num`` -> all of them, in order.
    """
    a = np.asarray(angles_deg, dtype=np.float64).ravel()
    n = len(a)
    if n <= num:
        return np.arange(n)
    direction = 1.0 if a[-1] - a[0] >= 0 else -1.0
    best, best_cost = None, np.inf
    starts = np.unique(np.linspace(0, n - 1, min(n, 90)).round().astype(int))
    for s in starts:
        targets = a[s] + direction * step * np.arange(num)
        err = np.abs((a[None, :] - targets[:, None] + 180.0) % 360.0 - 180.0)  # (num, n)
        chosen, cost = [], 0.0
        for k in range(num):
            e = err[k].copy()
            e[chosen] = np.inf
            j = int(np.argmin(e))
            chosen.append(j)
            cost += e[j]
        if cost < best_cost - 1e-9:
            best, best_cost = chosen, cost
    return np.asarray(best, dtype=np.int64)


def split_instances(instances_by_category: dict[str, list[str]], seed: int = 0) -> dict[str, str]:
    """Seeded disjoint halves per category: ``{instance: "train" | "test"}`` (module docstring)."""
    split = {}
    for cat in sorted(instances_by_category):
        seqs = sorted(instances_by_category[cat])
        rng = np.random.default_rng([seed, zlib.crc32(cat.encode())])
        order = rng.permutation(len(seqs))
        for rank, i in enumerate(order):
            split[seqs[i]] = "train" if rank < len(seqs) // 2 else "test"
    return split


def _write_masked(frame: Co3dFrame, dst: Path) -> None:
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

    img = cv2.imread(str(frame.image_path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{frame.image_path}: image missing or not decodable")
    if frame.mask_path is None:
        raise DataError(f"{frame.image_path}: no mask annotated; the masked variant needs the foreground masks")
    mask = cv2.imread(str(frame.mask_path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise DataError(f"{frame.mask_path}: mask missing or not decodable")
    if mask.shape != img.shape[:2]:
        mask = cv2.resize(mask, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    img[mask < 128] = 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(dst), img, [cv2.IMWRITE_JPEG_QUALITY, 95])


def build_co3d_retrieve(
    co3d_root: str | Path,
    out_dir: str | Path,
    seed: int = 0,
    num_frames: int = NUM_FRAMES,
    step_deg: float = STEP_DEG,
    categories: Iterable[str] | None = None,
    masked: bool = True,
    progress: bool = True,
) -> Path:
    """Pick frames, split instances, write ``OUT/manifest.json`` (+ ``OUT/masked/``); returns ``out_dir``
    (what ``load_dataset("co3d_retrieve", root=...)`` reads)."""

    co3d_root, out_dir = Path(co3d_root).resolve(), Path(out_dir)
    cats = list(categories) if categories is not None else list_categories(co3d_root)
    sequences: dict[tuple[str, str], list[Co3dFrame]] = {}
    for cat in cats:
        by_seq, _ = read_category(co3d_root, cat)
        sequences.update({(cat, s): frs for s, frs in by_seq.items()})
    if not sequences:
        raise DataError(f"{co3d_root}: no annotated frames with viewpoints in categories {cats}")
    by_cat: dict[str, list[str]] = {}
    for cat, seq in sequences:
        by_cat.setdefault(cat, []).append(f"{cat}/{seq}")
    split = split_instances(by_cat, seed)
    records: list[dict[str, Any]] = []
    for (cat, seq), frs in tqdm(sorted(sequences.items()), desc="CO3D-Retrieve", disable=not progress):
        angles = rotation_about_object(np.stack([f.R for f in frs]), np.stack([f.t for f in frs]))
        picked = select_frames(angles, num_frames, step_deg)
        for j in picked:
            fr = frs[j]
            rel = fr.image_path.relative_to(co3d_root).as_posix()
            image_id = rel.rsplit(".", 1)[0].replace("/images/", "/")
            masked_rel = f"masked/{image_id}.jpg"
            if masked:
                _write_masked(fr, out_dir / masked_rel)
            records.append(
                {
                    "image_id": image_id,
                    "path": rel,
                    "masked_path": masked_rel if masked else None,
                    "instance": f"{cat}/{seq}",
                    "category": cat,
                    "split": split[f"{cat}/{seq}"],
                    "frame_number": fr.frame_number,
                    "angle_deg": float(angles[j] - angles[picked[0]]),
                    "image_size": list(fr.image_size),
                    "K": fr.K.tolist(),
                    "R": fr.R.tolist(),
                    "t": fr.t.tolist(),
                }
            )
    manifest = {
        "dataset": "co3d_retrieve",
        "co3d_root": str(co3d_root),
        "seed": seed,
        "num_frames": num_frames,
        "step_deg": step_deg,
        "frames": records,
    }
    path = out_dir / "manifest.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest))
    return out_dir


def read_manifest(root: str | Path) -> dict[str, Any]:
    path = Path(root)
    path = path / "manifest.json" if path.is_dir() else path
    if not path.exists():
        raise DataError(
            f"{path}: CO3D-Retrieve manifest not found; build it with `relook datasets "
            f"build-co3d-retrieve CO3D_ROOT OUT`"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf8"))
        frames = manifest["frames"]
        for r in frames:
            for key in ("image_id", "path", "instance", "category", "split", "K", "R", "t"):
                r[key]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{path}: not a CO3D-Retrieve manifest ({' '.join(repr(e).split())[:200]})") from None
    return manifest


@register_dataset("co3d_retrieve")
def load_co3d_retrieve(
    root: Path, split: str = "test", variant: str = "full", co3d_root: str | Path | None = None
) -> RetrievalDataset:
    """CO3D-Retrieve ``split`` ("train" | "test") as a labels-protocol dataset (label = instance).

    ``variant`` "full" reads the CO3D images (from ``co3d_root``, default: the one recorded in the
    manifest), "masked" the masked copies under ``root``. ``info["cameras"][image_id]`` = K, R, t.
    """
    if split not in ("train", "test"):
        raise ConfigError(f"co3d_retrieve: split must be 'train' or 'test', got {split!r}")
    if variant not in ("full", "masked"):
        raise ConfigError(f"co3d_retrieve: variant must be 'full' or 'masked', got {variant!r}")
    root = Path(root)
    root = root.parent if root.is_file() else root
    manifest = read_manifest(root)
    base = Path(co3d_root) if co3d_root is not None else Path(manifest["co3d_root"])
    frames = [r for r in manifest["frames"] if r["split"] == split]
    if variant == "masked" and any(not r.get("masked_path") for r in frames):
        raise DataError(f"{root}: built without the masked variant; rebuild with masked=True")
    items = [
        (r["image_id"], (root / r["masked_path"]) if variant == "masked" else base / r["path"], None) for r in frames
    ]
    instances = sorted({r["instance"] for r in frames})
    label_of = {s: i for i, s in enumerate(instances)}
    cameras = {
        r["image_id"]: {"K": np.asarray(r["K"]), "R": np.asarray(r["R"]), "t": np.asarray(r["t"])} for r in frames
    }
    info = {
        "cameras": cameras,
        "instances": instances,
        "split": split,
        "variant": variant,
        "categories": {r["image_id"]: r["category"] for r in frames},
        "instance_of": {r["image_id"]: r["instance"] for r in frames},
        "synthetic": (base / "synthetic.json").exists(),
    }  # built from relook's generator, not CO3D photos
    return labelled_split("co3d_retrieve", root, items, [label_of[r["instance"]] for r in frames], info)


def synthetic_co3d_retrieve(
    work: str | Path,
    num_instances: int = 60,
    num_views: int = 5,
    image_size: int = 224,
    seed: int = 0,
    masked: bool = True,
    textures: str | Path | None = None,
    progress: bool = False,
) -> Path:
    """The synthetic benchmark as CO3D-Retrieve: ``work/synthetic`` (CO3Dv2 layout) and
    ``work/co3d_retrieve`` (returned); each is made only when missing, so reruns are free.
    ``textures``: a folder of photos the objects wear (``generate_synthetic``); None: procedural textures."""
    work = Path(work)
    synth, retrieve = work / "synthetic", work / "co3d_retrieve"
    if not (synth / "synthetic.json").exists():
        generate_synthetic(
            synth,
            num_instances=num_instances,
            num_views=num_views,
            image_size=image_size,
            seed=seed,
            textures=textures,
            progress=progress,
        )
    if not (retrieve / "manifest.json").exists():
        build_co3d_retrieve(synth, retrieve, seed=seed, masked=masked, progress=progress)
    return retrieve
