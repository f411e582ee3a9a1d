"""The ``dtop`` extractor: DToP global descriptors (Eq. 12), multi-scale and optionally whitened.

Writes ``global_desc`` (N,) (unit norm) and ``image_size`` (H, W) of the image as given. Per image: the
longer side is resized to ``image_size``, descriptors at ``scales`` are averaged and normalised
(``models/dtop/multiscale.py``; single scale when the switch for ``role`` is off, Table A11), then the
whitening of ``whitening`` (``relook train dtop-whitening``) is applied and the result re-normalised.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from relook.errors import ConfigError
from relook.features.base import Extractor, register_extractor
from relook.models.dtop import DToP
from relook.models.dtop.checkpoint import load_dtop
from relook.models.dtop.multiscale import image_tensor, multiscale_descriptor, scales_for
from relook.models.whitening import apply_whitening, load_whitening
from relook.types import ImageFeatures
from relook.weights import file_sha256


class MultiScaleGlobal(Extractor):
    """A global extractor with DToP's multi-scale inference: its ``scales`` follow Table A11's query /
    database switch (config keys ``scales``, ``multiscale_query``, ``multiscale_database``, ``role``)."""

    def set_role(self, role: str) -> MultiScaleGlobal:
        """Switch between query and database extraction: the scales follow Table A11's switch for ``role``."""
        super().set_role(role)
        c = self.conf
        self.scales = scales_for(role, c["multiscale_query"], c["multiscale_database"], c["scales"])
        c["role"] = role
        return self


@register_extractor("dtop")
class DToPExtractor(MultiScaleGlobal):
    name = "dtop"
    writes = frozenset({"global_desc", "image_size"})
    default_conf: ClassVar[dict[str, Any]] = {
        "checkpoint": None,  # train_dtop checkpoint.pt; None = untrained heads on the timm backbone
        "model": {},  # DToP options when no checkpoint (e.g. backbone, pretrained)
        "seed": 0,  # seed of the random init (heads; backbone when not pretrained) without
        # a checkpoint: same seed -> same network in every process
        "image_size": 1024,  # longer side before multi-scale (cirtorch evaluation convention)
        "scales": [1.0, 0.7071067811865476, 0.5],  # multi-scale factors (3 scales, averaged)
        "role": "database",  # query | database: which Table A11 switch applies (the pipeline
        # sets it per store through `set_role`)
        "multiscale_query": True,  # multi-scale for queries (Table A11: on)
        "multiscale_database": True,  # multi-scale for the database (Table A11: on)
        "whitening": None,  # .npz from `relook train dtop-whitening`; None = no whitening
        "whitening_dim": None,  # keep this many whitened dimensions; None = all
        "device": "auto",  # auto | cpu | cuda
    }

    def __init__(self, **conf: Any) -> None:
        super().__init__(**conf)

        c = self.conf
        if "seed" in c["model"]:
            raise ConfigError("extractor 'dtop': set the random-init seed as the extractor's `seed`, not model.seed")
        self.device = torch.device(
            "cuda" if c["device"] == "cuda" or (c["device"] == "auto" and torch.cuda.is_available()) else "cpu"
        )
        self.model = (
            load_dtop(c["checkpoint"], str(self.device))
            if c["checkpoint"]
            else DToP(**c["model"], seed=c["seed"]).to(self.device).eval()
        )
        self.scales = scales_for(c["role"], c["multiscale_query"], c["multiscale_database"], c["scales"])
        self.whitening = load_whitening(c["whitening"]) if c["whitening"] else None

    @property
    def provenance(self) -> dict[str, str]:
        """Base provenance + what the weights are: the checkpoint file, or timm's / random, seeded heads."""
        c = self.conf
        if c["checkpoint"]:
            weights = f"DToP checkpoint {c['checkpoint']} (sha256 {file_sha256(c['checkpoint'])[:12]})"
        else:
            backbone = "timm ImageNet backbone" if self.model.conf["pretrained"] else "random init backbone"
            weights = f"{backbone}, untrained heads, seed {int(c['seed'])}"
        return {**super().provenance, "weights": weights}

    def extract_one(self, image_id: str, image: np.ndarray) -> ImageFeatures:
        x = image_tensor(image, self.conf["image_size"]).to(self.device)
        desc = multiscale_descriptor(self.model, x, self.scales)[0].float().cpu().numpy()
        if self.whitening is not None:
            desc = apply_whitening(desc[None], *self.whitening, dim=self.conf["whitening_dim"])[0]
        return ImageFeatures(image_id, global_desc=desc, image_size=np.array(image.shape[:2]))
