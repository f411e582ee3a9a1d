"""ArcFace (additive angular margin) loss, the training loss of DToP (supplementary A.1: margin 0.15).

logit_j = s * cos(theta_j) for j != y and s * cos(theta_y + m) for the target class y, where
cos(theta_j) = <x / |x|, w_j / |w_j|>; cross-entropy over classes, averaged over the batch.
Where theta_y + m would pass pi (cos no longer decreasing) the target logit is
s * (cos(theta_y) - m sin(m)), the usual monotonic continuation (as in insightface and
pytorch-metric-learning).

Units: ``margin`` in RADIANS (0.15 as in DToP); pytorch-metric-learning's ``ArcFaceLoss`` takes degrees.
Scale ``s = 30``: DToP does not state it; DOLG, whose fusion DToP follows and whose ArcFace margin 0.15 it
shares, trains with s = 30.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from relook.errors import ShapeError


def arcface_logits(
    embeddings: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, margin: float = 0.15, scale: float = 30.0
) -> torch.Tensor:
    """Margin-adjusted scaled logits. embeddings (B, D), weight (C, D), labels (B,) int -> (B, C)."""
    if embeddings.ndim != 2 or weight.ndim != 2 or embeddings.shape[1] != weight.shape[1]:
        raise ShapeError(
            f"arcface: embeddings (B, D) and weight (C, D) must share D; got "
            f"{tuple(embeddings.shape)} and {tuple(weight.shape)}"
        )
    if labels.shape != embeddings.shape[:1]:
        raise ShapeError(f"arcface: labels must be (B,)={embeddings.shape[:1]}, got {tuple(labels.shape)}")
    cos = F.normalize(embeddings, dim=1) @ F.normalize(weight, dim=1).t()
    target = cos.gather(1, labels[:, None]).clamp(-1.0, 1.0)
    theta = torch.acos(target)
    with_margin = torch.where(theta <= math.pi - margin, torch.cos(theta + margin), target - margin * math.sin(margin))
    return scale * cos.scatter(1, labels[:, None], with_margin)


def arcface_loss(
    embeddings: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, margin: float = 0.15, scale: float = 30.0
) -> torch.Tensor:
    """Mean ArcFace cross-entropy (scalar); an empty batch gives 0."""
    if embeddings.shape[0] == 0:
        return embeddings.sum() * 0.0
    return F.cross_entropy(arcface_logits(embeddings, weight, labels, margin, scale), labels)


class ArcFace(nn.Module):
    """Holds the class centres W (C, D); forward(embeddings (B, D), labels (B,)) -> scalar loss."""

    def __init__(self, embedding_dim: int, num_classes: int, margin: float = 0.15, scale: float = 30.0) -> None:
        super().__init__()
        self.margin, self.scale = margin, scale
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return arcface_loss(embeddings, self.weight, labels, self.margin, self.scale)
