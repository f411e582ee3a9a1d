"""DToP (Song et al., WACV 2023): a ViT global descriptor from deep token pooling.

images -> backbone (last k layers, DPE) -> global branch on [CLS] tokens (Eq. 7) + local branch on
patch tokens with ELM and fusion (Eq. 10) -> output (Eq. 12): an N-dim L2-normalised vector.

Output reading (Eq. 12 is not in the recoverable text): ``combine="concat"`` (default) gives each branch
an FC to N/2 and concatenates, so the default N = 1536 is two 768-d branch vectors (Table A7 varies N
from 128 to 2048: each branch then gives N/2); ``combine="fc"`` concatenates the branch features
before their FCs and applies one FC to N (DOLG style). ``branches="global"`` or ``"local"`` keeps one
branch with an FC to N, the setting of the backbone benchmark (Table A5, N = 768).

ELM (Eq. 11) readings (``elm_reading``; ``models/dtop/elm.py``): ``cited`` (default) builds the modules the
paper cites, MobileNetV2's inverted residual block (``irb_expansion`` 6) and DeepLab's ASPP projected back
to D (``aspp_width`` 256, separable atrous branches); ``0.3m`` forces the reading that fits supplementary
A.1's parameter figure ("the additional components of DToP have only 0.3M parameters"; ViT-B, D = 768,
k = 6, N = 1536), IRB expansion 0.25 and a depth-wise averaged ASPP, whatever ``irb_expansion`` /
``aspp_width`` say. Under ``cited`` those two keys are used as given (a checkpoint's saved config keeps
its own values).

The 0.3M reading, counted:
* The output FCs to N (Eq. 12) are the retrieval head every compared model carries (Table A5 puts "an FC
  layer with output feature dimension N" on each backbone) and are not counted: at N = 1536 any FC from
  >= 768 inputs alone has >= 1.18M parameters, four times the quoted total, and Table A7 varies N
  16-fold under one quoted budget.
* Multi-layer features (Eq. 5, 6, 8) are merged by the mean over the k layers ("skip connections
  across distant layers"): a learned kD -> D merge alone would have 3.5M.
* ELM mixes channels only in the IRB's bottleneck (D/4 wide: 0.30M) and spatially elsewhere
  (depth-wise ASPP: 24k; WaveBlock: none); FUSE (Eq. 9, orthogonal) and DPE (Eq. 2) add nothing.
Total 0.32M (``DToP.added_parameters``), "0.3M" at the paper's rounding. The cited modules add 9.1M at
D = 768 (IRB 7.1M, ASPP 2.0M), 2.8M at D = 384: the paper's 0.3M cannot hold for them, which is why both
readings are kept. ``layer_merge: concat`` restores a learned kD -> D merge.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from relook.config import merge_conf
from relook.errors import ConfigError
from relook.models.dtop.backbones import TokenBackbone
from relook.models.dtop.elm import READINGS
from relook.models.dtop.heads import GlobalBranch, LocalBranch
from relook.models.dtop.table_a5 import NAMES as TABLE_A5
from relook.models.dtop.table_a5 import create_table_a5
from relook.models.dtop.vit_trunk import TRUNK_NAME, FrozenViTTrunk


class DToP(nn.Module):
    """forward(images (B, 3, H, W), normalised with ``mean``/``std``) -> (B, out_dim) unit vectors."""

    default_conf: ClassVar[dict[str, Any]] = {
        "backbone": "r50_vit_b",  # backbones.py registry name (cvt21, pit_b*: table_a5.py) or "timm:<model>"
        "pretrained": True,  # load timm's pretrained weights (needs the model hub)
        "seed": 0,  # seed of every random init (backbone when not pretrained, heads)
        "last_block": 10,  # dinov2_s14_imgfocus trunk only: blocks 1..last_block, frozen (vit_trunk.py)
        "timm_kwargs": {},  # extra timm.create_model arguments (e.g. depth for tiny test models)
        "layers": 6,  # k: last layers whose tokens are used (Table A8, best 6)
        "dpe": "bilinear",  # position embedding: bilinear | bicubic | none | cpe (Table A9)
        "branches": "both",  # both | global | local (single-branch = backbone benchmark, Table A5)
        "token": "cls",  # global-branch token: cls | dist (distilled backbones only)
        "elm_irb": True,  # ELM inverted residual block (Table A10)
        "elm_aspp": True,  # ELM atrous spatial pyramid pooling (Table A10)
        "elm_waveblock": True,  # ELM WaveBlock, training only (Table A10)
        "layer_merge": "mean",  # Eq. (5), (6), (8): mean of the k layers' tokens | concat (kD, learned)
        "elm_reading": "cited",  # cited: MobileNetV2 IRB + DeepLab ASPP (the keys below) | 0.3m: forces 0.25 / null
        "irb_expansion": 6.0,  # IRB hidden width / D (MobileNetV2's t = 6; >= 1 is an inverted residual)
        "aspp_rates": [6, 12, 18],  # ASPP dilation rates (DeepLabv3; not in the paper)
        "aspp_width": 256,  # ASPP: int = separable branches to this width + 1x1 project (DeepLab: 256); None =
        # depth-wise branches averaged
        "wave_band": 0.3,  # WaveBlock kept-band height ratio
        "wave_factor": 2.0,  # WaveBlock factor on the rest of the map
        "fusion": "orthogonal",  # Eq. (9) FUSE: orthogonal | none_wo_elm | none_w_elm | sum | hadamard | concat | fast_normalized
        "pooling": "avg",  # local-branch pooling: avg | gem | max
        "gem_p": 3.0,  # initial GeM exponent when pooling = gem
        "out_dim": 1536,  # N of Eq. (12) (Table A7, best 1536)
        "combine": "concat",  # concat: N/2 per branch, concatenated | fc: one FC on both branches
    }

    def __init__(self, **conf: Any) -> None:
        super().__init__()
        self.conf = c = merge_conf(self.default_conf, conf, "model dtop")
        if c["branches"] not in ("both", "global", "local"):
            raise ConfigError(f"model dtop: branches must be both|global|local, got {c['branches']!r}")
        if c["combine"] not in ("concat", "fc"):
            raise ConfigError(f"model dtop: combine must be concat|fc, got {c['combine']!r}")
        if c["elm_reading"] not in READINGS:
            raise ConfigError(f"model dtop: elm_reading must be one of {sorted(READINGS)}, got {c['elm_reading']!r}")
        if c["branches"] == "both" and c["combine"] == "concat" and c["out_dim"] % 2:
            raise ConfigError(f"model dtop: out_dim {c['out_dim']} must be even to split over two branches")
        with torch.random.fork_rng(devices=[]):  # random init from `seed` alone: global RNG untouched
            torch.manual_seed(int(c["seed"]))
            self._build(c)
        self.register_buffer("mean", torch.tensor(self.backbone.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.backbone.std).view(1, 3, 1, 1), persistent=False)

    def _build(self, c: dict[str, Any]) -> None:
        """Backbone, branches and FC of conf ``c`` (called inside the seeded random state)."""
        args = (c["backbone"], c["pretrained"], c["layers"], c["dpe"], c["timm_kwargs"], int(c["seed"]))
        if c["backbone"] == TRUNK_NAME:  # the real pretrained ViT, frozen (vit_trunk.py)
            self.backbone = FrozenViTTrunk(c["last_block"], c["layers"], c["dpe"], c["pretrained"], int(c["seed"]))
        else:
            self.backbone = create_table_a5(*args) if c["backbone"] in TABLE_A5 else TokenBackbone(*args)
        dim, k = self.backbone.embed_dim, c["layers"]
        if c["token"] not in ("cls", "dist") or (c["token"] == "dist" and not self.backbone.has_dist):
            raise ConfigError(f"model dtop: token {c['token']!r} needs cls, or dist with a distilled backbone")
        both = c["branches"] == "both"
        branch_dim = c["out_dim"] // 2 if both and c["combine"] == "concat" else c["out_dim"]
        expansion, width = (c["irb_expansion"], c["aspp_width"])
        if c["elm_reading"] != "cited":
            expansion, width = READINGS[c["elm_reading"]]
        elm = dict(
            irb=c["elm_irb"],
            aspp=c["elm_aspp"],
            waveblock=c["elm_waveblock"],
            expansion=expansion,
            aspp_width=width,
            rates=tuple(c["aspp_rates"]),
            band=c["wave_band"],
            factor=c["wave_factor"],
        )
        self.global_branch = self.local_branch = self.joint_fc = None
        if c["branches"] in ("both", "global"):
            self.global_branch = GlobalBranch(dim, k, branch_dim, 1 if c["token"] == "dist" else 0, c["layer_merge"])
        if c["branches"] in ("both", "local"):
            self.local_branch = LocalBranch(
                dim, k, branch_dim, c["fusion"], c["pooling"], c["gem_p"], elm, c["layer_merge"]
            )
        if both and c["combine"] == "fc":
            width = self.global_branch.in_dim + self.local_branch.fusion.out_dim
            self.joint_fc = nn.Linear(width, c["out_dim"])

    def added_parameters(self) -> dict[str, int]:
        """Parameter counts of the parts DToP adds to the backbone, by part (see the module docstring).

        ``added`` sums the layer merge (Eq. 5, 6, 8), ELM (Eq. 11) and FUSE (Eq. 9): the "additional
        components" of supplementary A.1 (0.3M on ViT-B with ``elm_reading: 0.3m``, 9.1M with the cited
        modules); ``head`` is the output FCs to N.
        """

        def count(*modules) -> int:
            return sum(p.numel() for m in modules if m is not None for p in m.parameters())

        g, loc = self.global_branch, self.local_branch
        parts = {
            "merge": count(loc.merge if loc is not None else None),
            "elm": count(loc.elm if loc else None),
            "fusion": count(loc.fusion if loc else None),
            "head": count(g.fc if g else None, loc.fc if loc else None, self.joint_fc),
        }
        parts["added"] = parts["merge"] + parts["elm"] + parts["fusion"]
        return parts

    @property
    def out_dim(self) -> int:
        return int(self.conf["out_dim"])

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] (B, 3, H, W) -> backbone input."""
        return (images01 - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(*self.backbone(images))

    def head(self, prefix: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """Eq. (5)-(12) on backbone tokens: prefix (B, k, P, D), patches (B, k, h, w, D) -> (B, N) unit vectors
        (the trainable part; a frozen backbone's tokens may come from a cache)."""
        if self.joint_fc is not None:
            feats = torch.cat([self.global_branch.features(prefix), self.local_branch.features(patches)], dim=1)
            return F.normalize(self.joint_fc(feats), dim=-1)
        parts = []
        if self.global_branch is not None:
            parts.append(self.global_branch(prefix))
        if self.local_branch is not None:
            parts.append(self.local_branch(patches))
        return F.normalize(torch.cat(parts, dim=1), dim=-1)
