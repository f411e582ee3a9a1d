"""Two-view epipolar geometry on feature grids (Sec. 3.2-3.4 and 5.2 of the epipolar paper, seed 002).

Conventions (used by every function here):

- Cameras are world-to-camera: a world point ``X`` has camera coordinates ``R @ X + t`` and pixel
  ``x ~ K @ (R @ X + t)``. ``K`` holds *pixel* intrinsics of the image as it is fed to the network.
- Pixel coordinates follow OpenCV (and ``relook.datasets.synthetic``): the centre of pixel ``(u, v)`` is
  at the integer point ``(u, v)``, so an image of width W spans ``[-0.5, W - 0.5]``. A crop at integer
  ``(x0, y0)`` shifts the principal point by ``-(x0, y0)``; a resize by ``(sx, sy)`` maps
  ``x -> (x + 0.5) sx - 0.5`` (``crop_intrinsics``, ``resize_intrinsics``).
- ``F`` maps image-1 points to image-2 lines: ``x2^T F x1 = 0`` (homogeneous pixels), ``l2 = F x1``,
  ``l1 = F^T x2``.
- An ``s x s`` feature grid over an ``(H, W)`` image has cell ``(r, c)`` covering
  ``[c W/s, (c+1) W/s) x [r H/s, (r+1) H/s)`` shifted by -0.5 (centre ``((c + 0.5) W/s - 0.5, ...)``); cells are flattened row-major, ``i = r * s + c``, which is
  the token order of a flattened ``(s, s)`` feature map.

All functions are pure, take torch tensors (numpy arrays are converted; float64 is kept) and are
batched over leading dimensions.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from relook.errors import ConfigError, ShapeError


def _t(x, dtype=None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if dtype is not None:
        return t.to(dtype)
    return t if t.is_floating_point() else t.to(torch.float64)


def _check_33(x: torch.Tensor, name: str) -> None:
    if x.dim() < 2 or tuple(x.shape[-2:]) != (3, 3):
        raise ShapeError(f"{name}: expected (..., 3, 3), got shape {tuple(x.shape)}")


def skew(v: torch.Tensor) -> torch.Tensor:
    """Cross-product matrix ``[v]_x`` of ``v`` (..., 3) -> (..., 3, 3), ``[v]_x w = v x w``."""
    v = _t(v)
    z = torch.zeros_like(v[..., 0])
    return torch.stack(
        [
            torch.stack([z, -v[..., 2], v[..., 1]], -1),
            torch.stack([v[..., 2], z, -v[..., 0]], -1),
            torch.stack([-v[..., 1], v[..., 0], z], -1),
        ],
        -2,
    )


def relative_pose(R1, t1, R2, t2) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose of camera 2 relative to camera 1: ``X_c2 = R @ X_c1 + t``. R* (..., 3, 3), t* (..., 3)."""
    R1, t1, R2, t2 = _t(R1), _t(t1), _t(R2), _t(t2)
    R = R2 @ R1.transpose(-1, -2)
    return R, t2 - (R @ t1.unsqueeze(-1)).squeeze(-1)


def fundamental_from_cameras(K1, R1, t1, K2, R2, t2) -> torch.Tensor:
    """F (..., 3, 3) with ``x2^T F x1 = 0`` from two world-to-camera cameras (module conventions).

    ``F = K2^-T [t]_x R K1^-1`` with ``(R, t)`` the relative pose (``relative_pose``), normalised to unit
    Frobenius norm (F is defined up to scale). K* (..., 3, 3), R* (..., 3, 3), t* (..., 3).
    """
    K1, K2 = _t(K1), _t(K2)
    for name, m in (("K1", K1), ("R1", _t(R1)), ("K2", K2), ("R2", _t(R2))):
        _check_33(m, name)
    R, t = relative_pose(R1, t1, R2, t2)
    E = skew(t) @ R
    F = torch.linalg.inv(K2).transpose(-1, -2) @ E @ torch.linalg.inv(K1)
    return F / F.flatten(-2).norm(dim=-1).clamp_min(1e-300)[..., None, None]


