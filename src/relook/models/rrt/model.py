"""Reranking Transformer (RRT; Tan, Yuan, Ordonez, ICCV 2021): a pair of images -> one similarity logit.

Input sequence (RRT recap, Sec. 3.1 of the epipolar paper; official code for the rest)::

    [CLS, (g), f(x_1) .. f(x_n), SEP, (g'), f'(x'_1) .. f'(x'_m)]
    f(x_i)  = x_i  + psi(p_i)  + beta      (+ scale embedding of x_i, landmark variant)
    f'(x'_j) = x'_j + psi(p'_j) + beta'

``psi`` is the sine position encoding (``relook.models.position_encoding``), ``beta`` / ``beta'`` are learned
segment embeddings that tell the query (first image) from the candidate (second image); CLS and SEP are
their own learned segment embeddings. The optional global tokens ``g`` are the images' global
descriptors through a learned ``Linear(d_global -> d_model)`` plus their own segment embeddings.
Encoder: ``num_layers`` post-LayerNorm transformer layers (``nn.TransformerEncoderLayer``), and the CLS
output goes through ``Linear(d_model -> 1)`` to the logit.

Presets (``variant``): ``"sop"`` = 7x7 ResNet-50 grid, sine PE, no global token (official RRT_SOP);
``"landmark"`` = DELG top-500 keypoints, 2048-d global token, scale embedding, no PE, inputs
L2-normalised (official RRT_GLD: "the final model does not use position embeddings").

The model is asymmetric by definition: the first image is the query (segment ``beta``) and the second
the candidate (``beta'``). Swapping the images AND the two segment embeddings gives the same logit
(the encoder has no sequence-order encoding); swapping only the images in general does not.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from relook.config import merge_conf
from relook.errors import ConfigError, ShapeError
from relook.models.position_encoding import sine_position_encoding

#: DELG's seven image scales; a local feature's scale index is the last bin <= its scale (official code)
DELG_SCALES = (0.5, 0.70710677, 1.0, 1.41421354, 2.0, 2.82842708, 4.0)
#: segment ids (rows of ``segment_embed``)
CLS, SEP, QUERY_LOCAL, CAND_LOCAL, QUERY_GLOBAL, CAND_GLOBAL = range(6)

VARIANTS: dict[str, dict[str, Any]] = {
    "sop": {
        "d_global": 0,
        "position_encoding": "sine",
        "scale_embedding": False,
        "normalize_inputs": False,
        "input": "grid",
        "max_locals": 49,
    },
    "landmark": {
        "d_global": 2048,
        "position_encoding": "none",
        "scale_embedding": True,
        "normalize_inputs": True,
        "input": "keypoints",
        "max_locals": 500,
    },
}


def scale_indices(scales: torch.Tensor, bins=DELG_SCALES) -> torch.Tensor:
    """Scale of each local feature -> index of its DELG scale bin in [0, len(bins)) (official rule)."""
    idx = [bisect.bisect_right(bins, float(s)) - 1 for s in scales.reshape(-1).tolist()]
    return torch.tensor(idx, dtype=torch.long).clamp(0, len(bins) - 1).reshape(scales.shape)


@dataclass
class RRTOutput:
    """What ``RRT.forward`` returns. B pairs, L = sequence length, H heads, C = d_model.

    ``logits`` (B,); ``attentions``: list over layers of softmax attention (B, H, L, L) (row = query token,
    column = key token) or None; ``last_input``: input of the last layer (B, L, C) or None;
    ``raw_cross``: (A12 (B, n1, n2), A21 (B, n2, n1)) full-width unscaled logits Q K'^T (the sum of the
    heads' logits, ``RRT.raw_cross_attention``) or None;
    ``n_query`` / ``n_candidate``: number of local tokens of each image (padded count).
    """

    logits: torch.Tensor
    n_query: int
    n_candidate: int
    attentions: list[torch.Tensor] | None = None
    last_input: torch.Tensor | None = None
    raw_cross: tuple[torch.Tensor, torch.Tensor] | None = None


class RRT(nn.Module):
    """The Reranking Transformer. Build with ``RRT(**conf)`` or ``RRT(variant="landmark")``."""

    default_conf: ClassVar[dict[str, Any]] = {
        "variant": "sop",  # preset filling the keys below (sop | landmark); explicit keys win
        "d_model": 128,  # token width
        "nhead": 4,  # attention heads
        "num_layers": 6,  # encoder layers
        "dim_feedforward": 1024,  # feed-forward width (official code)
        "dropout": 0.0,  # dropout everywhere (official: 0)
        "norm_first": False,  # False = post-LayerNorm (official normalize_before=False)
        "d_local": 128,  # input local descriptor dim; != d_model adds a Linear projection
        "d_global": None,  # global descriptor dim for a global token; 0 = no global token
        "position_encoding": None,  # "sine" (frequency PE psi) or "none"
        "pe_temperature": 10000.0,  # sine PE temperature
        "pe_scale": 2.0,  # sine PE multiplies normalised positions by this (official 2.0)
        "scale_embedding": None,  # add a learned embedding of each local's DELG scale bin
        "normalize_inputs": None,  # L2-normalise local and (projected) global vectors first
        "input": None,  # how locals are chosen upstream: "grid" (all cells) or "keypoints"
        "max_locals": None,  # locals per image kept upstream (top by attention for keypoints)
    }

    def __init__(self, **conf: Any) -> None:
        super().__init__()
        variant = conf.get("variant", "sop")
        if variant not in VARIANTS:
            raise ConfigError(f"RRT: unknown variant {variant!r}; known: {sorted(VARIANTS)}")
        given = {k: v for k, v in conf.items() if v is not None}
        c = merge_conf(self.default_conf, given, "RRT")
        c = {**c, **{k: v for k, v in VARIANTS[variant].items() if given.get(k) is None}}
        if c["position_encoding"] not in ("sine", "none"):
            raise ConfigError(f"RRT: position_encoding must be 'sine' or 'none', got {c['position_encoding']!r}")
        if c["input"] not in ("grid", "keypoints"):
            raise ConfigError(f"RRT: input must be 'grid' or 'keypoints', got {c['input']!r}")
        if c["d_model"] % c["nhead"]:
            raise ConfigError(f"RRT: d_model {c['d_model']} is not divisible by nhead {c['nhead']}")
        self.conf = c
        d = c["d_model"]
        self.local_proj = nn.Linear(c["d_local"], d) if c["d_local"] != d else nn.Identity()
        self.global_proj = nn.Linear(c["d_global"], d) if c["d_global"] else None
        self.scale_embed = nn.Embedding(len(DELG_SCALES), d) if c["scale_embedding"] else None
        self.segment_embed = nn.Embedding(6, d)
        self.encoder = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d,
                c["nhead"],
                c["dim_feedforward"],
                c["dropout"],
                activation="relu",
                batch_first=True,
                norm_first=c["norm_first"],
            )
            for _ in range(c["num_layers"])
        )
        self.final_norm = nn.LayerNorm(d) if c["norm_first"] else None
        self.classifier = nn.Linear(d, 1)
        for p in self.parameters():  # official init: Xavier-uniform on every matrix
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    @property
    def has_global(self) -> bool:
        return self.global_proj is not None

    def offsets(self, n1: int) -> tuple[int, int]:
        """Sequence index of the first query local and of the first candidate local."""
        g = int(self.has_global)
        return 1 + g, 1 + g + n1 + 1 + g

    # -- input embedding ------------------------------------------------------------------------------
    def _embed_side(self, local, pos, scales, glob, seg_local: int, seg_global: int):
        B, n, _ = local.shape
        x = self.local_proj(local)
        if self.conf["normalize_inputs"]:
            x = F.normalize(x, dim=-1)
        if self.conf["position_encoding"] == "sine":
            if pos is None:
                raise ShapeError("RRT: positions (B, N, 2) are required with position_encoding='sine'")
            x = x + sine_position_encoding(
                pos, self.conf["d_model"], self.conf["pe_temperature"], self.conf["pe_scale"]
            ).to(x.dtype)
        if self.scale_embed is not None:
            idx = scales if scales is not None else x.new_full((B, n), 2, dtype=torch.long)
            x = x + self.scale_embed(idx)
        x = x + self.segment_embed.weight[seg_local]
        g = None
        if self.has_global:
            if glob is None:
                raise ShapeError(
                    f"RRT: this model has a global token; pass global descriptors (B, {self.conf['d_global']})"
                )
            g = self.global_proj(glob)
            if self.conf["normalize_inputs"]:
                g = F.normalize(g, dim=-1)
            g = (g + self.segment_embed.weight[seg_global]).unsqueeze(1)
        return x, g

    def embed(
        self,
        q_local,
        c_local,
        q_pos=None,
        c_pos=None,
        q_scale_idx=None,
        c_scale_idx=None,
        q_global=None,
        c_global=None,
        input_pe=None,
    ) -> torch.Tensor:
        """The token sequence (B, L, C) of the pairs; see ``forward`` for the arguments."""
        if q_local.dim() != 3 or c_local.dim() != 3 or q_local.shape[0] != c_local.shape[0]:
            raise ShapeError(
                f"RRT: locals must be (B, N, d) with equal B, got {tuple(q_local.shape)} and {tuple(c_local.shape)}"
            )
        B, n1 = q_local.shape[:2]
        n2 = c_local.shape[1]
        xq, gq = self._embed_side(q_local, q_pos, q_scale_idx, q_global, QUERY_LOCAL, QUERY_GLOBAL)
        xc, gc = self._embed_side(c_local, c_pos, c_scale_idx, c_global, CAND_LOCAL, CAND_GLOBAL)
        if input_pe is not None:
            if tuple(input_pe.shape) != (B, n1 + n2, xq.shape[-1]):
                raise ShapeError(
                    f"RRT: input_pe must be (B, n1+n2, C) = {(B, n1 + n2, xq.shape[-1])}, got {tuple(input_pe.shape)}"
                )
            xq, xc = xq + input_pe[:, :n1].to(xq.dtype), xc + input_pe[:, n1:].to(xc.dtype)
        w = self.segment_embed.weight
        cls, sep = w[CLS].expand(B, 1, -1).to(xq.dtype), w[SEP].expand(B, 1, -1).to(xq.dtype)
        parts = [cls] + ([gq] if gq is not None else []) + [xq, sep] + ([gc] if gc is not None else []) + [xc]
        return torch.cat(parts, dim=1)

    def padding_mask(self, q_mask, c_mask, B: int, n1: int, n2: int, device) -> torch.Tensor | None:
        """Key padding mask (B, L), True = padded local; None when nothing is padded."""
        if q_mask is None and c_mask is None:
            return None
        g = int(self.has_global)
        z = torch.zeros(B, 1 + g, dtype=torch.bool, device=device)
        qm = q_mask if q_mask is not None else torch.zeros(B, n1, dtype=torch.bool, device=device)
        cm = c_mask if c_mask is not None else torch.zeros(B, n2, dtype=torch.bool, device=device)
        return torch.cat([z, qm.bool(), z, cm.bool()], dim=1)

    # -- encoder ----------------------------------------------------------------------------------
    @staticmethod
    def _layer_with_attention(layer: nn.TransformerEncoderLayer, x, kpm):
        """One encoder layer computed from its own modules, also returning the (B, H, L, L) attention."""

        def sa(h):
            a, w = layer.self_attn(h, h, h, key_padding_mask=kpm, need_weights=True, average_attn_weights=False)
            return layer.dropout1(a), w

        def ff(h):
            return layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(h)))))

        if layer.norm_first:
            a, w = sa(layer.norm1(x))
            x = x + a
            return x + ff(layer.norm2(x)), w
        a, w = sa(x)
        x = layer.norm1(x + a)
        return layer.norm2(x + ff(x)), w

    #: sequences at least this long use the SDPA layer (CPU flash attention) instead of the fused
    #: ``nn.TransformerEncoderLayer`` kernel in inference (measured faster for 1004 tokens, slower for 100)
    SDPA_MIN_LEN: ClassVar[int] = 256

    @staticmethod
    def _layer_sdpa(layer: nn.TransformerEncoderLayer, x, kpm, cls_only: bool = False):
        """One encoder layer from its own weights with ``F.scaled_dot_product_attention``.

        ``cls_only``: the output for the CLS token alone (B, 1, C). Every token still gives keys and
        values, but the query projection, the output projection, the feed-forward and the norms run on
        CLS only: exactly ``layer(x)[:, :1]`` for about 1/6 of a layer's work (the last layer needs no
        more for the logit). Otherwise (B, L, C), equal to ``layer(x)``.
        """
        attn = layer.self_attn
        B, L, C = x.shape
        H = attn.num_heads
        h = layer.norm1(x) if layer.norm_first else x
        W, b = attn.in_proj_weight, attn.in_proj_bias
        hq, xr = (h[:, :1], x[:, :1]) if cls_only else (h, x)
        q = F.linear(hq, W[:C], b[:C]).view(B, hq.shape[1], H, C // H).transpose(1, 2)
        kv = F.linear(h, W[C:], b[C:]).view(B, L, 2, H, C // H).permute(2, 0, 3, 1, 4)
        mask = None if kpm is None else ~kpm[:, None, None, :]
        a = F.scaled_dot_product_attention(q, kv[0], kv[1], attn_mask=mask)
        a = layer.dropout1(attn.out_proj(a.transpose(1, 2).reshape(B, hq.shape[1], C)))

        def ff(z):
            return layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(z)))))

        if layer.norm_first:
            y = xr + a
            return y + ff(layer.norm2(y))
        y = layer.norm1(xr + a)
        return layer.norm2(y + ff(y))

    def forward(
        self,
        q_local,
        c_local,
        q_pos=None,
        c_pos=None,
        q_mask=None,
        c_mask=None,
        q_scale_idx=None,
        c_scale_idx=None,
        q_global=None,
        c_global=None,
        input_pe=None,
        return_attention: bool = False,
        return_last_input: bool = False,
        return_raw_cross: bool = False,
    ) -> RRTOutput:
        """Score B (query, candidate) pairs.

        q_local (B, n1, d_local), c_local (B, n2, d_local): local descriptors; q_pos / c_pos (B, n, 2)
        normalised (x/W, y/H) positions; q_mask / c_mask (B, n) bool, True = padding; q_scale_idx /
        c_scale_idx (B, n) long DELG scale bins (``scale_indices``); q_global / c_global (B, d_global);
        input_pe (B, n1+n2, C): extra additive embedding of the local tokens (query's then candidate's),
        e.g. the Epipolar Positional Encoding. Returns ``RRTOutput``.
        """
        B, n1, n2 = q_local.shape[0], q_local.shape[1], c_local.shape[1]
        x = self.embed(q_local, c_local, q_pos, c_pos, q_scale_idx, c_scale_idx, q_global, c_global, input_pe)
        kpm = self.padding_mask(q_mask, c_mask, B, n1, n2, x.device)
        attentions = [] if return_attention else None
        last_input = None
        for i, layer in enumerate(self.encoder):
            last = i == len(self.encoder) - 1
            if last:
                last_input = x
            if return_attention:
                x, w = self._layer_with_attention(layer, x, kpm)
                attentions.append(w)
            elif last or x.shape[1] >= self.SDPA_MIN_LEN:
                x = self._layer_sdpa(layer, x, kpm, cls_only=last)
            else:
                x = layer(x, src_key_padding_mask=kpm)
        if self.final_norm is not None:
            x = self.final_norm(x)
        logits = self.classifier(x[:, 0]).squeeze(-1)
        raw = self.raw_cross_attention(last_input, n1, n2) if return_raw_cross else None
        return RRTOutput(logits, n1, n2, attentions, last_input if return_last_input else None, raw)

    def raw_cross_attention(
        self,
        last_input: torch.Tensor,
        n1: int,
        n2: int,
        per_head: bool = False,
        scaled: bool = False,
        bias: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw cross-attention logits of the last layer (Sec. 3.3, Eq. 1-2 of the epipolar paper).

        A12 = Q K'^T with Q = W_Q y (query-image tokens), K' = W_K y' (candidate-image tokens), and
        A21 = Q' K^T, from ``last_input`` (B, L, C) = y_{L-1}. The paper has ONE W_Q and ONE W_K of full
        width C, so by default (``per_head=False``) A is the full-width product over all C dimensions,
        which equals the SUM over heads of the heads' (d_head-wide) products, not their mean.
        ``per_head=True`` returns the heads' products (B, H, n1, n2) / (B, H, n2, n1) instead (their sum
        over dim 1 is the default output). With a pre-LN model the layer's norm1 is applied first, as the
        layer does.

        Projection biases: Eq. 1-2 write Q = W_Q y without a bias, but the layer's in-projection has one
        and its softmax sees the biased logits; ``bias=True`` (default) keeps them so that the supervised
        map is the attention the layer actually computes (the map Fig. 4 of the paper shows); ``bias=False``
        is the literal equation. ``scaled=False`` (default) omits the 1/sqrt(d_head) factor of the
        softmax (the paper's "raw" Q K^T); ``scaled=True`` divides by sqrt(d_head), which per head gives
        exactly the softmax's logits.
        """
        layer = self.encoder[-1]
        y = layer.norm1(last_input) if layer.norm_first else last_input
        B, L, C = y.shape
        H = self.conf["nhead"]
        dh = C // H
        W, b = layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias
        b = b if bias else None
        q = F.linear(y, W[:C], b[:C] if b is not None else None).view(B, L, H, dh).transpose(1, 2)
        k = F.linear(y, W[C : 2 * C], b[C : 2 * C] if b is not None else None).view(B, L, H, dh).transpose(1, 2)
        s1, s2 = self.offsets(n1)
        if s2 + n2 != L:
            raise ShapeError(f"RRT.raw_cross_attention: n1={n1}, n2={n2} do not fit a sequence of length {L}")
        qa, ka = q[:, :, s1 : s1 + n1], k[:, :, s1 : s1 + n1]
        qb, kb = q[:, :, s2 : s2 + n2], k[:, :, s2 : s2 + n2]
        a12, a21 = qa @ kb.transpose(-1, -2), qb @ ka.transpose(-1, -2)
        if scaled:
            a12, a21 = a12 / dh**0.5, a21 / dh**0.5
        if not per_head:
            a12, a21 = a12.sum(1), a21.sum(1)
        return a12, a21
