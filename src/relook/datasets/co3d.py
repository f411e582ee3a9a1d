"""CO3Dv2 reader: per-category ``frame_annotations.jgz`` / ``sequence_annotations.jgz`` and the cameras.

Official layout (Common Objects in 3D v2)::

    ROOT/<category>/frame_annotations.jgz      gzip JSON list of FrameAnnotation dicts
    ROOT/<category>/sequence_annotations.jgz   gzip JSON list of SequenceAnnotation dicts
    ROOT/<category>/<sequence>/images/frameXXXXXX.jpg, masks/frameXXXXXX.png, depths/..., pointcloud.ply

A frame annotation holds ``sequence_name``, ``frame_number``, ``frame_timestamp``, ``image`` {``path``
relative to ROOT, ``size`` = (H, W)}, ``mask`` {``path``, ``mass``}, ``depth`` {``path``,
``scale_adjustment``, ``mask_path``} and ``viewpoint`` {``R`` (3x3), ``T`` (3,), ``focal_length`` (2,),
``principal_point`` (2,), ``intrinsics_format``}. A sequence annotation holds ``sequence_name``,
``category``, ``video``, ``point_cloud`` {``path``, ``quality_score``, ``n_points``} and
``viewpoint_quality_score``.

Camera conventions (the one relook uses everywhere, and the one the file uses):

* **relook / OpenCV** (what ``viewpoint_to_camera`` returns): world-to-camera ``x_cam = R @ X + t`` with
  the camera looking down +z, x to the right, y down; pixel ``u ~ K @ x_cam`` with the *centre* of the
  top-left pixel at (0, 0).
* **CO3D / PyTorch3D** (what the file stores): row vectors, ``X_cam = X_world @ R_p3d + T_p3d``, camera x
  to the left and y up (so ``S = diag(-1, -1, 1)`` maps one camera frame to the other). Hence
  ``R = S @ R_p3d.T`` and ``t = S @ T_p3d``. Intrinsics are in normalised device coordinates (NDC) with +x
  to the left and +y up: ``intrinsics_format = "ndc_norm_image_bounds"`` (legacy: the image spans [-1, 1]
  on both axes, scale ``s = (W/2, H/2)``) or ``"ndc_isotropic"`` (the shorter side spans [-1, 1], scale
  ``s = min(W, H)/2`` on both axes). PyTorch3D's screen space puts the *edge* of the image at 0 (pixel i
  has its centre at i + 0.5), so ``f_px = f_ndc * s`` and ``c_px = (W/2, H/2) - c_ndc * s - 0.5``; the
  -0.5 moves from PyTorch3D's edge-at-0 pixels to OpenCV's centre-at-0 pixels.

``camera_to_viewpoint`` is the exact inverse, which the synthetic generator uses to write its cameras.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from relook.errors import DataError
from relook.io import atomic_path

INTRINSICS_FORMATS = ("ndc_norm_image_bounds", "ndc_isotropic")
_FLIP = np.diag([-1.0, -1.0, 1.0])  # PyTorch3D camera frame <-> OpenCV camera frame


# ----------------------------------------------------------------------------------------------- cameras
def _ndc_scale(image_size_hw: Sequence[int], intrinsics_format: str) -> np.ndarray:
    h, w = float(image_size_hw[0]), float(image_size_hw[1])
    if intrinsics_format == "ndc_norm_image_bounds":
        return np.array([w / 2.0, h / 2.0])
    if intrinsics_format == "ndc_isotropic":
        return np.full(2, min(w, h) / 2.0)
    raise DataError(f"unknown intrinsics_format {intrinsics_format!r}; known: {', '.join(INTRINSICS_FORMATS)}")


def viewpoint_to_camera(
    viewpoint: Mapping[str, Any], image_size_hw: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CO3D ``viewpoint`` dict + image size (H, W) -> OpenCV ``K (3,3)``, world-to-camera ``R (3,3)``, ``t (3,)``.

    See the module docstring for both conventions. ``intrinsics_format`` defaults to
    ``"ndc_norm_image_bounds"`` when absent, as in the official dataclass.
    """
    try:
        r_p3d = np.asarray(viewpoint["R"], dtype=np.float64).reshape(3, 3)
        t_p3d = np.asarray(viewpoint["T"], dtype=np.float64).reshape(3)
        f_ndc = np.asarray(viewpoint["focal_length"], dtype=np.float64).reshape(2)
        c_ndc = np.asarray(viewpoint["principal_point"], dtype=np.float64).reshape(2)
    except (KeyError, ValueError, TypeError) as e:
        raise DataError(
            f"malformed CO3D viewpoint ({e!r}); expected R (3x3), T (3), focal_length (2), principal_point (2)"
        ) from None
    scale = _ndc_scale(image_size_hw, viewpoint.get("intrinsics_format", "ndc_norm_image_bounds"))
    half_wh = np.array([image_size_hw[1], image_size_hw[0]], dtype=np.float64) / 2.0
    f_px = f_ndc * scale
    c_px = half_wh - c_ndc * scale - 0.5
    K = np.array([[f_px[0], 0.0, c_px[0]], [0.0, f_px[1], c_px[1]], [0.0, 0.0, 1.0]])
    return K, _FLIP @ r_p3d.T, _FLIP @ t_p3d


