"""Attention rollout and the relevancy marginal, Eq. (7) of "Beyond the CLS Token" (after Abnar & Zuidema).

Eq. (7): ``A~(l_i) = norm(A(l_i) + I) A~(l_{i-1})`` for ``i > 0`` and ``A~(l_0) = A(l_0)``, where ``A(l)`` is
layer ``l``'s attention averaged over heads.

``norm``, decided from the paper's text: Sec. 3.3 says, right after Eq. (7), "identity matrix I is added to
the attention map and then L2 normalized". That sentence is the specification, so ``norm="l2"`` is the
default: each row of ``A + I`` (one query token's attention over the keys, the vector ``norm`` acts on in
Abnar & Zuidema's rollout that Eq. 7 cites) is divided by its L2 norm. The products ``A~`` are then no longer
row-stochastic, which the paper does not need: the marginal is renormalised at the end ("approximated marginal
distributions", last paragraph of Sec. 3.3; ``rollout_relevancy`` divides by the sum), so the relevancy is a
probability vector either way. The two readings differ (per-row scales change how the layers' rows are
weighted in the product), so ``norm="sum"`` keeps the row-sum-1 normalisation of Abnar & Zuidema's code
(relook's default before) as an option. ``vit_tokens`` exposes it as ``rollout_norm``.

Hierarchical models (Swin, CvT): each layer's attention is first resized to the token grid of the final
stage (``resize_attention``: rows averaged and columns summed over the area each final cell covers, which
keeps rows stochastic); for CvT-13 the CLS token exists only in the last stage, so its row and column are
dropped there (``A[1:, 1:]``, Sec. 3.3) and the rows renormalised (``stage_attention``: ``drop_prefix`` then
``resize_attention``; CvT's keys come from a stride-2 projection, so its maps are rectangular until resized).

The relevancy marginal (Sec. 3.3, last paragraph): the rollout rows of all spatial patches are averaged
(prefix tokens such as CLS dropped), giving one weight per patch, normalised to sum 1 and pooled to the
output grid by summing the mass of each cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
import torch.nn.functional as F

from relook.errors import ConfigError, ShapeError


def head_average(attn: torch.Tensor) -> torch.Tensor:
    """(B, H, Nq, Nk) per-head attention -> (B, Nq, Nk); (B, Nq, Nk) passes through."""
    if attn.dim() == 4:
        return attn.mean(1)
    if attn.dim() == 3:
        return attn
    raise ShapeError(f"attention: expected (B, H, Nq, Nk) or (B, Nq, Nk), got shape {tuple(attn.shape)}")


#: row normalisations of ``A + I`` in Eq. (7): the paper's "L2 normalized" (default) and Abnar & Zuidema's sum
ROLLOUT_NORMS = ("l2", "sum")


def _row_normalise(a: torch.Tensor) -> torch.Tensor:
    return a / a.sum(-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)


def _row_l2(a: torch.Tensor) -> torch.Tensor:
    return a / a.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)


def rollout(
    attns: torch.Tensor | Sequence[torch.Tensor], first_identity: bool = False, norm: str = "l2"
) -> torch.Tensor:
    """Attention rollout, Eq. (7): ``A~(l_i) = norm(A(l_i) + I) A~(l_{i-1})``, ``A~(l_0) = A(l_0)``.

    attns: (B, L, N, N) head-averaged attention of layers l_0..l_{L-1} (or a sequence of L tensors of
    shape (B, N, N) or (B, H, N, N), heads then averaged). Returns A~(l_{L-1}): (B, N, N). ``norm``: "l2"
    (each row to unit L2 norm, the paper's text) or "sum" (rows sum to 1, Abnar & Zuidema); see the module
    docstring. With ``first_identity`` the first layer also gets ``norm(A + I)`` (Abnar & Zuidema); Eq. (7)
    uses the raw ``A(l_0)``.
    """
    if norm not in ROLLOUT_NORMS:
        raise ConfigError(f"rollout: norm must be one of {ROLLOUT_NORMS}, got {norm!r}")
    normalise = _row_l2 if norm == "l2" else _row_normalise
    layers = list(attns.unbind(1)) if isinstance(attns, torch.Tensor) else [head_average(a) for a in attns]
    if not layers:
        raise ShapeError("rollout: no attention layers given")
    eye = torch.eye(layers[0].shape[-1], dtype=layers[0].dtype, device=layers[0].device)
    out = normalise(layers[0] + eye) if first_identity else layers[0]
    for a in layers[1:]:
        if a.shape != out.shape:
            raise ShapeError(
                f"rollout: layer attention {tuple(a.shape)} differs from {tuple(out.shape)}; "
                "resize hierarchical stages with resize_attention first"
            )
        out = normalise(a + eye) @ out
    return out


@lru_cache(maxsize=32)
def area_weights(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> torch.Tensor:
    """(dst_h*dst_w, src_h*src_w) adaptive-average-pooling weights: each row averages one output cell."""
    n = src_hw[0] * src_hw[1]
    eye = torch.eye(n, dtype=torch.float64).view(n, 1, *src_hw)
    return F.adaptive_avg_pool2d(eye, dst_hw).view(n, -1).T.contiguous()


def resize_attention(
    attn: torch.Tensor, q_hw: tuple[int, int], k_hw: tuple[int, int], out_hw: tuple[int, int]
) -> torch.Tensor:
    """Resize a spatial attention map (B, Nq, Nk) on grids ``q_hw`` x ``k_hw`` to (B, P, P) on ``out_hw``.

    Rows (queries) are averaged over each output cell, columns (keys) summed, so a row-stochastic input
    stays row-stochastic: ``A' = W_q A W_k^T`` with ``W_q`` the area averages and ``W_k`` the area
    weights normalised per input key.
    """
    if attn.shape[-2:] != (q_hw[0] * q_hw[1], k_hw[0] * k_hw[1]):
        raise ShapeError(f"resize_attention: attention {tuple(attn.shape)} does not match grids {q_hw} x {k_hw}")
    wq = area_weights(tuple(q_hw), tuple(out_hw)).to(attn)
    wk = area_weights(tuple(k_hw), tuple(out_hw)).to(attn)
    wk = wk / wk.sum(0, keepdim=True).clamp_min(1e-12)
    return wq @ attn @ wk.T


def drop_prefix(attn: torch.Tensor, num_prefix: int) -> torch.Tensor:
    """``A[num_prefix:, num_prefix:]`` with rows renormalised (CvT's CLS, Sec. 3.3). attn: (B, Nq, Nk)."""
    if num_prefix == 0:
        return attn
    return _row_normalise(attn[..., num_prefix:, num_prefix:])


def stage_attention(
    attn: torch.Tensor, q_hw: tuple[int, int], k_hw: tuple[int, int], out_hw: tuple[int, int], num_prefix: int = 0
) -> torch.Tensor:
    """One block of a hierarchical transformer (CvT) made ready for the rollout: (B, P, P) on ``out_hw``.

    attn: (B, heads, Nq, Nk) or head-averaged (B, Nq, Nk), ``num_prefix`` prefix tokens (CvT-13's stage-3
    CLS) before ``q_hw`` queries and ``k_hw`` keys (CvT's keys sit on a stride-2 grid). Heads averaged, the
    prefix row and column dropped with rows renormalised (``drop_prefix``: ``A[1:, 1:]``, Sec. 3.3), then
    resized to the final grid (``resize_attention``).
    """
    a = drop_prefix(head_average(attn), num_prefix)
    return resize_attention(a, tuple(q_hw), tuple(k_hw), tuple(out_hw))


def rollout_relevancy(
    rolled: torch.Tensor, num_prefix: int, grid_hw: tuple[int, int], out_hw: tuple[int, int] | None = None
) -> torch.Tensor:
    """Relevancy marginal from a rollout: (B, N, N) -> (B, P) summing to 1 on ``out_hw`` (default ``grid_hw``).

    ``mu_j = mean_i A~[i, j]`` over the spatial rows i and spatial columns j (the first ``num_prefix``
    tokens, e.g. CLS, dropped), normalised, then pooled to ``out_hw`` keeping the total mass.
    """
    n_sp = grid_hw[0] * grid_hw[1]
    if rolled.shape[-1] != num_prefix + n_sp:
        raise ShapeError(f"rollout_relevancy: {rolled.shape[-1]} tokens != {num_prefix} prefix + {grid_hw} grid")
    mu = rolled[:, num_prefix:, num_prefix:].mean(1)
    out_hw = tuple(out_hw or grid_hw)
    if out_hw != tuple(grid_hw):
        w = area_weights(tuple(grid_hw), out_hw).to(mu)
        mu = mu @ (w / w.sum(0, keepdim=True).clamp_min(1e-12)).T
    return mu / mu.sum(-1, keepdim=True).clamp_min(torch.finfo(mu.dtype).tiny)


def window_to_global(
    attn: torch.Tensor, hw: tuple[int, int], window: tuple[int, int], shift: tuple[int, int] = (0, 0)
) -> torch.Tensor:
    """Scatter Swin window attention into one (B, H*W, H*W) map over the whole token grid.

    attn: (B, nW, w*w, w*w) head-averaged attention of the windows of the cyclically shifted (by
    ``-shift``) and bottom/right-padded grid, windows in row-major order (timm's ``window_partition``).
    Entries outside a token's window are 0; attention to padding tokens is dropped and rows renormalised.
    """
    idx = _window_index(hw, window, shift, attn)
    valid = (idx[:, :, None] >= 0) & (idx[:, None, :] >= 0)  # (nW, w*w, w*w)
    win, i, j = valid.nonzero(as_tuple=True)
    out = attn.new_zeros(attn.shape[0], hw[0] * hw[1], hw[0] * hw[1])
    out[:, idx[win, i], idx[win, j]] = attn[:, win, i, j]
    return _row_normalise(out)


def _window_index(
    hw: tuple[int, int], window: tuple[int, int], shift: tuple[int, int], attn: torch.Tensor
) -> torch.Tensor:
    """(nW, w*w) grid index of each window slot (-1 for padding), timm's shift / pad / partition order."""
    (h, w), (wh, ww) = hw, window
    idx = torch.arange(h * w, device=attn.device).view(h, w)
    if any(shift):
        idx = torch.roll(idx, shifts=(-shift[0], -shift[1]), dims=(0, 1))
    hp, wp = -(-h // wh) * wh, -(-w // ww) * ww
    idx = F.pad(idx, (0, wp - w, 0, hp - h), value=-1)
    idx = idx.view(hp // wh, wh, wp // ww, ww).permute(0, 2, 1, 3).reshape(-1, wh * ww)  # (nW, w*w)
    if attn.shape[1:] != (idx.shape[0], wh * ww, wh * ww):
        raise ShapeError(
            f"window attention {tuple(attn.shape)} does not fit {idx.shape[0]} windows of {window} on grid {hw}"
        )
    return idx


def window_attention_resized(
    attn: torch.Tensor, hw: tuple[int, int], window: tuple[int, int], shift: tuple[int, int], out_hw: tuple[int, int]
) -> torch.Tensor:
    """``resize_attention(window_to_global(attn, hw, window, shift), hw, hw, out_hw)`` without forming the
    (H*W, H*W) map: ``sum_w W_q[:, win w] A_w W_k[:, win w]^T``. attn: (B, nW, w*w, w*w) -> (B, P, P)."""
    idx = _window_index(hw, window, shift, attn)
    ok = (idx >= 0).to(attn.dtype)  # (nW, w*w)
    attn = _row_normalise(attn * ok[None, :, None, :])  # attention to padding dropped
    wq = area_weights(tuple(hw), tuple(out_hw)).to(attn)
    wk = wq / wq.sum(0, keepdim=True).clamp_min(1e-12)
    safe = idx.clamp_min(0)
    gq = wq[:, safe].permute(1, 0, 2) * ok[:, None, :]  # (nW, P, w*w), padding rows contribute nothing
    gk = wk[:, safe].permute(1, 0, 2) * ok[:, None, :]
    return torch.einsum("wpi,bwij,wqj->bpq", gq, attn, gk)
