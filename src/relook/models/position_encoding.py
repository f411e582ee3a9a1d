"""Frequency (sine) position encoding of 2D positions, psi(p) in the RRT recap (Sec. 3.1, epipolar paper).

The official RRT code (SOP variant) uses the DETR sine encoding with ``normalize=True, scale=2.0`` on the
7x7 grid: row/column indices ``1..h`` / ``1..w`` are divided by ``h`` / ``w`` and multiplied by ``scale``,
so a position ``p`` in (0, 1] becomes ``p * scale``. Here positions are given directly as normalised
coordinates ``(x / W, y / H)`` (any point set, grid or keypoints), which is the same encoding with the
grid convention left to the caller (``grid_positions`` reproduces the official one exactly).
"""

from __future__ import annotations

import torch

from relook.errors import ConfigError


def sine_position_encoding(
    positions: torch.Tensor, dim: int, temperature: float = 10000.0, scale: float = 2.0
) -> torch.Tensor:
    """psi(p): ``positions`` (..., 2) as normalised (x, y) -> (..., dim) encoding.

    Layout (as DETR / official RRT): the first ``dim/2`` channels encode y, the last ``dim/2`` encode x;
    within an axis channel ``2j`` is ``sin(s p / T^(2j/(dim/2)))`` and ``2j+1`` the matching cosine,
    with ``s = scale`` and ``T = temperature``.
    """
    if dim % 4:
        raise ConfigError(f"sine position encoding needs dim divisible by 4, got {dim}")
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=positions.device)
    freq = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / half)  # (half,)
    p = positions.float() * scale
    out = []
    for axis in (1, 0):  # y first, then x
        ang = p[..., axis : axis + 1] / freq  # (..., half)
        out.append(torch.stack((ang[..., 0::2].sin(), ang[..., 1::2].cos()), dim=-1).flatten(-2))
    return torch.cat(out, dim=-1)


def grid_positions(h: int, w: int) -> torch.Tensor:
    """Normalised (x, y) of an ``h x w`` grid in row-major order, official RRT/DETR convention.

    Cell (i, j) -> ((j + 1) / w, (i + 1) / h); returns (h*w, 2).
    """
    ys, xs = torch.meshgrid(
        torch.arange(1, h + 1, dtype=torch.float32) / h, torch.arange(1, w + 1, dtype=torch.float32) / w, indexing="ij"
    )
    return torch.stack((xs, ys), dim=-1).reshape(h * w, 2)
