"""The two branches of DToP on multi-layer tokens of the last k layers (Eq. 5-10).

* ``GlobalBranch`` (Eq. 5, 7): the [CLS] (or distillation) token of each of the last k layers,
  concatenated to a kD vector, then one FC layer. Reading: the supplementary says the k multi-layer
  features are "collected"; concatenation + FC is what keeps each layer's information and matches the
  FC-to-N output of the backbone benchmark (Table A5).
* ``LocalBranch`` (Eq. 6, 8-10): the patch tokens of the last k layers concatenated along channels
  (kD) and brought back to D by a 1x1 projection (Y of Eq. 8), U = ELM(Y) (Eq. 11), Y' = FUSE(Y, U)
  (Eq. 9, ``fusion.py``), pooled over the grid (``pooling.py``) and projected by one FC layer.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from relook.models.dtop.elm import ELM
from relook.models.dtop.fusion import Fusion
from relook.models.dtop.pooling import Pooling


class GlobalBranch(nn.Module):
    """prefix tokens (B, k, P, D) -> (B, out_dim); ``token_index`` 0 = [CLS], 1 = distillation."""

    def __init__(self, dim: int, layers: int, out_dim: int, token_index: int = 0) -> None:
        super().__init__()
        self.token_index = token_index
        self.fc = nn.Linear(layers * dim, out_dim)

    def features(self, prefix: torch.Tensor) -> torch.Tensor:
        """The concatenated multi-layer token (B, k*D) before the FC."""
        return prefix[:, :, self.token_index].flatten(1)

    def forward(self, prefix: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(prefix))


class LocalBranch(nn.Module):
    """patch tokens (B, k, h, w, D) -> (B, out_dim)."""

    def __init__(self, dim: int, layers: int, out_dim: int, fusion: str = "orthogonal", pooling: str = "avg",
                 gem_p: float = 3.0, elm: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.merge = nn.Linear(layers * dim, dim) if layers > 1 else nn.Identity()  # Eq. (8): kD -> D
        self.fusion = Fusion(fusion, dim)
        self.elm = ELM(dim, **(elm or {})) if self.fusion.uses_elm else None
        self.pool = Pooling(pooling, gem_p)
        self.fc = nn.Linear(self.fusion.out_dim, out_dim)

    def features(self, patches: torch.Tensor) -> torch.Tensor:
        """The pooled fused map (B, C) before the FC; C = D or 2D (see ``fusion.py``)."""
        b, k, h, w, d = patches.shape
        y = self.merge(patches.permute(0, 2, 3, 1, 4).reshape(b, h, w, k * d))  # (B, h, w, D)
        u = None
        if self.elm is not None:
            u = self.elm(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.pool(self.fusion(y, u).flatten(1, 2))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(patches))
