"""Training-free baselines of the DToP-on-ViT table, on the same frozen trunk (``vit_trunk.py``).

* ``cls``: the [CLS] token of block ``last_block`` (final LayerNorm applied), L2-normalised: the backbone's own
  global descriptor (the "CLS" row; block 10 chosen on UKBench val, ``scripts/vit_block_choice.py``).
* ``gem``: GeM (p = ``gem_p``, 3 as in Radenovic et al.) of the patch tokens of block ``last_block``,
  L2-normalised. The LayerNormed tokens are signed; GeM clamps them at a small positive value first (its
  definition is for non-negative activations), so negative channels pool to ~0.

Both expose DToP's inference interface (``normalize``, ``forward(images) -> (B, D)``), so the same extractor,
preprocessing and multi-scale averaging serve every row of the table.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from relook.errors import ConfigError
from relook.models.dtop.pooling import gem
from relook.models.dtop.vit_trunk import FrozenViTTrunk

POOLS = ("cls", "gem")


class TrainingFreeViT(nn.Module):
    """forward(images (B, 3, H, W), normalised) -> (B, 384) unit vectors (module doc)."""

    def __init__(
        self,
        pool: str = "cls",
        last_block: int = 10,
        dpe: str = "bilinear",
        gem_p: float = 3.0,
        pretrained: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if pool not in POOLS:
            raise ConfigError(f"dtop_vit training-free pool must be one of {POOLS}, got {pool!r}")
        self.pool, self.gem_p = pool, float(gem_p)
        self.backbone = FrozenViTTrunk(last_block, 1, dpe, pretrained, seed)
        self.register_buffer("mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        return (images01 - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        prefix, patches = self.backbone(images)  # (B, 1, 1, D), (B, 1, h, w, D)
        if self.pool == "cls":
            return F.normalize(prefix[:, 0, 0], dim=-1)
        return F.normalize(gem(patches[:, 0].flatten(1, 2), self.gem_p), dim=-1)
