"""Readers for real image pairs with ground-truth geometry (the sets of ``../shared/data/geometry``).

Each reader takes the set's folder and returns a list of pairs; images are paths (read them with
``relook.images``), geometry is float64 in the pixel frame of the images on disk (OpenCV: pixel centres
at integer coordinates), and every homography maps image-1 pixels to image-2 pixels.

- ``read_hpatches``: HPatches sequences ``SEQ/1.ext .. 6.ext`` with ``H_1_k`` (3x3 text, 1 -> k);
  a sequence without ``H_1_k`` files (``v_calder`` in the subset) gives no pairs;
- ``read_graf``: the Oxford affine layout ``img1.ext .. img6.ext`` with ``H1to{k}p`` (1 -> k);
- ``read_evd``: EVD, ``1/NAME.ext`` and ``2/NAME.ext`` with ``h/NAME.txt`` (1 -> 2);
- ``read_magsac_homography``: MAGSAC's planar pairs ``NAMEA.ext`` / ``NAMEB.ext``; ``NAME_model.txt``
  holds the homography from B to A (it maps the hand-marked B points onto the A points exactly), so the
  pair's H is its inverse;
- ``read_kusvod2``: the KUSVOD2 pairs of MAGSAC's F data that have hand-marked correspondences
  (``NAME_vpts.mat``: ``validation.pts`` is 6 x N homogeneous points, image A rows 0-2, image B rows
  3-5; ``validation.imsize`` is (H, W)); pairs with only ``NAME_pts.txt`` are not read;
- ``read_scannet``: SuperGlue's ``scannet_sample_pairs_with_gt.txt``, one pair a line: two image
  names, two EXIF rotations (must be 0), K0 (9 numbers), K1 (9), T_0to1 (16, row-major 4x4) mapping
  camera-0 coordinates to camera-1 coordinates (``X1 = R X0 + t``), so that
  ``F = K1^-T [t]_x R K0^-1`` and ``x1^T F x0 = 0`` (``relook.geometry.epipolar`` convention with image
  0 as its image 1). Images are looked up under ``images/`` and, when not found, under any extension
  (some were re-encoded as JPEG).

Malformed files raise a one-line ``DataError`` naming the file and what was expected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.io import loadmat

from relook.errors import ConfigError, DataError
from relook.geometry.epipolar import fundamental_from_cameras

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp")


@dataclass
class HomographyPair:
    """Two images of a plane and the homography ``H`` (3, 3) mapping image-1 pixels to image-2 pixels."""

    name: str  # e.g. "v_churchill 1-2"
    image1: Path
    image2: Path
    H: np.ndarray


@dataclass
class EpipolarPair:
    """Two views with epipolar ground truth: hand-marked correspondences and/or cameras.

    ``x1``, ``x2``: (N, 2) corresponding pixels (hand-marked) or None; ``K1``, ``K2`` (3, 3) and the
    relative pose ``R`` (3, 3), ``t`` (3,) (``X2 = R X1 + t``) or None; ``F`` (3, 3) with ``x2^T F x1 = 0``
    where the set defines it (from the cameras), else None.
    """

    name: str
    image1: Path
    image2: Path
    x1: np.ndarray | None = None
    x2: np.ndarray | None = None
    K1: np.ndarray | None = None
    K2: np.ndarray | None = None
    R: np.ndarray | None = None
    t: np.ndarray | None = None
    F: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


def read_matrix(path: Path) -> np.ndarray:
    """A 3x3 matrix from a whitespace-separated text file; ``DataError`` for anything else."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: homography file missing")
    try:
        m = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise DataError(f"{path}: not a 3x3 matrix of numbers ({str(e).splitlines()[0]})") from None
    if m.shape != (3, 3) or not np.isfinite(m).all():
        raise DataError(f"{path}: expected a finite 3x3 matrix, got shape {m.shape}")
    if abs(np.linalg.det(m)) < 1e-12 * np.abs(m).max() ** 3:
        raise DataError(f"{path}: the 3x3 matrix is singular, not a homography")
    return m