def crop_intrinsics(K, x0, y0) -> torch.Tensor:
    """Intrinsics after cropping at top-left pixel corner ``(x0, y0)``: the principal point moves by -(x0, y0)."""
    K = _t(K).clone()
    K[..., 0, 2] = K[..., 0, 2] - _t(x0, K.dtype)
    K[..., 1, 2] = K[..., 1, 2] - _t(y0, K.dtype)
    return K


def resize_intrinsics(K, sx, sy) -> torch.Tensor:
    """Intrinsics after resizing by factors ``(sx, sy)`` (new/old width, height): ``K' = S K`` with
    ``S = [[sx, 0, (sx - 1)/2], [0, sy, (sy - 1)/2], [0, 0, 1]]`` (pixel centres at integers)."""
    K = _t(K).clone()
    sx, sy = _t(sx, K.dtype)[..., None], _t(sy, K.dtype)[..., None]
    K[..., 0, :] = K[..., 0, :] * sx + 0.5 * (sx - 1) * K[..., 2, :]
    K[..., 1, :] = K[..., 1, :] * sy + 0.5 * (sy - 1) * K[..., 2, :]
    return K


def crop_resize_intrinsics(K, box, out_size) -> torch.Tensor:
    """Intrinsics of the crop ``box = (x0, y0, w, h)`` resized to ``out_size = (H, W)`` (RandomResizedCrop)."""
    x0, y0, w, h = box
    K = crop_intrinsics(K, x0, y0)
    return resize_intrinsics(K, out_size[1] / w, out_size[0] / h)


def grid_centers(image_size, s: int, dtype=torch.float64) -> torch.Tensor:
    """Pixel centres (s*s, 2) as (x, y) of the cells of an ``s x s`` grid over ``image_size = (H, W)``."""
    H, W = float(image_size[0]), float(image_size[1])
    r, c = torch.meshgrid(torch.arange(s, dtype=dtype), torch.arange(s, dtype=dtype), indexing="ij")
    return torch.stack(((c.reshape(-1) + 0.5) * W / s - 0.5, (r.reshape(-1) + 0.5) * H / s - 0.5), -1)


def homogeneous(x: torch.Tensor) -> torch.Tensor:
    """(..., 2) -> (..., 3) by appending ones."""
    return torch.cat((x, torch.ones_like(x[..., :1])), -1)


def epipolar_lines(F, points, direction: str = "12") -> torch.Tensor:
    """Epipolar lines (..., N, 3) ``(a, b, c)`` with ``a x + b y + c = 0`` of ``points`` (..., N, 2).

    ``direction="12"``: points in image 1, lines in image 2 (``F x1``); ``"21"``: ``F^T x2`` in image 1.
    """
    F, p = _t(F), _t(points)
    _check_33(F, "F")
    if direction not in ("12", "21"):
        raise ConfigError(f"epipolar_lines: direction must be '12' or '21', got {direction!r}")
    M = F if direction == "12" else F.transpose(-1, -2)
    return homogeneous(p.to(M.dtype)) @ M.transpose(-1, -2)