def camera_to_viewpoint(
    K: np.ndarray, R: np.ndarray, t: np.ndarray, image_size_hw: Sequence[int], intrinsics_format: str = "ndc_isotropic"
) -> dict[str, Any]:
    """Inverse of ``viewpoint_to_camera``: OpenCV K, R, t -> CO3D ``viewpoint`` dict (JSON-ready lists)."""
    K, R, t = (np.asarray(a, dtype=np.float64) for a in (K, R, t))
    scale = _ndc_scale(image_size_hw, intrinsics_format)
    half_wh = np.array([image_size_hw[1], image_size_hw[0]], dtype=np.float64) / 2.0
    f_ndc = np.array([K[0, 0], K[1, 1]]) / scale
    c_ndc = (half_wh - 0.5 - np.array([K[0, 2], K[1, 2]])) / scale
    return {
        "R": (R.T @ _FLIP).tolist(),
        "T": (_FLIP @ t.reshape(3)).tolist(),
        "focal_length": f_ndc.tolist(),
        "principal_point": c_ndc.tolist(),
        "intrinsics_format": intrinsics_format,
    }


def project(points: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points ``(N, 3)`` -> pixels ``(N, 2)`` (OpenCV convention) and depths ``(N,)``."""
    cam = np.asarray(points, dtype=np.float64).reshape(-1, 3) @ np.asarray(R).T + np.asarray(t).reshape(1, 3)
    z = cam[:, 2]
    uvw = cam @ np.asarray(K).T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = uvw[:, :2] / uvw[:, 2:3]
    return uv, z


# ----------------------------------------------------------------------------------------------- files
def read_jgz(path: str | Path) -> Any:
    """Load a gzip-compressed JSON file (``*.jgz``); errors name the file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found (expected a CO3D gzip JSON annotation file)")
    try:
        with gzip.open(path, "rt", encoding="utf8") as f:
            return json.load(f)
    except (OSError, EOFError, zlib.error, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not a readable gzip JSON file ({e})") from None


def write_jgz(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp, gzip.open(tmp, "wt", encoding="utf8") as f:
        json.dump(obj, f)


def write_ply_points(path: str | Path, points: np.ndarray, colors: np.ndarray | None = None) -> None:
    """Write points ``(N, 3)`` (+ uint8 colours ``(N, 3)``) as a binary little-endian PLY file."""
    points = np.asarray(points, dtype="<f4").reshape(-1, 3)
    props = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if colors is not None:
        props += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    rec = np.empty(len(points), dtype=props)
    rec["x"], rec["y"], rec["z"] = points.T
    if colors is not None:
        c = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
        rec["red"], rec["green"], rec["blue"] = c.T
    names = {"<f4": "float", "u1": "uchar"}
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(points)}"]
    header += [f"property {names[d]} {n}" for n, d in props] + ["end_header"]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(rec.tobytes())


def read_ply_points(path: str | Path) -> np.ndarray:
    """The ``(N, 3)`` float64 vertex positions of a binary little-endian or ASCII PLY point cloud."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: point cloud not found")
    types = {
        "float": "<f4",
        "float32": "<f4",
        "double": "<f8",
        "float64": "<f8",
        "uchar": "u1",
        "uint8": "u1",
        "char": "i1",
        "int8": "i1",
        "short": "<i2",
        "ushort": "<u2",
        "int": "<i4",
        "uint": "<u4",
        "int32": "<i4",
        "uint32": "<u4",
    }
    data = path.read_bytes()
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise DataError(f"{path}: not a PLY file (no 'ply' magic or 'end_header')")
    header = data[:end].decode("ascii", "replace").splitlines()
    body = data[data.index(b"\n", end) + 1 :]
    fmt, n, props, in_vertex = None, 0, [], False
    for line in header:
        parts = line.split()
        if parts[:1] == ["format"]:
            fmt = parts[1]
        elif parts[:1] == ["element"]:
            in_vertex = parts[1] == "vertex"
            if in_vertex:
                n = int(parts[2])
        elif parts[:1] == ["property"] and in_vertex:
            if parts[1] == "list" or parts[1] not in types:
                raise DataError(f"{path}: unsupported PLY vertex property {line!r}")
            props.append((parts[2], types[parts[1]]))
    try:
        if fmt == "ascii":
            rows = np.array(body.decode("ascii").split()[: n * len(props)], dtype=np.float64).reshape(n, len(props))
            names = [p[0] for p in props]
            return rows[:, [names.index(c) for c in "xyz"]]
        if fmt != "binary_little_endian":
            raise DataError(f"{path}: unsupported PLY format {fmt!r}")
        rec = np.frombuffer(body, dtype=props, count=n)
        return np.stack([rec["x"], rec["y"], rec["z"]], 1).astype(np.float64)
    except (ValueError, KeyError) as e:
        raise DataError(f"{path}: truncated or malformed PLY vertex data ({e})") from None


# ----------------------------------------------------------------------------------------------- reader
@dataclass
class Co3dFrame:
    """One annotated frame: paths are absolute; cameras in the OpenCV convention (module docstring)."""

    category: str
    sequence: str
    frame_number: int
    image_path: Path
    image_size: tuple[int, int]  # (H, W)
    K: np.ndarray  # (3, 3) pixels
    R: np.ndarray  # (3, 3) world-to-camera
    t: np.ndarray  # (3,)
    mask_path: Path | None = None
    depth_path: Path | None = None
    depth_scale: float = 1.0
    meta: dict = field(default_factory=dict)


def parse_frame(entry: Mapping[str, Any], root: Path, category: str, source: Path) -> Co3dFrame | None:
    """One ``frame_annotations`` dict -> ``Co3dFrame``; ``None`` when it has no viewpoint."""
    try:
        seq, num = str(entry["sequence_name"]), int(entry["frame_number"])
        image = entry["image"]
        size = (int(image["size"][0]), int(image["size"][1]))
        img_path = root / image["path"]
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise DataError(
            f"{source}: frame annotation without sequence_name/frame_number/image.path/image.size ({e!r})"
        ) from None
    vp = entry.get("viewpoint")
    if vp is None:
        return None
    try:
        K, R, t = viewpoint_to_camera(vp, size)
    except DataError as e:
        raise DataError(f"{source}: frame {seq}/{num}: {e}") from None
    mask, depth = entry.get("mask") or {}, entry.get("depth") or {}
    return Co3dFrame(
        category,
        seq,
        num,
        img_path,
        size,
        K,
        R,
        t,
        mask_path=root / mask["path"] if mask.get("path") else None,
        depth_path=root / depth["path"] if depth.get("path") else None,
        depth_scale=float(depth.get("scale_adjustment") or 1.0),
        meta=dict(entry.get("meta") or {}),
    )


def list_categories(root: str | Path) -> list[str]:
    """Category folders of a CO3Dv2 root (those holding a ``frame_annotations.jgz``)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: CO3D root folder not found")
    cats = sorted(p.parent.name for p in root.glob("*/frame_annotations.jgz"))
    if not cats:
        raise DataError(f"{root}: no <category>/frame_annotations.jgz found; point to the CO3Dv2 root folder")
    return cats


def read_category(root: str | Path, category: str) -> tuple[dict[str, list[Co3dFrame]], dict[str, dict]]:
    """Frames grouped by sequence (sorted by frame number) and the sequence annotations of one category."""
    root = Path(root)
    fa, sa = root / category / "frame_annotations.jgz", root / category / "sequence_annotations.jgz"
    frames_raw, seqs_raw = read_jgz(fa), read_jgz(sa)
    if not isinstance(frames_raw, list):
        raise DataError(f"{fa}: expected a JSON list of frame annotations, got {type(frames_raw).__name__}")
    if not isinstance(seqs_raw, list) or not all(isinstance(s, dict) and "sequence_name" in s for s in seqs_raw):
        raise DataError(f"{sa}: expected a JSON list of sequence annotations with 'sequence_name'")
    sequences = {s["sequence_name"]: s for s in seqs_raw}
    by_seq: dict[str, list[Co3dFrame]] = {}
    for entry in frames_raw:
        if not isinstance(entry, dict):
            raise DataError(f"{fa}: frame annotation is not a JSON object: {entry!r:.80}")
        fr = parse_frame(entry, root, category, fa)
        if fr is not None:
            by_seq.setdefault(fr.sequence, []).append(fr)
    for frs in by_seq.values():
        frs.sort(key=lambda f: f.frame_number)
    return by_seq, sequences


def read_co3d(root: str | Path, categories: Iterable[str] | None = None) -> dict[tuple[str, str], list[Co3dFrame]]:
    """All frames of a CO3Dv2 root keyed by ``(category, sequence)``."""
    out: dict[tuple[str, str], list[Co3dFrame]] = {}
    for cat in list(categories) if categories is not None else list_categories(root):
        by_seq, _ = read_category(root, cat)
        for seq, frs in by_seq.items():
            out[(cat, seq)] = frs
    return out


def load_depth(path: str | Path, scale_adjustment: float = 1.0) -> np.ndarray:
    """CO3D depth PNG (16-bit PNG holding float16 bits) -> float32 depth ``(H, W)`` times ``scale_adjustment``."""
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

    path = Path(path)
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16:
        raise DataError(f"{path}: not a 16-bit depth PNG")
    return raw.view(np.float16).astype(np.float32) * float(scale_adjustment)
