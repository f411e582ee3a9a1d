"""The training-free teacher RRT is distilled onto: global cosine + w * Chamfer similarity of the same tokens.

relook's own option (not in the RRT paper; issue "distil, then fine-tune"). For a (query, candidate) pair
with L2-normalised global descriptors ``g, g'`` and local tokens ``x_1..x_n`` / ``x'_1..x'_m``::

    chamfer(X, X') = 1/2 [ mean_i max_j cos(x_i, x'_j) + mean_j max_i cos(x'_j, x_i) ]     (T1)
    teacher(I, I') = cos(g, g') + w * chamfer(X, X')                                        (T2)

(T1) is the symmetric Chamfer similarity of the two token sets (each token's best match on the other
side, averaged, both ways); (T2) adds it to the global similarity with a fixed weight (w = 1). It reads
exactly what RRT reads (the global descriptors and the local tokens of both images), so its scores are a
target RRT's logit can reproduce in principle. Pure functions of tensors, batched over B pairs; padded
tokens (mask True) never win a max and never enter a mean; a side without tokens gives chamfer 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from relook.errors import ShapeError

#: the default Chamfer weight w of (T2)
CHAMFER_WEIGHT = 1.0


def chamfer_similarity(
    q: torch.Tensor, c: torch.Tensor, q_mask: torch.Tensor | None = None, c_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """(T1) for B pairs: q (B, n, d), c (B, m, d) tokens (normalised here), masks (B, n) / (B, m) bool,
    True = padding. Returns (B,)."""
    if q.dim() != 3 or c.dim() != 3 or q.shape[0] != c.shape[0] or q.shape[2] != c.shape[2]:
        raise ShapeError(f"chamfer: expected (B, n, d) and (B, m, d), got {tuple(q.shape)} and {tuple(c.shape)}")
    B, n, m = q.shape[0], q.shape[1], c.shape[1]
    qm = torch.zeros(B, n, dtype=torch.bool, device=q.device) if q_mask is None else q_mask.bool()
    cm = torch.zeros(B, m, dtype=torch.bool, device=q.device) if c_mask is None else c_mask.bool()
    if n == 0 or m == 0:
        return q.new_zeros(B)
    s = F.normalize(q.float(), dim=-1) @ F.normalize(c.float(), dim=-1).transpose(1, 2)  # (B, n, m)
    s = s.masked_fill(qm[:, :, None] | cm[:, None, :], float("-inf"))

    def directed(best: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        ok = valid & torch.isfinite(best)
        return torch.where(ok, best, 0.0).sum(1) / ok.sum(1).clamp(min=1)

    return 0.5 * (directed(s.amax(2), ~qm) + directed(s.amax(1), ~cm))


def teacher_score(
    q_global: torch.Tensor,
    c_global: torch.Tensor,
    q_local: torch.Tensor,
    c_local: torch.Tensor,
    q_mask: torch.Tensor | None = None,
    c_mask: torch.Tensor | None = None,
    weight: float = CHAMFER_WEIGHT,
) -> torch.Tensor:
    """(T2) for B pairs: globals (B, D), tokens (B, n, d) / (B, m, d), masks as ``chamfer_similarity``.
    Returns (B,) float32."""
    if q_global.dim() != 2 or q_global.shape != c_global.shape or q_global.shape[0] != q_local.shape[0]:
        raise ShapeError(
            f"teacher: expected globals (B, D) matching the tokens' B, got {tuple(q_global.shape)} and "
            f"{tuple(c_global.shape)} for {q_local.shape[0]} pairs"
        )
    cos = (F.normalize(q_global.float(), dim=-1) * F.normalize(c_global.float(), dim=-1)).sum(-1)
    return cos + float(weight) * chamfer_similarity(q_local, c_local, q_mask, c_mask)


def teacher_of_sides(q: dict, c: dict, weight: float = CHAMFER_WEIGHT) -> torch.Tensor:
    """(T2) for packed sides (``relook.models.rrt.inputs``: ``global``, ``local``, ``mask``); (B,)."""
    if q.get("global") is None or c.get("global") is None:
        raise ShapeError("teacher: the sides carry no global descriptors (train an RRT with a global token)")
    return teacher_score(q["global"], c["global"], q["local"], c["local"], q["mask"], c["mask"], weight)
