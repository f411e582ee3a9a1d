"""Multi-scale inference of DToP (supplementary Table A11): the descriptor (Eq. 12) of the image at 3
scales, averaged over scales, then L2-normalised.

The scale factors are not in the recoverable text; the convention DToP cites ([19, 52], cirtorch) is
1, 1/sqrt(2), 1/2 of an image whose longer side is first resized to ``max_size``. Queries and database
images each have their own switch (Table A11; both multi-scale by default): ``scales_for``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from relook.errors import ConfigError, ShapeError

DEFAULT_SCALES = (1.0, 1.0 / math.sqrt(2.0), 0.5)


def scales_for(
    role: str, multiscale_query: bool = True, multiscale_database: bool = True, scales: Sequence[float] = DEFAULT_SCALES
) -> tuple[float, ...]:
    """Scales used for a ``role`` ("query" or "database") under the Table A11 switches."""
    if role not in ("query", "database"):
        raise ConfigError(f"dtop multi-scale: role must be query or database, got {role!r}")
    on = multiscale_query if role == "query" else multiscale_database
    return tuple(scales) if on else (1.0,)


def image_tensor(rgb: np.ndarray, max_size: int | None) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float (1, 3, H', W') in [0, 1], longer side resized to ``max_size``."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ShapeError(f"dtop: image must be RGB (H, W, 3), got shape {rgb.shape}")
    x = torch.from_numpy(np.array(rgb, copy=True)).permute(2, 0, 1)[None].float() / 255.0
    if max_size:
        f = max_size / max(x.shape[2:])
        size = (max(1, round(x.shape[2] * f)), max(1, round(x.shape[3] * f)))
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=f < 1)
    return x


def scaled_inputs(image01: torch.Tensor, scales: Sequence[float] = DEFAULT_SCALES, min_side: int = 32) -> list:
    """``image01`` (B, 3, H, W) resized by each of ``scales`` (bilinear, antialiased when shrinking; sides at
    least ``min_side``): the inputs ``multiscale_descriptor`` feeds the model (and DToP-on-ViT's token cache)."""
    out = []
    for s in scales:
        x = image01
        if s != 1.0:
            size = tuple(max(min_side, round(d * s)) for d in image01.shape[2:])
            x = F.interpolate(image01, size=size, mode="bilinear", align_corners=False, antialias=s < 1)
        out.append(x)
    return out


@torch.no_grad()
def multiscale_descriptor(
    model: torch.nn.Module, image01: torch.Tensor, scales: Sequence[float] = DEFAULT_SCALES, min_side: int = 32
) -> torch.Tensor:
    """Mean over ``scales`` of ``model(normalize(resized image))``, L2-normalised.

    model: maps normalised (B, 3, H, W) to (B, N) and has ``normalize``; image01: (B, 3, H, W) in [0, 1].
    Returns (B, N). Sides are kept at least ``min_side`` px so every scale has a patch grid.
    """
    total = None
    for x in scaled_inputs(image01, scales, min_side):
        d = model(model.normalize(x))
        total = d if total is None else total + d
    return F.normalize(total / len(scales), dim=-1)
