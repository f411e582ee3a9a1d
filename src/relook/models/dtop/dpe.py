"""Dynamic position embedding (DPE), Eq. (2) of DToP, and its Table A9 baselines.

The ViT position embedding is learned for one patch grid (e.g. 24x24 at 384 px). Group-size sampling
(Table A12) feeds every mini-batch at its own size, so DPE resizes the pretrained grid of embeddings to
the input's patch grid ``(h, w)``. Reading of Eq. (2) (main text not recoverable, see the method notes):
the embeddings of prefix tokens ([CLS], distillation) are kept as they are; the grid part is reshaped to
the pretrained ``(H0, W0, D)`` grid, interpolated to ``(h, w)`` (``align_corners=False``, no
antialiasing) and flattened row-major. At the pretrained grid it is returned unchanged (no resampling).

Modes (Table A9): ``bilinear`` (default, best), ``bicubic``, ``none`` (no position embedding at all) and
``cpe`` (conditional position encoding of CPVT: a depth-wise 3x3 convolution of the token grid added to
the tokens after the first encoder layer; implemented by ``ConditionalPositionEncoding``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from relook.errors import ConfigError, ShapeError

DPE_MODES = ("bilinear", "bicubic", "none", "cpe")


def resize_pos_embed(
    pos_embed: torch.Tensor,
    num_prefix: int,
    src_grid: tuple[int, int],
    dst_grid: tuple[int, int],
    mode: str = "bilinear",
) -> torch.Tensor:
    """Resize a position embedding to a new patch grid (Eq. 2).

    pos_embed: (1, P + H0*W0, D) with P = ``num_prefix`` leading prefix-token entries.
    Returns (1, P + h*w, D); the same tensor object when ``dst_grid == src_grid``.
    """
    if mode not in ("bilinear", "bicubic"):
        raise ConfigError(f"resize_pos_embed: mode must be bilinear or bicubic, got {mode!r}")
    (h0, w0), (h, w) = tuple(src_grid), tuple(dst_grid)
    if pos_embed.ndim != 3 or pos_embed.shape[1] != num_prefix + h0 * w0:
        raise ShapeError(
            f"resize_pos_embed: pos_embed shape {tuple(pos_embed.shape)} does not hold "
            f"{num_prefix} prefix + {h0}x{w0} grid entries"
        )
    if (h, w) == (h0, w0):
        return pos_embed
    if h <= 0 or w <= 0:
        raise ShapeError(f"resize_pos_embed: empty target grid {(h, w)}; the image is smaller than one patch")
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    dim = grid.shape[-1]
    grid = grid.reshape(1, h0, w0, dim).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(h, w), mode=mode, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, h * w, dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


class ConditionalPositionEncoding(nn.Module):
    """CPE baseline of Table A9 (CPVT's PEG): tokens + depthwise 3x3 conv of the token grid.

    forward(x: (B, h, w, D)) -> (B, h, w, D).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + y