def point_line_distance(lines: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Distances (..., N, M) from points (..., M, 2) to lines (..., N, 3); inf for a degenerate line."""
    num = (lines[..., :, None, :2] * points[..., None, :, :]).sum(-1) + lines[..., :, None, 2]
    den = lines[..., :2].norm(dim=-1)[..., :, None]
    return torch.where(
        den > 1e-12 * lines.abs().amax(-1, keepdim=True).clamp_min(1e-300)[..., :, :1],
        num.abs() / den.clamp_min(1e-300),
        torch.full_like(num, math.inf),
    )


def _line_cell_intersects(lines: torch.Tensor, image_size, s: int) -> torch.Tensor:
    """Exact test (..., N, s*s): the line passes through the closed cell rectangle (corner signs differ)."""
    H, W = float(image_size[0]), float(image_size[1])
    ctr = grid_centers(image_size, s, lines.dtype).to(lines.device)
    hw, hh = W / s / 2, H / s / 2
    vals = []
    for dx, dy in ((-hw, -hh), (hw, -hh), (-hw, hh), (hw, hh)):
        corner = ctr + ctr.new_tensor([dx, dy])
        vals.append((lines[..., :, None, :2] * corner).sum(-1) + lines[..., :, None, 2])
    v = torch.stack(vals, -1)
    degenerate = lines[..., :2].norm(dim=-1, keepdim=True) <= 1e-12 * lines.abs().amax(-1, keepdim=True).clamp_min(
        1e-300
    )
    return (v.amin(-1) <= 0) & (v.amax(-1) >= 0) & ~degenerate


def epipolar_indicator(
    F, size1, size2, s: int = 7, mode: str = "intersect", radius: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth epipolar grids ``1(i, j)`` of Eq. (1) for both directions.

    F (..., 3, 3) with ``x2^T F x1 = 0``; ``size1`` / ``size2`` = (H, W) of the two images in the pixel
    frame of F; ``s`` = grid side. Returns ``I12`` (..., s*s, s*s) with ``I12[i, j] = 1`` when cell ``j``
    of image 2 lies on the epipolar line of the centre of cell ``i`` of image 1, and ``I21`` (..., s*s, s*s)
    with ``I21[i, j] = 1`` when cell ``j`` of image 1 lies on the line ``F^T x2`` of cell ``i`` of image 2
    (rows follow A12 / A21 of Sec. 3.3). ``mode``:

    - ``"intersect"`` (default): the paper's literal rule (Sec. 3.3, "the cells that the epipolar line
      passes through"): the line meets the closed cell rectangle, exact corner-sign test;
    - ``"distance"``: distance from the cell centre to the line <= ``radius`` x half the cell diagonal
      (``radius=1``: a circle circumscribing the cell; it also takes cells the line only passes near,
      about 15% more cells on 7x7 grids).

    Returns float tensors of 0/1. A degenerate line (the cell centre is the epipole) gives an all-zero row.
    """
    F = _t(F)
    _check_33(F, "F")
    if mode not in ("distance", "intersect"):
        raise ConfigError(f"epipolar_indicator: mode must be 'distance' or 'intersect', got {mode!r}")
    c1 = grid_centers(size1, s, F.dtype).to(F.device)
    c2 = grid_centers(size2, s, F.dtype).to(F.device)
    out = []
    for direction, src, dst_size, dst in (("12", c1, size2, c2), ("21", c2, size1, c1)):
        lines = epipolar_lines(F, src.expand(*F.shape[:-2], *src.shape), direction)
        if mode == "distance":
            half_diag = 0.5 * math.hypot(dst_size[0] / s, dst_size[1] / s)
            ind = point_line_distance(lines, dst) <= radius * half_diag
        else:
            ind = _line_cell_intersects(lines, dst_size, s)
        out.append(ind.to(F.dtype if F.is_floating_point() else torch.float32))
    return out[0], out[1]


def epipoles(F) -> tuple[torch.Tensor, torch.Tensor]:
    """Homogeneous unit epipoles ``e1`` (F e1 = 0) and ``e2`` (F^T e2 = 0), each (..., 3), via SVD."""
    F = _t(F)
    U, _, Vh = torch.linalg.svd(F)
    return Vh[..., -1, :], U[..., :, -1]


def epipolar_plane_angles(F, size1, size2, s: int = 7, ref_pixel=None, K2=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Angle of the epipolar plane of every grid cell about the baseline, in [0, pi) (Sec. 3.4).

    Epipolar planes form a pencil about the baseline; each is seen in image 2 as the line ``l`` through
    the epipole ``e2`` and its back-projected plane has normal ``n = K2^T l`` in camera-2 coordinates,
    perpendicular to the baseline direction ``b = K2^-1 e2``. A cell of image 1 with centre ``x`` has
    ``l = F x``; a cell of image 2 with centre ``x'`` has ``l = e2 x x'``. The angle is the signed
    rotation about ``b`` from the reference plane (the plane of ``ref_pixel`` (..., 2) in image 1) to the
    cell's plane, taken modulo pi (a plane has no orientation), so corresponding points of both images
    get the same angle. With ``K2=None`` a nominal camera (focal = max(H, W), centred principal point) is
    used: the angle is then a fixed projective reparametrisation of the true one, still equal for
    corresponding points, which is all the encoding needs when only F is known (pseudo ground truth).

    F (..., 3, 3); ``ref_pixel`` defaults to the centre of image 1. Returns ``theta1`` (..., s*s) and
    ``theta2`` (..., s*s).
    """
    F = _t(F)
    _check_33(F, "F")
    batch = F.shape[:-2]
    if K2 is None:
        H, W = size2
        f = float(max(H, W))
        K2 = F.new_tensor([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]])
    K2 = _t(K2).to(F).expand(*batch, 3, 3)
    if ref_pixel is None:
        ref_pixel = F.new_tensor([(size1[1] - 1) / 2, (size1[0] - 1) / 2])
    ref = _t(ref_pixel).to(F).expand(*batch, 2)
    _, e2 = epipoles(F)
    b = torch.linalg.solve(K2, e2.unsqueeze(-1)).squeeze(-1)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-300)
    c1 = grid_centers(size1, s, F.dtype).to(F.device).expand(*batch, s * s, 2)
    c2 = grid_centers(size2, s, F.dtype).to(F.device).expand(*batch, s * s, 2)
    l_ref = epipolar_lines(F, ref.unsqueeze(-2), "12")  # (..., 1, 3)
    l1 = epipolar_lines(F, c1, "12")
    l2 = torch.linalg.cross(e2.unsqueeze(-2).expand_as(homogeneous(c2)), homogeneous(c2), dim=-1)

    def angle(lines):
        n0 = l_ref @ K2  # rows: (K2^T l)^T = l^T K2
        n = lines @ K2
        sin = (torch.linalg.cross(n0.expand_as(n), n, dim=-1) * b.unsqueeze(-2)).sum(-1)
        cos = (n0 * n).sum(-1)
        return torch.remainder(torch.atan2(sin, cos), math.pi)

    return angle(l1), angle(l2)


def random_fundamental(n: int | None = None, seed: int | torch.Generator = 0, dtype=torch.float64) -> torch.Tensor:
    """Random rank-2 "fundamental matrices" for non-matching pairs (Sec. 5.2): (n, 3, 3), or (3, 3) if n is None.

    A Gaussian 3x3 matrix with its smallest singular value set to zero, unit Frobenius norm. ``seed`` is an
    int or a ``torch.Generator`` (advanced in place, for a stream of draws during training).
    """
    g = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))
    m = torch.randn(1 if n is None else n, 3, 3, generator=g, dtype=torch.float64)
    U, S, Vh = torch.linalg.svd(m)
    S = S.clone()
    S[:, 2] = 0
    F = U @ torch.diag_embed(S) @ Vh
    F = (F / F.flatten(1).norm(dim=-1)[:, None, None]).to(dtype)
    return F[0] if n is None else F


def symmetric_epipolar_distance(F, x1, x2) -> torch.Tensor:
    """Symmetric epipolar distance (N,) of correspondences x1, x2 (N, 2) under F: mean of both point-line distances."""
    F, x1, x2 = _t(F), _t(x1), _t(x2)
    h1, h2 = homogeneous(x1.to(F.dtype)), homogeneous(x2.to(F.dtype))
    l2, l1 = h1 @ F.T, h2 @ F
    r = (h2 * l2).sum(-1).abs()
    return 0.5 * (r / l2[:, :2].norm(dim=-1).clamp_min(1e-300) + r / l1[:, :2].norm(dim=-1).clamp_min(1e-300))
