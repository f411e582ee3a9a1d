"""Epipolar Loss (Eq. 1) and Max-Epipolar Loss (Eq. 2) on RRT's raw cross-attention (seed 002, Sec. 3.3).

Inputs everywhere: ``A12`` (B, n1, n2) or per head (B, H, n1, n2) and ``A21`` (B, n2, n1) / (B, H, n2, n1)
are the *raw* (pre-softmax) cross-attention logits of the last layer (``RRT.raw_cross_attention``; which
reading of the heads and scale, see ``relook.train.epipolar``); ``I12`` (B, n1, n2) and ``I21`` (B, n2, n1)
are the 0/1 epipolar indicators (``relook.geometry.epipolar.epipolar_indicator``); ``valid`` (B,) bool
selects the pairs the loss applies to: matching pairs whose geometry is reliable (ground truth, or pseudo
ground truth that passed the reliability rule of Sec. 5.2). Other pairs contribute nothing.

Readings (no official code is public; choices written here):

- Heads: per-head logits (B, H, n, m) given with ``per_head=False`` are summed over heads before the loss
  (one map per direction); ``per_head=True`` applies the loss to each head's own map and averages the
  per-head losses. The caller picks the map (``relook.train.epipolar``: by default the head MEAN of the
  scaled logits, the pre-softmax counterpart of the head-averaged map RRT's code reports).
- Eq. (1) and (2) sum over i, j (and i) of one pair; over a batch the per-pair sums are averaged over the
  valid pairs. With no valid pair the loss is an exact 0 that is still connected to the graph.
- BCE(sigma(a), y) is computed stably as ``softplus(a) - y a`` (``binary_cross_entropy_with_logits``);
  ``BCE(max_j sigma(A(i,j)), 1) = softplus(-max_j A(i,j))`` since sigma is increasing.
- L_max skips a row whose epipolar line crosses no cell (e_i empty: the line misses the other image).
- ``offset="prior"`` (relook's default) evaluates sigma(A + b) with a constant b per pair and direction,
  the logit of the loss's own no-information optimum (``prior_offset``): rho = mean of the indicator for
  Eq. (1); rho = R / (R + Z) for Eq. (2) (R rows with a line, Z off-line cells). ``offset="zero"`` is the
  literal sigma(A). Why: with b = 0 the best map that carries no position information is the constant
  logit(rho) ~ -1.7 on every cell. A = Q K'^T has no free constant (the in-projection biases start at 0,
  and b_Q . b_K is a product, flat at 0), and the last layer's input is LayerNorm-ed (fixed norm), so
  the fastest way for the network to make every logit equal and negative is to turn every token into one
  shared vector: content AND position vanish from y_{L-1}, A becomes a constant, and a constant is a
  saddle (the pattern's gradient on W_Q needs K to vary and vice versa). Measured on the controlled
  case of ``tests/train/test_epipolar_controlled.py`` (one fixed pose, random content, 6-layer RRT,
  AdamW lr 1e-4): with b = 0 the token variance of y_{L-1} falls from 34 to 2 within 50 steps and the
  share of softmax attention on epipolar cells stays at chance (14.95%); with b = logit(rho) and the
  scaled head-mean logits the network keeps its tokens and learns the lines (positions only: 85% share
  after 300 steps). The softmax is invariant to a constant added to a row, so sigma(A + b) supervises
  exactly the attention the paper supervises; b only moves where the BCE puts "no evidence" to A = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from relook.errors import ConfigError, ShapeError

OFFSETS = ("prior", "zero")


def prior_offset(I: torch.Tensor, kind: str = "epi") -> torch.Tensor:
    """Constant logit offset b (..., 1, 1) per map: logit(rho) of the loss's no-information optimum.

    ``I`` (..., n, m) 0/1. ``kind="epi"`` (Eq. 1): rho = mean(I), the minimiser of sum_ij BCE(sigma(a), I_ij)
    over one constant a. ``kind="maxepi"`` (Eq. 2): a constant a gives L_zero = Z softplus(a) and L_max =
    R softplus(-a) (R rows with a line, Z cells off every line), minimised at sigma(a) = R / (R + Z).
    rho is clipped to [1 / (2 n m), 1 - 1 / (2 n m)] so that an empty or full map gives a finite b.
    """
    n, m = I.shape[-2:]
    on = I > 0.5
    if kind == "epi":
        rho = on.to(torch.float64).mean((-1, -2))
    elif kind == "maxepi":
        R = on.any(-1).to(torch.float64).sum(-1)
        Z = (~on).to(torch.float64).sum((-1, -2))
        rho = R / (R + Z).clamp_min(1.0)
    else:
        raise ConfigError(f"prior_offset: kind must be 'epi' or 'maxepi', got {kind!r}")
    eps = 0.5 / (n * m)
    rho = rho.clamp(eps, 1 - eps)
    return torch.log(rho / (1 - rho)).to(I.dtype)[..., None, None]


def _offset(I: torch.Tensor, offset: str, kind: str) -> torch.Tensor | float:
    if offset not in OFFSETS:
        raise ConfigError(f"epipolar loss: offset must be one of {OFFSETS}, got {offset!r}")
    return prior_offset(I, kind) if offset == "prior" else 0.0


def _prepare(A: torch.Tensor, I: torch.Tensor, valid, per_head: bool, name: str):
    if A.dim() == 4 and not per_head:
        A = A.sum(1)  # one map per direction: the sum of the given heads' maps
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


def epipolar_loss(A12, A21, I12, I21, valid=None, per_head: bool = False, offset: str = "prior") -> torch.Tensor:
    """L_EPI, Eq. (1): sum_ij BCE(sigma(A12(i,j) + b12), I12(i,j)) + BCE(sigma(A21(i,j) + b21), I21(i,j));
    scalar. b = ``prior_offset(I, "epi")`` with ``offset="prior"``, 0 with ``offset="zero"`` (literal)."""
    total = 0.0
    for A, I, name in ((A12, I12, "A12"), (A21, I21, "A21")):
        A, I, v = _prepare(A, I, valid, per_head, f"epipolar_loss {name}")
        A = A + _offset(I, offset, "epi")
        bce = F.binary_cross_entropy_with_logits(A, I.expand_as(A), reduction="none")
        total = total + _reduce(bce.sum((-1, -2)), v, A)
    return total


def max_epipolar_loss(
    A12, A21, I12, I21, valid=None, per_head: bool = False, return_parts: bool = False, offset: str = "prior"
):
    """L_MaxEPI, Eq. (2) = L_zero + L_max for both directions; scalar (or (L_zero, L_max) if ``return_parts``).

    L_zero = sum over off-line entries (indicator 0) of BCE(sigma(A), 0); L_max = sum over rows i with a
    non-empty line e_i of BCE(max_{j in e_i} sigma(A(i, j)), 1). The max goes through ``torch.amax`` of the
    masked logits, so the L_max gradient of a line reaches only its maximal entry. Both parts see A + b,
    b = ``prior_offset(I, "maxepi")`` with ``offset="prior"``, 0 with ``offset="zero"`` (literal Eq. 2).
    """
    zero, mx = 0.0, 0.0
    for A, I, name in ((A12, I12, "A12"), (A21, I21, "A21")):
        A, I, v = _prepare(A, I, valid, per_head, f"max_epipolar_loss {name}")
        A = A + _offset(I, offset, "maxepi")
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
