"""The two branches of DToP on multi-layer tokens of the last k layers (Eq. 5-10).

* ``GlobalBranch`` (Eq. 5, 7): the [CLS] (or distillation) token of each of the last k layers,
  merged over the layers, then one FC layer (the output head, as in the backbone benchmark, Table A5).
* ``LocalBranch`` (Eq. 6, 8-10): the patch tokens of the last k layers merged over the layers to the
  D-channel map Y (Eq. 8), U = ELM(Y) (Eq. 11), Y' = FUSE(Y, U) (Eq. 9, ``fusion.py``), pooled over the
  grid (``pooling.py``) and projected by one FC layer.

Layer merge (``merge``): ``"mean"`` (default) averages the k layers' tokens, the "skip connections across
distant layers" of the main text read as additions, with no parameters; ``"concat"`` concatenates them to
kD (the global FC then reads kD, the local map is brought back to D by a learned kD -> D projection,
3.5M parameters at D = 768, k = 6). Only ``"mean"`` fits the supplementary's 0.3M parameters for all
added components (A.1); see ``models/dtop/model.py``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from relook.errors import ConfigError
from relook.models.dtop.elm import ELM
from relook.models.dtop.fusion import Fusion
from relook.models.dtop.pooling import Pooling

MERGES = ("mean", "concat")


def _check_merge(merge: str) -> None:
    if merge not in MERGES:
        raise ConfigError(f"dtop layer_merge must be one of {', '.join(MERGES)}, got {merge!r}")


class GlobalBranch(nn.Module):
    """prefix tokens (B, k, P, D) -> (B, out_dim); ``token_index`` 0 = [CLS], 1 = distillation."""

    def __init__(self, dim: int, layers: int, out_dim: int, token_index: int = 0, merge: str = "mean") -> None:
        super().__init__()
        _check_merge(merge)
        self.token_index, self.merge = token_index, merge
        self.in_dim = dim if merge == "mean" else layers * dim
        self.fc = nn.Linear(self.in_dim, out_dim)

    def features(self, prefix: torch.Tensor) -> torch.Tensor:
        """The multi-layer token (Eq. 5) before the FC: mean over layers (B, D) or concatenation (B, k*D)."""
        tokens = prefix[:, :, self.token_index]  # (B, k, D)
        return tokens.mean(1) if self.merge == "mean" else tokens.flatten(1)

    def forward(self, prefix: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(prefix))


class LocalBranch(nn.Module):
    """patch tokens (B, k, h, w, D) -> (B, out_dim)."""

    def __init__(
        self,
        dim: int,
        layers: int,
        out_dim: int,
        fusion: str = "orthogonal",
        pooling: str = "avg",
        gem_p: float = 3.0,
        elm: dict[str, Any] | None = None,
        merge: str = "mean",
    ) -> None:
        super().__init__()
        _check_merge(merge)
        # Eq. (8): k layers -> D channels, by the mean (no parameters) or a learned kD -> D projection
        self.merge = nn.Linear(layers * dim, dim) if merge == "concat" and layers > 1 else None
        self.fusion = Fusion(fusion, dim)
        self.elm = ELM(dim, **(elm or {})) if self.fusion.uses_elm else None
        self.pool = Pooling(pooling, gem_p)
        self.fc = nn.Linear(self.fusion.out_dim, out_dim)

    def features(self, patches: torch.Tensor) -> torch.Tensor:
        """The pooled fused map (B, C) before the FC; C = D or 2D (see ``fusion.py``)."""
        b, k, h, w, d = patches.shape
        if self.merge is None:
            y = patches.mean(1)  # (B, h, w, D)
        else:
            y = self.merge(patches.permute(0, 2, 3, 1, 4).reshape(b, h, w, k * d))  # (B, h, w, D)
        u = None
        if self.elm is not None:
            u = self.elm(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.pool(self.fusion(y, u).flatten(1, 2))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(patches))
