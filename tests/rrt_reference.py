"""A slow, obvious transformer-encoder layer written from raw weight tensors, for tests of RRT internals.

Independent of ``relook.models.rrt``: it reads a layer's tensors by the names ``nn.TransformerEncoderLayer``
(and the official RRT code's DETR layer, the same names) give them, and spells out multi-head attention
(``softmax(Q_h K_h^T / sqrt(d_h)) V_h``, heads concatenated, output projection), the ReLU feed-forward and
the LayerNorms; post-LN (official ``normalize_before=False``) unless ``norm_first``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def layer_tensors(state: dict, prefix: str = "") -> dict[str, torch.Tensor]:
    """The twelve tensors of one encoder layer from ``state`` (keys ``prefix + name``), detached, float64."""
    names = [
        "self_attn.in_proj_weight",
        "self_attn.in_proj_bias",
        "self_attn.out_proj.weight",
        "self_attn.out_proj.bias",
        "linear1.weight",
        "linear1.bias",
        "linear2.weight",
        "linear2.bias",
        "norm1.weight",
        "norm1.bias",
        "norm2.weight",
        "norm2.bias",
    ]
    return {n: state[prefix + n].detach().double() for n in names}


def qkv(x: torch.Tensor, w: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Full-width projections Q, K, V (B, L, C) of tokens x (B, L, C): rows [0:C], [C:2C], [2C:3C] of in_proj."""
    C = x.shape[-1]
    W, b = w["self_attn.in_proj_weight"], w["self_attn.in_proj_bias"]
    return tuple(x @ W[i * C : (i + 1) * C].T + b[i * C : (i + 1) * C] for i in range(3))


def attention(
    x: torch.Tensor, w: dict[str, torch.Tensor], nhead: int, key_padding_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-head self-attention of x (B, L, C): (output (B, L, C), probabilities (B, H, L, L))."""
    B, L, C = x.shape
    dh = C // nhead
    q, k, v = qkv(x, w)
    heads, probs = [], []
    for h in range(nhead):
        sl = slice(h * dh, (h + 1) * dh)
        s = q[..., sl] @ k[..., sl].transpose(1, 2) / dh**0.5
        if key_padding_mask is not None:
            s = s.masked_fill(key_padding_mask[:, None, :], float("-inf"))
        p = torch.softmax(s, -1)
        probs.append(p)
        heads.append(p @ v[..., sl])
    out = torch.cat(heads, -1) @ w["self_attn.out_proj.weight"].T + w["self_attn.out_proj.bias"]
    return out, torch.stack(probs, 1)


def encoder_layer(
    x: torch.Tensor,
    w: dict[str, torch.Tensor],
    nhead: int,
    key_padding_mask: torch.Tensor | None = None,
    norm_first: bool = False,
) -> torch.Tensor:
    """One encoder layer (dropout 0) on x (B, L, C) float64."""
    C = x.shape[-1]

    def norm(z, i):
        return F.layer_norm(z, (C,), w[f"norm{i}.weight"], w[f"norm{i}.bias"], 1e-5)

    def ff(z):
        return torch.relu(z @ w["linear1.weight"].T + w["linear1.bias"]) @ w["linear2.weight"].T + w["linear2.bias"]

    if norm_first:
        x = x + attention(norm(x, 1), w, nhead, key_padding_mask)[0]
        return x + ff(norm(x, 2))
    x = norm(x + attention(x, w, nhead, key_padding_mask)[0], 1)
    return norm(x + ff(x), 2)
