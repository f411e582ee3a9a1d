"""FUSE of Eq. (9): Y' = h(Y, U), the ELM input Y and output U fused per token (Eq. A13-A21).

Tokens are on the LAST axis: Y, U: (..., D). Output widths (``fused_dim``):

=================  =========================================  ======
kind               h(Y, U)                                    width
=================  =========================================  ======
none_wo_elm        Y                              (Eq. A14)   D
none_w_elm         U                              (Eq. A15)   D
sum                Y + U                          (Eq. A16)   D
hadamard           Y * U                          (Eq. A17)   D
concat             [Y; U]                         (Eq. A18)   2D
fast_normalized    (w1 Y + w2 U) / (w1 + w2 + e)  (Eq. A19)   D    w = relu(v), v learnable (init 1)
orthogonal         [y - proj_u(y); u] per token   (Eq. A20)   2D   default; proj in Eq. A21
=================  =========================================  ======
"""

from __future__ import annotations

import torch
from torch import nn

from relook.errors import ConfigError, ShapeError

FUSIONS = ("orthogonal", "none_wo_elm", "none_w_elm", "sum", "hadamard", "concat", "fast_normalized")


def project(y: torch.Tensor, u: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """proj_u(y) = <y, u> / <u, u> u per token (Eq. A21); a zero u projects to 0. (..., D) -> (..., D)."""
    return (y * u).sum(-1, keepdim=True) / (u * u).sum(-1, keepdim=True).clamp_min(eps) * u


def orthogonal_fusion(y: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt per token (Eq. A20): [y - proj_u(y); u]. (..., D), (..., D) -> (..., 2D)."""
    return torch.cat([y - project(y, u), u], dim=-1)


def fused_dim(kind: str, dim: int) -> int:
    """Channel width of h(Y, U) for tokens of width ``dim``."""
    if kind not in FUSIONS:
        raise ConfigError(f"dtop fusion: unknown kind {kind!r}; known: {', '.join(FUSIONS)}")
    return 2 * dim if kind in ("orthogonal", "concat") else dim


class Fusion(nn.Module):
    """h(Y, U) of kind ``kind``; ``uses_elm`` is False only for ``none_wo_elm`` (U is then not computed)."""

    def __init__(self, kind: str = "orthogonal", dim: int = 768, eps: float = 1e-4) -> None:
        super().__init__()
        self.kind, self.out_dim, self.eps = kind, fused_dim(kind, dim), eps
        self.uses_elm = kind != "none_wo_elm"
        if kind == "fast_normalized":
            self.v = nn.Parameter(torch.ones(2))

    def forward(self, y: torch.Tensor, u: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "none_wo_elm":
            return y
        if u is None or u.shape != y.shape:
            raise ShapeError(
                f"dtop fusion {self.kind}: U must have Y's shape {tuple(y.shape)}, "
                f"got {None if u is None else tuple(u.shape)}"
            )
        if self.kind == "none_w_elm":
            return u
        if self.kind == "sum":
            return y + u
        if self.kind == "hadamard":
            return y * u
        if self.kind == "concat":
            return torch.cat([y, u], dim=-1)
        if self.kind == "fast_normalized":
            w = torch.relu(self.v)
            return (w[0] * y + w[1] * u) / (w.sum() + self.eps)
        return orthogonal_fusion(y, u)
