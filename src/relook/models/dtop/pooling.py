"""Spatial pooling of the fused patch map Y' (Eq. 10) into one vector per image.

``avg`` is the default: the supplementary's backbone benchmark says the patch features "undergo global
average pooling" (Table A5); the full model's pooling is not in the recoverable text. ``gem``
(generalised mean, learnable p, init 3) and ``max`` are options.
"""

from __future__ import annotations

import torch
from torch import nn

from relook.errors import ConfigError

POOLINGS = ("avg", "gem", "max")


def gem(x: torch.Tensor, p: torch.Tensor | float, eps: float = 1e-6) -> torch.Tensor:
    """Generalised mean over tokens: (B, M, C) -> (B, C) = mean(clamp(x, eps)^p)^(1/p)."""
    return x.clamp_min(eps).pow(p).mean(1).pow(1.0 / p)


class Pooling(nn.Module):
    """(B, M, C) tokens -> (B, C)."""

    def __init__(self, kind: str = "avg", p: float = 3.0) -> None:
        super().__init__()
        if kind not in POOLINGS:
            raise ConfigError(f"dtop pooling: unknown kind {kind!r}; known: {', '.join(POOLINGS)}")
        self.kind = kind
        if kind == "gem":
            self.p = nn.Parameter(torch.tensor(float(p)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "avg":
            return x.mean(1)
        if self.kind == "max":
            return x.amax(1)
        return gem(x, self.p)
