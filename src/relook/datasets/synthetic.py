"""Synthetic multi-view object benchmark with exact cameras, written in the CO3Dv2 layout.

Each instance is a procedurally textured, non-planar object: a few boxes (stacked, clustered, or a
base with thin panels, one shape family per category) lit by a fixed light, standing on a textured
ground square, photographed by ``num_views`` cameras that orbit it (azimuths ``360 / num_views``
apart, a few degrees of jitter, varied elevation, distance, focal length, principal point and roll).
Behind the ground every view gets its own smooth random backdrop. With ``shared_textures`` part of
the faces and the grounds are drawn from pools shared across instances, so global retrieval is not
trivial. With ``textures=DIR`` the objects wear real photos instead (real image statistics, same exact
cameras): each instance gets one photo of DIR (a seeded permutation, so distinct photos while there are
enough), and each of its faces shows its own crop of that photo, shaped like the face so nothing is
stretched (``photo_face_texture``); grounds and backdrops stay procedural.

Rendering is exact: every face is a parallelogram ``X(a, b) = P0 + a e1 + b e2``, (a, b) in [0, 1]^2,
whose image is the homography ``H = K [R e1 | R e2 | R P0 + t]``; each pixel centre is mapped back
through ``H^-1`` to (a, b) (inside test + texture lookup) and its depth is the third row of
``[R e1 | R e2 | R P0 + t] (a, b, 1)``, so a z-buffer resolves occlusions per pixel.

Written per category ``synth_<family>`` (CO3Dv2 layout, see ``relook.datasets.co3d``):
``frame_annotations.jgz``, ``sequence_annotations.jgz`` and per sequence ``images/frameXXXXXX.jpg``,
``masks/frameXXXXXX.png`` (object = 255), ``depths/frameXXXXXX.jpg.geometric.png`` (float16 z-depth,
0 = no surface) and ``pointcloud.ply`` (points on the object's faces, world frame). Cameras are stored
as CO3D viewpoints (``ndc_isotropic``), so ``co3d.viewpoint_to_camera`` recovers them exactly.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from relook.datasets.co3d import camera_to_viewpoint, write_jgz, write_ply_points
from relook.datasets.photos import list_photos, load_photo
from relook.errors import ConfigError

FAMILIES = ("stack", "cluster", "panels")  # one CO3D category per shape family
TEXTURE_SIZE = 128
PHOTO_SIZE = 512  # long side a texture photo is read at before its face crops are cut
_PHOTO_STREAM = 1_000_007  # tag of the random stream that assigns photos to instances


@dataclass
class Face:
    """A textured parallelogram ``X(a, b) = origin + a * e1 + b * e2`` in world coordinates."""

    origin: np.ndarray  # (3,)
    e1: np.ndarray  # (3,)
    e2: np.ndarray  # (3,)
    texture: np.ndarray  # (h, w, 3) float32 in [0, 1]
    shade: float = 1.0
    tiles: float = 1.0  # texture repeats along each edge (ground)
    is_object: bool = True
    normal: np.ndarray | None = None  # outward normal of a closed solid's face (back faces are culled); None: two-sided


# ----------------------------------------------------------------------------------------------- textures
def _smooth_field(rng: np.random.Generator, size: int, cells: int, channels: int = 3) -> np.ndarray:
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

    low = rng.random((cells, cells, channels)).astype(np.float32)
    return cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1).reshape(size, size, channels)


def procedural_texture(rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """A random (size, size, 3) float32 texture: smooth colour field + stripes/checker + random shapes.

    Rich in corners and blobs so local features find something to match.
    """
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

    tex = _smooth_field(rng, size, int(rng.integers(2, 6)))
    kind = rng.integers(3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == 0:  # stripes
        ang, freq = rng.uniform(0, np.pi), rng.uniform(0.05, 0.25)
        band = (np.sin((np.cos(ang) * xx + np.sin(ang) * yy) * freq) > 0).astype(np.float32)
    elif kind == 1:  # checker
        cell = int(rng.integers(8, 32))
        band = (((xx // cell) + (yy // cell)) % 2).astype(np.float32)
    else:
        band = np.zeros_like(xx)
    tint = rng.random(3).astype(np.float32)
    tex = tex * (1 - 0.5 * band[..., None]) + 0.5 * band[..., None] * tint
    for _ in range(int(rng.integers(8, 20))):
        color = tuple(float(c) for c in rng.random(3))
        p = tuple(int(v) for v in rng.integers(0, size, 2))
        shape = rng.integers(3)
        if shape == 0:
            cv2.circle(tex, p, int(rng.integers(3, size // 6)), color, -1, cv2.LINE_AA)
        elif shape == 1:
            q = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.rectangle(tex, p, q, color, -1)
        else:
            q = tuple(int(v) for v in rng.integers(0, size, 2))
            cv2.line(tex, p, q, color, int(rng.integers(1, 5)), cv2.LINE_AA)
    tex += rng.normal(0, 0.02, tex.shape).astype(np.float32)
    return tex.clip(0, 1)


def photo_face_texture(
    rng: np.random.Generator, photo: np.ndarray, aspect: float, size: int = TEXTURE_SIZE
) -> np.ndarray:
    """A crop of ``photo`` (RGB uint8) for a face whose edges have length ratio ``aspect`` = |e1| / |e2|:
    15-50 % of the photo's area, the face's shape (clipped to the photo), shrunk by area averaging to a
    long side of at most ``size`` (the renderer samples it bilinearly) -> float32 in [0, 1]."""
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

    h, w = photo.shape[:2]
    area = rng.uniform(0.15, 0.5) * w * h
    aspect = float(np.clip(aspect, 0.1, 10.0))
    cw = int(np.clip(round(np.sqrt(area * aspect)), 4, w))
    ch = int(np.clip(round(np.sqrt(area / aspect)), 4, h))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    crop = photo[y0 : y0 + ch, x0 : x0 + cw]
    s = min(1.0, size / max(cw, ch))
    if s < 1.0:
        crop = cv2.resize(crop, (max(1, round(cw * s)), max(1, round(ch * s))), interpolation=cv2.INTER_AREA)
    return crop.astype(np.float32) / 255.0


# ----------------------------------------------------------------------------------------------- geometry
def _rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def box_faces(center, size, yaw: float, textures, light: np.ndarray) -> list[Face]:
    """The 6 faces of a box (``size`` = full extents, rotated by ``yaw`` about world z), Lambert-shaded."""
    Rz = _rot_z(yaw)
    half = np.asarray(size, dtype=np.float64) / 2
    c = np.asarray(center, dtype=np.float64)
    faces = []
    for k, (axis, sign) in enumerate([(0, 1), (0, -1), (1, 1), (1, -1), (2, 1), (2, -1)]):
        u, v = [a for a in range(3) if a != axis]
        n = np.zeros(3)
        n[axis] = sign
        eu, ev = np.zeros(3), np.zeros(3)
        eu[u], ev[v] = 2 * half[u], 2 * half[v]
        origin = c + Rz @ (n * half - eu / 2 - ev / 2)
        shade = 0.45 + 0.55 * max(0.0, float((Rz @ n) @ light))
        faces.append(Face(origin, Rz @ eu, Rz @ ev, textures[k % len(textures)], shade, normal=Rz @ n))
    return faces


def make_object(rng: np.random.Generator, family: str, pick_texture) -> list[Face]:
    """Faces of one object of shape ``family`` (see ``FAMILIES``), roughly inside the unit ball, on z = -0.6."""
    light = rng.normal(size=3)
    light[2] = abs(light[2]) + 0.5
    light /= np.linalg.norm(light)
    floor = -0.6
    boxes = []  # (center, size, yaw)
    if family == "stack":
        z = floor
        for _ in range(int(rng.integers(2, 4))):
            s = rng.uniform([0.5, 0.5, 0.3], [0.9, 0.9, 0.55]) * (1.0 - 0.15 * len(boxes))
            boxes.append(((rng.uniform(-0.1, 0.1), rng.uniform(-0.1, 0.1), z + s[2] / 2), s, rng.uniform(0, np.pi)))
            z += s[2]
    elif family == "cluster":
        for k in range(3):
            ang = 2 * np.pi * k / 3 + rng.uniform(-0.4, 0.4)
            s = rng.uniform([0.35, 0.35, 0.3], [0.6, 0.6, 1.1])
            r = rng.uniform(0.3, 0.45)
            boxes.append(((r * np.cos(ang), r * np.sin(ang), floor + s[2] / 2), s, rng.uniform(0, np.pi)))
    elif family == "panels":
        base = rng.uniform([0.9, 0.6, 0.2], [1.2, 0.9, 0.35])
        boxes.append(((0, 0, floor + base[2] / 2), base, 0.0))
        for k in range(2):
            s = np.array([rng.uniform(0.4, 0.7), 0.06, rng.uniform(0.5, 0.9)])
            y = (-0.2 if k == 0 else 0.2) + rng.uniform(-0.05, 0.05)
            boxes.append(((rng.uniform(-0.25, 0.25), y, floor + base[2] + s[2] / 2), s, rng.uniform(-0.3, 0.3)))
    else:
        raise ConfigError(f"unknown object family {family!r}; known: {', '.join(FAMILIES)}")
    yaw0 = rng.uniform(0, 2 * np.pi)
    faces = []
    for center, size, yaw in boxes:
        center = _rot_z(yaw0) @ np.asarray(center, dtype=np.float64)
        faces += box_faces(center, size, yaw + yaw0, [pick_texture() for _ in range(6)], light)
    return faces


def look_at(center: np.ndarray, target: np.ndarray, roll: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """World-to-camera (R, t), OpenCV axes (x right, y down, z forward), world z up, ``roll`` radians."""
    f = target - center
    f /= np.linalg.norm(f)
    r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    d = np.cross(f, r)
    R = np.stack([r, d, f])
    c, s = np.cos(roll), np.sin(roll)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ R
    return R, -R @ center


def orbit_cameras(rng: np.random.Generator, num_views: int, image_hw: tuple[int, int]) -> list[tuple[np.ndarray, ...]]:
    """``num_views`` (K, R, t) around the origin: azimuths ``360/num_views`` apart (+-3 deg jitter)."""
    h, w = image_hw
    f = min(h, w) * rng.uniform(1.3, 1.5)
    K = np.array([[f, 0, (w - 1) / 2 + rng.uniform(-3, 3)], [0, f, (h - 1) / 2 + rng.uniform(-3, 3)], [0, 0, 1.0]])
    az0, el0, dist0 = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(15), np.radians(35)), rng.uniform(3.3, 3.9)
    target0 = np.array([0.0, 0.0, -0.1])
    cams = []
    for v in range(num_views):
        az = az0 + 2 * np.pi * v / num_views + np.radians(rng.uniform(-3, 3))
        el = el0 + np.radians(rng.uniform(-5, 5))
        dist = dist0 * rng.uniform(0.95, 1.05)
        center = target0 + dist * np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
        R, t = look_at(center, target0 + rng.normal(0, 0.04, 3), np.radians(rng.uniform(-4, 4)))
        cams.append((K.copy(), R, t))
    return cams


def synthetic_cameras(
    seed: int, instance: int, num_views: int, image_hw: tuple[int, int]
) -> list[tuple[np.ndarray, ...]]:
    """The exact (K, R, t) that ``generate_synthetic`` gives the views of ``instance`` (own seeded stream)."""
    return orbit_cameras(np.random.default_rng([seed, instance, 7]), num_views, tuple(image_hw))


# ----------------------------------------------------------------------------------------------- rendering
def render(
    faces: list[Face], K: np.ndarray, R: np.ndarray, t: np.ndarray, image_hw: tuple[int, int], background: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-buffer render of ``faces`` -> RGB float32 ``(H, W, 3)``, object mask bool ``(H, W)``, depth ``(H, W)``.

    Pixel centres sit at integer coordinates (OpenCV). Depth is camera z (0 where no face is seen).
    Every face must lie in front of the camera.
    """
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

    h, w = image_hw
    img = background.astype(np.float32).copy()
    zbuf = np.full((h, w), np.inf)
    obj = np.zeros((h, w), bool)
    center = -R.T @ t
    grid = np.stack([*np.meshgrid(np.arange(w), np.arange(h)), np.ones((h, w))], -1)  # (H, W, 3) pixel centres
    for face in faces:
        if face.normal is not None and face.normal @ (center - face.origin) <= 0:
            continue  # back face of a closed box: hidden by its front faces
        M = np.stack([R @ face.e1, R @ face.e2, R @ face.origin + t], 1)  # unit square -> camera
        corners = np.array([[0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float) @ M.T
        if np.any(corners[:, 2] <= 1e-6):
            raise ConfigError("a face crosses the camera plane; move the camera further away")
        uv = (corners @ K.T)[:, :2] / corners[:, 2:]
        x0, y0 = np.maximum(np.floor(uv.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(uv.max(0)).astype(int), [w - 1, h - 1])
        if x1 < x0 or y1 < y0:
            continue
        Hinv = np.linalg.inv(K @ M)
        q = grid[y0 : y1 + 1, x0 : x1 + 1] @ Hinv.T
        a, b = q[..., 0] / q[..., 2], q[..., 1] / q[..., 2]
        z = a * M[2, 0] + b * M[2, 1] + M[2, 2]
        zroi = zbuf[y0 : y1 + 1, x0 : x1 + 1]
        win = (a >= 0) & (a <= 1) & (b >= 0) & (b <= 1) & (z > 0) & (z < zroi)
        if not win.any():
            continue
        th, tw = face.texture.shape[:2]
        mx = (a * face.tiles * tw - 0.5).astype(np.float32)
        my = (b * face.tiles * th - 0.5).astype(np.float32)
        border = cv2.BORDER_WRAP if face.tiles != 1.0 else cv2.BORDER_REFLECT
        col = cv2.remap(face.texture, mx, my, cv2.INTER_LINEAR, borderMode=border) * face.shade
        img[y0 : y1 + 1, x0 : x1 + 1][win] = col[win]
        zroi[win] = z[win]
        obj[y0 : y1 + 1, x0 : x1 + 1][win] = face.is_object
    depth = np.where(np.isfinite(zbuf), zbuf, 0.0)
    return img, obj, depth


def sample_surface(faces: list[Face], rng: np.random.Generator, n: int) -> np.ndarray:
    """``(n, 3)`` points drawn uniformly (by area) on the object faces."""
    faces = [f for f in faces if f.is_object]
    if not faces or n <= 0:
        return np.zeros((0, 3))
    areas = np.array([np.linalg.norm(np.cross(f.e1, f.e2)) for f in faces])
    idx = rng.choice(len(faces), size=n, p=areas / areas.sum())
    ab = rng.random((n, 2))
    o = np.stack([faces[i].origin for i in idx])
    e1 = np.stack([faces[i].e1 for i in idx])
    e2 = np.stack([faces[i].e2 for i in idx])
    return o + ab[:, :1] * e1 + ab[:, 1:] * e2


# ----------------------------------------------------------------------------------------------- generator
_PLACEHOLDER = np.zeros((1, 1, 3), np.float32)  # a face's texture until its photo crop is cut


def generate_synthetic(
    out_dir: str | Path,
    num_instances: int = 60,
    num_views: int = 5,
    image_size: int | tuple[int, int] = 224,
    seed: int = 0,
    shared_textures: bool = True,
    num_points: int = 2000,
    textures: str | Path | None = None,
    progress: bool = False,
) -> Path:
    """Write the synthetic benchmark (CO3Dv2 layout, module docstring) under ``out_dir``; returns ``out_dir``.

    Deterministic from ``seed``: instance i depends only on (seed, i) and the shared pools on ``seed``.
    ``image_size`` is an int (square) or (H, W). ``num_points`` object points go to each ``pointcloud.ply``.
    ``textures``: a folder of real photos (.jpg/.png, recursive) the objects wear (module docstring); the
    photo of each sequence is recorded in ``synthetic.json`` (``texture_photos``).
    """
    # lazy (start-up): loads cv2; relook's entry points import this module
    import cv2

    if num_instances < 0 or num_views < 1:
        raise ConfigError(f"num_instances must be >= 0 and num_views >= 1 (got {num_instances}, {num_views})")
    hw = (int(image_size), int(image_size)) if np.isscalar(image_size) else tuple(int(s) for s in image_size)
    if min(hw) < 16:
        raise ConfigError(f"image_size {image_size} is too small (>= 16 pixels)")
    photos = list_photos(textures, "synthetic textures") if textures is not None else []
    photo_order = np.random.default_rng([seed, _PHOTO_STREAM]).permutation(len(photos)) if photos else None
    texture_photos: dict[str, str] = {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    pool_rng = np.random.default_rng([seed, 1_000_003])
    tex_pool = [procedural_texture(pool_rng) for _ in range(max(4, num_instances // 3))] if shared_textures else []
    ground_pool = [procedural_texture(pool_rng) for _ in range(6)] if shared_textures else []
    frames: dict[str, list] = {f"synth_{f}": [] for f in FAMILIES}
    seqs: dict[str, list] = {f"synth_{f}": [] for f in FAMILIES}
    for i in tqdm(range(num_instances), desc="synthetic instances", disable=not progress):
        rng = np.random.default_rng([seed, i])
        family = FAMILIES[i % len(FAMILIES)]
        category, seq = f"synth_{family}", f"{i:04d}_synth"

        def pick_texture(rng: np.random.Generator = rng) -> np.ndarray:
            if photos:
                return _PLACEHOLDER  # replaced below by a crop of this instance's photo
            if tex_pool and rng.random() < 0.5:
                return tex_pool[int(rng.integers(len(tex_pool)))]
            return procedural_texture(rng)

        faces = make_object(rng, family, pick_texture)
        if photos:
            photo_path = photos[int(photo_order[i % len(photos)])]
            photo = load_photo(photo_path, PHOTO_SIZE)
            texture_photos[seq] = photo_path.relative_to(Path(textures)).as_posix()
            for face in faces:
                aspect = np.linalg.norm(face.e1) / max(np.linalg.norm(face.e2), 1e-12)
                face.texture = photo_face_texture(rng, photo, aspect)
        ground_tex = (
            ground_pool[int(rng.integers(len(ground_pool)))]
            if ground_pool and rng.random() < 0.5
            else procedural_texture(rng)
        )
        g = 1.8
        faces.append(
            Face(
                np.array([-g, -g, -0.6 - 1e-3]),
                np.array([2 * g, 0, 0.0]),
                np.array([0, 2 * g, 0.0]),
                (0.5 * ground_tex + 0.5 * ground_tex.mean((0, 1))) * rng.uniform(0.6, 1.0),
                1.0,
                tiles=3.0,
                is_object=False,
            )
        )
        seq_dir = out / category / seq
        for sub in ("images", "masks", "depths"):
            (seq_dir / sub).mkdir(parents=True, exist_ok=True)
        cams = synthetic_cameras(seed, i, num_views, hw)
        for v, (K, R, t) in enumerate(cams):
            backdrop = _smooth_field(rng, max(hw), int(rng.integers(2, 5)))[: hw[0], : hw[1]] * rng.uniform(0.5, 1.0)
            img, obj, depth = render(faces, K, R, t, hw, backdrop)
            name = f"frame{v + 1:06d}"
            rel = {
                k: f"{category}/{seq}/{k}/{name}{ext}"
                for k, ext in (("images", ".jpg"), ("masks", ".png"), ("depths", ".jpg.geometric.png"))
            }
            rgb8 = (img * 255 + 0.5).clip(0, 255).astype(np.uint8)
            cv2.imwrite(str(out / rel["images"]), rgb8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(out / rel["masks"]), obj.astype(np.uint8) * 255)
            cv2.imwrite(str(out / rel["depths"]), depth.astype(np.float16).view(np.uint16))
            frames[category].append(
                {
                    "sequence_name": seq,
                    "frame_number": v,
                    "frame_timestamp": float(v),
                    "image": {"path": rel["images"], "size": list(hw)},
                    "depth": {"path": rel["depths"], "scale_adjustment": 1.0, "mask_path": None},
                    "mask": {"path": rel["masks"], "mass": float(obj.sum())},
                    "viewpoint": camera_to_viewpoint(K, R, t, hw, "ndc_isotropic"),
                    "meta": {"synthetic": True},
                }
            )
        pts = sample_surface(faces, rng, num_points)
        write_ply_points(seq_dir / "pointcloud.ply", pts)
        seqs[category].append(
            {
                "sequence_name": seq,
                "category": category,
                "video": None,
                "point_cloud": {
                    "path": f"{category}/{seq}/pointcloud.ply",
                    "quality_score": 1.0,
                    "n_points": int(len(pts)),
                },
                "viewpoint_quality_score": 1.0,
            }
        )
    for category in frames:
        write_jgz(out / category / "frame_annotations.jgz", frames[category])
        write_jgz(out / category / "sequence_annotations.jgz", seqs[category])
    (out / "synthetic.json").write_text(
        json.dumps(
            {
                "generator": "relook.datasets.synthetic.generate_synthetic",
                "note": "synthetic data, exact cameras",
                "num_instances": num_instances,
                "num_views": num_views,
                "image_size": list(hw),
                "seed": seed,
                "shared_textures": shared_textures,
                "num_points": num_points,
                "textures": str(textures) if textures is not None else None,
                "texture_photos": texture_photos,
                "seconds": round(time.time() - t0, 2),
            },
            indent=1,
        )
    )
    return out