def find_image(folder: Path, stem: str) -> Path:
    """``folder/stem.EXT`` for the first image extension on disk (images may have been re-encoded)."""
    for ext in IMAGE_EXTS:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    raise DataError(f"{folder / stem}.*: image missing (looked for {', '.join(IMAGE_EXTS)})")


def _require_dir(root: Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: folder missing")
    return root


def read_hpatches(root: str | Path) -> list[HomographyPair]:
    """Pairs ``SEQ 1-k`` of every HPatches sequence folder under ``root`` that has ``H_1_k`` files."""
    root = _require_dir(root)
    pairs = []
    for seq in sorted(p for p in root.iterdir() if p.is_dir()):
        for k in range(2, 7):
            h = seq / f"H_1_{k}"
            if h.exists():
                pairs.append(
                    HomographyPair(f"{seq.name} 1-{k}", find_image(seq, "1"), find_image(seq, str(k)), read_matrix(h))
                )
    return pairs


def read_graf(root: str | Path, name: str = "graf") -> list[HomographyPair]:
    """Pairs ``NAME 1-k`` of the Oxford affine layout (``img1`` .. ``img6``, ``H1to{k}p``)."""
    root = _require_dir(root)
    return [
        HomographyPair(
            f"{name} 1-{k}", find_image(root, "img1"), find_image(root, f"img{k}"), read_matrix(root / f"H1to{k}p")
        )
        for k in range(2, 7)
        if (root / f"H1to{k}p").exists()
    ]


def read_evd(root: str | Path) -> list[HomographyPair]:
    """EVD pairs ``NAME``: ``1/NAME``, ``2/NAME`` and ``h/NAME.txt`` (1 -> 2)."""
    root = _require_dir(root)
    hs = sorted((root / "h").glob("*.txt"))
    if not hs:
        raise DataError(f"{root / 'h'}: no homography files NAME.txt (EVD layout: 1/, 2/, h/)")
    return [
        HomographyPair(h.stem, find_image(root / "1", h.stem), find_image(root / "2", h.stem), read_matrix(h))
        for h in hs
    ]


def read_magsac_homography(root: str | Path) -> list[HomographyPair]:
    """MAGSAC planar pairs ``NAMEA`` / ``NAMEB`` with ``NAME_model.txt`` (B -> A, inverted here to A -> B)."""
    root = _require_dir(root)
    models = sorted(root.glob("*_model.txt"))
    if not models:
        raise DataError(f"{root}: no NAME_model.txt files (MAGSAC homography layout)")
    pairs = []
    for m in models:
        name = m.name[: -len("_model.txt")]
        pairs.append(
            HomographyPair(
                name, find_image(root, f"{name}A"), find_image(root, f"{name}B"), np.linalg.inv(read_matrix(m))
            )
        )
    return pairs


def read_vpts(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Hand-marked correspondences of a ``NAME_vpts.mat``: x1 (N, 2), x2 (N, 2) and imsize (H, W)."""

    path = Path(path)
    try:
        v = loadmat(path)["validation"][0, 0]
        pts = np.asarray(v["pts"], np.float64)
        imsize = tuple(int(s) for s in np.asarray(v["imsize"]).ravel()[:2])
    except FileNotFoundError:
        raise DataError(f"{path}: correspondence file missing") from None
    except (KeyError, ValueError, IndexError, TypeError) as e:
        raise DataError(
            f"{path}: not a validation struct with pts (6 x N) and imsize "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None
    if pts.ndim != 2 or pts.shape[0] != 6 or pts.shape[1] < 1 or len(imsize) != 2:
        raise DataError(f"{path}: validation.pts must be 6 x N homogeneous points, got {pts.shape}")
    if np.any(np.abs(pts[[2, 5]]) < 1e-12) or not np.isfinite(pts).all():
        raise DataError(f"{path}: validation.pts has points at infinity or non-finite values")
    return pts[:2].T / pts[2:3].T, pts[3:5].T / pts[5:6].T, imsize


def read_kusvod2(root: str | Path) -> list[EpipolarPair]:
    """KUSVOD2 pairs ``NAME`` with hand-marked correspondences (``NAME_vpts.mat``) and images NAMEA / NAMEB."""
    root = _require_dir(root)
    mats = sorted(root.glob("*_vpts.mat"))
    if not mats:
        raise DataError(f"{root}: no NAME_vpts.mat files (KUSVOD2 layout)")
    pairs = []
    for m in mats:
        name = m.name[: -len("_vpts.mat")]
        x1, x2, imsize = read_vpts(m)
        pairs.append(
            EpipolarPair(
                name, find_image(root, f"{name}A"), find_image(root, f"{name}B"), x1, x2, meta={"imsize": imsize}
            )
        )
    return pairs


def parse_scannet_line(line: str, where: str = "") -> tuple[str, str, np.ndarray, np.ndarray, np.ndarray]:
    """One SuperGlue ground-truth line -> (name0, name1, K0 (3, 3), K1 (3, 3), T_0to1 (4, 4))."""
    f = line.split()
    if len(f) != 38:
        raise DataError(f"{where}: expected 38 fields (2 names, 2 rotations, K0, K1, T_0to1), got {len(f)}")
    try:
        num = np.array(f[2:], np.float64)
    except ValueError:
        raise DataError(f"{where}: fields 3-38 must be numbers") from None
    if num[0] != 0 or num[1] != 0:
        raise DataError(f"{where}: EXIF rotations {int(num[0])}, {int(num[1])} not supported (only 0)")
    K0, K1, T = num[2:11].reshape(3, 3), num[11:20].reshape(3, 3), num[20:36].reshape(4, 4)
    if not np.allclose(T[3], [0, 0, 0, 1]) or not np.allclose(T[:3, :3] @ T[:3, :3].T, np.eye(3), atol=1e-3):
        raise DataError(f"{where}: T_0to1 is not a rigid 4x4 transform")
    if K0[2, 2] != 1 or K1[2, 2] != 1 or K0[1, 0] or K1[1, 0]:
        raise DataError(f"{where}: K0 / K1 are not upper-triangular intrinsics with K[2, 2] = 1")
    return f[0], f[1], K0, K1, T


def read_scannet(root: str | Path, gt_file: str = "scannet_sample_pairs_with_gt.txt") -> list[EpipolarPair]:
    """ScanNet pairs of SuperGlue's format: images, K0, K1, relative pose and the exact F from them."""

    root = _require_dir(root)
    path = root / gt_file
    if not path.is_file():
        raise DataError(f"{path}: pair list missing")
    pairs = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        n0, n1, K0, K1, T = parse_scannet_line(line, f"{path}:{i}")
        R, t = T[:3, :3], T[:3, 3]
        F = fundamental_from_cameras(K0, np.eye(3), np.zeros(3), K1, R, t).numpy()
        images = [
            find_image(root / "images", Path(n).stem) if not (root / "images" / n).is_file() else root / "images" / n
            for n in (n0, n1)
        ]
        pairs.append(
            EpipolarPair(f"{Path(n0).stem}-{Path(n1).stem.split('_')[-1]}", *images, K1=K0, K2=K1, R=R, t=t, F=F)
        )
    if not pairs:
        raise DataError(f"{path}: no pairs")
    return pairs


#: set name -> (folder under the geometry root, reader)
HOMOGRAPHY_SETS = {
    "hpatches": ("hpatches_subset_tfeat", read_hpatches),
    "graf": ("oxford_graf_affnet", read_graf),
    "evd": ("evd", read_evd),
    "magsac-h": ("homogr_H_magsac", read_magsac_homography),
}
EPIPOLAR_SETS = {
    "kusvod2": ("kusvod2_adelaide_F_magsac", read_kusvod2),
    "scannet": ("scannet_pairs_superglue", read_scannet),
}


def load_geometry_set(name: str, root: str | Path) -> list[HomographyPair] | list[EpipolarPair]:
    """The pairs of set ``name`` (a key of ``HOMOGRAPHY_SETS`` or ``EPIPOLAR_SETS``) under the geometry root."""
    sets = {**HOMOGRAPHY_SETS, **EPIPOLAR_SETS}
    if name not in sets:
        raise ConfigError(f"unknown geometry set {name!r}; known: {sorted(sets)}")
    folder, reader = sets[name]
    return reader(Path(root) / folder)
