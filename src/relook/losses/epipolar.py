"""Epipolar Loss (Eq. 1) and Max-Epipolar Loss (Eq. 2) on RRT's raw cross-attention (seed 002, Sec. 3.3).

Inputs everywhere: ``A12`` (B, n1, n2) or per head (B, H, n1, n2) and ``A21`` (B, n2, n1) / (B, H, n2, n1)
are the *raw* cross-attention logits ``Q K'^T`` and ``Q' K^T`` of the last layer (``RRT.raw_cross_attention``);
``I12`` (B, n1, n2) and ``I21`` (B, n2, n1) are the 0/1 epipolar indicators
(``relook.geometry.epipolar.epipolar_indicator``); ``valid`` (B,) bool selects the pairs the loss applies to:
matching pairs whose geometry is reliable (ground truth, or pseudo ground truth that passed the reliability
rule of Sec. 5.2). Other pairs contribute nothing.

Readings (no official code is public; choices written here):

- ``sigma(A)`` uses the raw logits as they come (no 1/sqrt(d) factor), as "raw cross-attention" in Sec. 3.3.
- Heads: Eq. (1)-(2) have one W_Q and one W_K, so A = Q K'^T is the full-width product over all d_model
  dimensions, i.e. the SUM of the heads' logits. Per-head logits (B, H, n, m) given with
  ``per_head=False`` are therefore summed over heads before the loss (one map per direction, as the
  paper's Fig. 4 shows one map); ``per_head=True`` applies the loss to each head's own map and averages
  the per-head losses (an option, not the paper's loss).
- Eq. (1) and (2) sum over i, j (and i) of one pair; over a batch the per-pair sums are averaged over the
  valid pairs. With no valid pair the loss is an exact 0 that is still connected to the graph.
- BCE(sigma(a), y) is computed stably as ``softplus(a) - y a`` (``binary_cross_entropy_with_logits``);
  ``BCE(max_j sigma(A(i,j)), 1) = softplus(-max_j A(i,j))`` since sigma is increasing.
- L_max skips a row whose epipolar line crosses no cell (e_i empty: the line misses the other image).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from relook.errors import ShapeError


def _prepare(A: torch.Tensor, I: torch.Tensor, valid, per_head: bool, name: str):
    if A.dim() == 4 and not per_head:
        A = A.sum(1)  # full-width Q K^T = sum of the heads' products (one W_Q, W_K in Eq. 1-2)
    if A.dim() == 3:
        A = A.unsqueeze(1)
    if A.dim() != 4 or I.dim() != 3 or A.shape[0] != I.shape[0] or tuple(A.shape[-2:]) != tuple(I.shape[-2:]):
        raise ShapeError(
            f"{name}: logits must be (B, [H,] n, m) matching indicator (B, n, m); got "
            f"{tuple(A.shape)} and {tuple(I.shape)}"
        )
    B = A.shape[0]
    v = (
        torch.ones(B, dtype=torch.bool, device=A.device)
        if valid is None
        else torch.as_tensor(valid, device=A.device).bool()
    )
    if v.shape != (B,):
        raise ShapeError(f"{name}: valid must be (B,) = ({B},), got {tuple(v.shape)}")
    return A, I.to(A.dtype).unsqueeze(1), v


def _reduce(per_pair_head: torch.Tensor, v: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """(B, H) per-pair, per-head sums -> mean over heads, mean over valid pairs (0 connected to A if none)."""
    per_pair = per_pair_head.mean(1)
    if not bool(v.any()):
        return A.sum() * 0.0
    return per_pair[v].mean()


def epipolar_loss(A12, A21, I12, I21, valid=None, per_head: bool = False) -> torch.Tensor:
    """L_EPI, Eq. (1): sum_ij BCE(sigma(A12(i,j)), I12(i,j)) + BCE(sigma(A21(i,j)), I21(i,j)); scalar."""
    total = 0.0
    for A, I, name in ((A12, I12, "A12"), (A21, I21, "A21")):
        A, I, v = _prepare(A, I, valid, per_head, f"epipolar_loss {name}")
        bce = F.binary_cross_entropy_with_logits(A, I.expand_as(A), reduction="none")
        total = total + _reduce(bce.sum((-1, -2)), v, A)
    return total


def max_epipolar_loss(A12, A21, I12, I21, valid=None, per_head: bool = False, return_parts: bool = False):
    """L_MaxEPI, Eq. (2) = L_zero + L_max for both directions; scalar (or (L_zero, L_max) if ``return_parts``).

    L_zero = sum over off-line entries (indicator 0) of BCE(sigma(A), 0); L_max = sum over rows i with a
    non-empty line e_i of BCE(max_{j in e_i} sigma(A(i, j)), 1). The max goes through ``torch.amax`` of the
    masked logits, so the L_max gradient of a line reaches only its maximal entry.
    """
    zero, mx = 0.0, 0.0
    for A, I, name in ((A12, I12, "A12"), (A21, I21, "A21")):
        A, I, v = _prepare(A, I, valid, per_head, f"max_epipolar_loss {name}")
        on = I.expand_as(A) > 0.5
        l_zero = (F.softplus(A) * (~on)).sum((-1, -2))
        masked = A.masked_fill(~on, float("-inf"))
        row_max = masked.max(-1).values  # (B, H, n) -> gradient only to the argmax of each line
        has_line = on.any(-1)
        l_max = torch.where(has_line, F.softplus(-row_max.masked_fill(~has_line, 0.0)), torch.zeros_like(row_max)).sum(
            -1
        )
        zero = zero + _reduce(l_zero, v, A)
        mx = mx + _reduce(l_max, v, A)
    return (zero, mx) if return_parts else zero + mx


def epipolar_attention_share(attn12: torch.Tensor, I12: torch.Tensor) -> torch.Tensor:
    """Share of attention mass on epipolar cells (Sec. 5.6 diagnostic), per pair (B,).

    ``attn12`` (B, n1, n2) non-negative attention from image-1 tokens to image-2 tokens (e.g. the softmax
    over image-2 keys of the raw logits); ``I12`` (B, n1, n2). Returns sum(attn * I) / sum(attn) per pair.
    """
    if attn12.shape != I12.shape:
        raise ShapeError(f"epipolar_attention_share: attention {tuple(attn12.shape)} != indicator {tuple(I12.shape)}")
    num = (attn12 * I12.to(attn12.dtype)).sum((-1, -2))
    return num / attn12.sum((-1, -2)).clamp_min(1e-12)
