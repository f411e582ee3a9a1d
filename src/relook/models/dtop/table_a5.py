"""Table A5's hierarchical backbones for DToP: CvT-21 (Hugging Face ``transformers``) and PiT-B (timm).

Both return what ``TokenBackbone`` returns, so the DToP branches run on them unchanged: for the last ``k``
blocks, the prefix tokens (B, k, P, D) and the patch tokens on their grid (B, k, h, w, D), at any input
size. Both are hierarchical (stages of different widths), so the ``k`` layers are taken from the final
stage only (CvT-21: 16 blocks of 384 channels; PiT-B: 4 blocks of 1024) and ``k`` may not exceed its depth.

=================  ====================================  ============================================
name               model                                 parameters (Table A5) / notes
=================  ====================================  ============================================
cvt21              ``CvtModel(CvtConfig(depth=[1,4,16]))``  31M; [CLS] exists in stage 3 only; no
                   (CvT-21, Wu et al. Table 2)           position embedding (convolutional token
                                                         embedding), so DPE has nothing to resize
pit_b              timm ``pit_b_224``                    73M; [CLS]; the position embedding of the
                                                         first stage's grid resized by DPE (Eq. 2)
pit_b_distilled    timm ``pit_b_distilled_224``          [CLS] + distillation token (``token: dist``)
=================  ====================================  ============================================

Every collected layer goes through the final LayerNorm, as in ``TokenBackbone``: PiT's ``norm``; for CvT the
LayerNorm that ``CvtForImageClassification`` puts on the [CLS] (``CvtModel`` has none), created here.
Weights: ``pretrained=False`` is a random init drawn from ``seed`` alone (offline, the tests); ``pretrained=True``
downloads (timm's hub for PiT, ``microsoft/cvt-21`` from the Hugging Face hub for CvT) and fails offline with
one line. DPE ``cpe`` (a convolution after block 1) is for plain ViTs and is refused here.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from relook.errors import ConfigError, ShapeError
from relook.models.backbone import IMAGENET_MEAN, IMAGENET_STD

#: CvT-21 as published (Wu et al., Table 2): 1 + 4 + 16 blocks of 64 / 192 / 384 channels, 1 / 3 / 6 heads
CVT21 = {"depth": [1, 4, 16], "embed_dim": [64, 192, 384], "num_heads": [1, 3, 6]}
PIT = {"pit_b": "pit_b_224", "pit_b_distilled": "pit_b_distilled_224"}
NAMES = ("cvt21", *PIT)
#: Table A5's parameter counts (millions), as printed
PAPER_PARAMS_M = {"cvt21": 31, "pit_b": 73, "pit_b_distilled": 73}


def _seeded(seed: int, build):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build()


class HierarchicalTokens(nn.Module):
    """Base of the two adapters: checks, normalisation, and the ``TokenBackbone`` attributes."""

    def __init__(self, name: str, layers: int, dpe: str, last_depth: int, dim: int, prefix: int) -> None:
        super().__init__()
        if dpe == "cpe":
            raise ConfigError(f"dtop backbone {name!r}: dpe cpe is for plain ViTs; use bilinear, bicubic or none")
        if not 1 <= layers <= last_depth:
            raise ConfigError(
                f"dtop backbone {name!r}: layers k={layers} must be in [1, {last_depth}] (its final stage's depth)"
            )
        self.name, self.dpe_mode, self.layers, self.embed_dim = name, dpe, int(layers), int(dim)
        self.num_prefix, self.has_dist = prefix, prefix == 2
        self.mean, self.std, self.weights_record = IMAGENET_MEAN, IMAGENET_STD, None

    @staticmethod
    def _check(images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ShapeError(f"dtop backbone: images must be (B, 3, H, W), got {tuple(images.shape)}")


class PitTokens(HierarchicalTokens):
    """PiT-B (timm): patch embedding + DPE-resized position grid, stages 1..S-1, then the final stage's blocks
    one by one, each output through the final LayerNorm."""

    def __init__(self, name: str, pretrained: bool, layers: int, dpe: str, seed: int = 0, **kwargs: Any) -> None:

        arch = PIT[name]
        build = lambda: timm.create_model(arch, pretrained=bool(pretrained), num_classes=0, **kwargs)  # noqa: E731
        vit = build() if pretrained else _seeded(seed, build)
        last = vit.transformers[-1]
        dim = int(vit.norm.normalized_shape[0])
        super().__init__(name, layers, dpe, len(last.blocks), dim, 2 if vit.head_dist is not None else 1)
        self.vit = vit
        cfg = getattr(vit, "pretrained_cfg", {}) or {}
        self.mean, self.std = tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(images)
        v = self.vit
        x = v.patch_embed(images)  # (B, C, h, w): any size, a strided convolution
        if self.dpe_mode in ("bilinear", "bicubic"):  # Eq. 2: the pretrained grid resized to this one
            pos = v.pos_embed
            if pos.shape[-2:] != x.shape[-2:]:
                pos = F.interpolate(pos, size=x.shape[-2:], mode=self.dpe_mode, align_corners=False)
            x = x + pos
        x = v.pos_drop(x)
        cls = v.cls_token.expand(x.shape[0], -1, -1)
        for stage in v.transformers[:-1]:
            x, cls = stage((x, cls))
        last = v.transformers[-1]
        if last.pool is not None:
            x, cls = last.pool(x, cls)
        b, c, h, w = x.shape
        p = cls.shape[1]
        t = last.norm(torch.cat([cls, x.flatten(2).transpose(1, 2)], 1))
        prefix, patches = [], []
        first_kept = len(last.blocks) - self.layers
        for i, block in enumerate(last.blocks):
            t = block(t)
            if i >= first_kept:
                y = v.norm(t)
                prefix.append(y[:, :p])
                patches.append(y[:, p:].reshape(b, h, w, c))
        return torch.stack(prefix, 1), torch.stack(patches, 1)


class CvtTokens(HierarchicalTokens):
    """CvT-21 (``transformers.CvtModel``): the last ``k`` layers of stage 3 caught by forward hooks, the [CLS]
    (first token of stage 3) as prefix, each through a final LayerNorm (``CvtForImageClassification``'s)."""

    def __init__(self, name: str, pretrained: bool, layers: int, dpe: str, seed: int = 0, **config: Any) -> None:
        try:
            # lazy: optional dependency (transformers)
            from transformers import CvtConfig, CvtModel
        except ImportError:
            raise ConfigError("dtop backbone 'cvt21' needs Hugging Face transformers: the relook[cvt] extra") from None
        conf = {**CVT21, **config}
        if pretrained:
            try:
                model = CvtModel.from_pretrained("microsoft/cvt-21")
            except Exception as e:  # offline and not cached: one line
                first = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
                raise ConfigError(
                    f"cannot load CvT-21 weights 'microsoft/cvt-21' ({first}); use pretrained: false"
                ) from None
        else:
            model = _seeded(seed, lambda: CvtModel(CvtConfig(**conf), add_pooling_layer=False))
        dim = int(model.config.embed_dim[-1])
        last = model.encoder.stages[-1].layers
        super().__init__(name, layers, dpe, len(last), dim, 1)
        self.model = model
        self.norm = _seeded(seed, lambda: nn.LayerNorm(dim, eps=model.config.layer_norm_eps))
        self._caught: list[tuple[torch.Tensor, int, int]] = []
        for layer in last[len(last) - self.layers :]:
            layer.register_forward_hook(lambda m, args, out: self._caught.append((out, int(args[1]), int(args[2]))))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(images)
        self._caught.clear()
        self.model(pixel_values=images)
        prefix, patches = [], []
        for out, h, w in self._caught:
            y = self.norm(out)
            prefix.append(y[:, :1])
            patches.append(y[:, 1:].reshape(y.shape[0], h, w, -1))
        self._caught.clear()
        return torch.stack(prefix, 1), torch.stack(patches, 1)


def create_table_a5(
    name: str, pretrained: bool, layers: int, dpe: str, timm_kwargs: dict[str, Any] | None = None, seed: int = 0
) -> HierarchicalTokens:
    """The adapter of ``name`` (one of ``NAMES``); ``timm_kwargs`` go to timm (PiT) or ``CvtConfig`` (CvT)."""
    if name == "cvt21":
        return CvtTokens(name, pretrained, layers, dpe, seed, **(timm_kwargs or {}))
    if name in PIT:
        return PitTokens(name, pretrained, layers, dpe, seed, **(timm_kwargs or {}))
    raise ConfigError(f"dtop backbone: {name!r} is not one of Table A5's hierarchical models {NAMES}")
