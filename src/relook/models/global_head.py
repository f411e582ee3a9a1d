"""A learned 128-d head on a frozen CNN grid: one 1x1 conv ``W`` gives the locals and the global descriptor.

RRT and the epipolar paper take the backbone's last map (``s x s x C``) as ``s^2`` locals mapped to
``m = 128`` dims by a 1x1 convolution, next to a global descriptor; the OT paper (seed 003) embeds into
D = 128 with a margin-loss-trained head. relook's stand-in for all of them (``relook train global``)::

    local_k = W f_k + b                                    (H1)  k = 1 .. h*w cells of the map f (C channels)
    g       = (W GeM_p(f) + b) / ||W GeM_p(f) + b||_2      (H2)  GeM_p(f) = (1/hw sum_k f_k^p)^(1/p)

GeM is taken *before* the projection. ``W`` is linear, so for p = 1 the global descriptor is exactly the
L2-normalised mean of the 128-d locals: locals and global live in one space, as in the RRT papers where they
share dims. Pooling the projected map instead (``GeM(W f)``) would need GeM's clamp at zero on values that a
projection makes negative half the time, and would cut the gradient of every clamped channel. A second
benefit: with a frozen backbone the pooled ``GeM_p(f)`` of each training image is all the training needs,
so it is computed once and kept in memory (N x C floats).

The head file (``torch.save``, read with ``weights_only=True``)::

    {"format": "relook-global-head", "version": 1, "config_json": JSON, "state_dict": {"proj.weight":
     (dim, C, 1, 1), "proj.bias": (dim,)}}

``config_json`` holds ``channels``, ``dim``, ``gem_p``, the backbone it was trained on (``arch``: timm name,
``backbone``: the ``cnn_local`` options, ``weights``: its weights record, ``weights_sha256``) and ``train``
(data, seed, epochs, loss, ...). ``cnn_local`` loads it as ``projection: PATH`` (H1 locals, H2 global);
``vit_tokens`` as ``projection: PATH`` (its CNN tokens through H1, its global through H2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from relook.checkpoints import config_of, describe, load_checkpoint, load_state_into, to_json
from relook.errors import ConfigError, DataError
from relook.io import atomic_path
from relook.weights import file_sha256

FORMAT = "relook-global-head"


def gem(fmap: torch.Tensor, p: float = 3.0, eps: float = 1e-6) -> torch.Tensor:
    """Generalised-mean pooling of (B, C, h, w) -> (B, C): (mean x^p)^(1/p) over positions."""
    return fmap.clamp(min=eps).pow(p).mean(dim=(-2, -1)).pow(1.0 / p)


def seeded_projection(dim: int, channels: int, seed: int) -> torch.Tensor:
    """The seeded random 1x1 conv weight (dim, C, 1, 1) ~ N(0, 1/C) of ``cnn_local``'s ``projection: seeded``."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn(dim, channels, 1, 1, generator=g) / channels**0.5


class GlobalHead(nn.Module):
    """``proj`` (1x1 conv C -> dim, with bias) and GeM exponent ``gem_p``: Eq. H1 locals, Eq. H2 global."""

    def __init__(self, channels: int, dim: int = 128, gem_p: float = 3.0, seed: int = 0) -> None:
        super().__init__()
        if channels < 1 or dim < 1 or gem_p <= 0:
            raise ConfigError(
                f"global head: need channels >= 1, dim >= 1 and gem_p > 0, got {channels}, {dim}, {gem_p}"
            )
        with torch.random.fork_rng(devices=[]):  # its default init is overwritten: leave the global RNG be
            self.proj = nn.Conv2d(channels, dim, kernel_size=1)
        with torch.no_grad():  # start from cnn_local's seeded projection (the untrained baseline)
            self.proj.weight.copy_(seeded_projection(dim, channels, seed))
            self.proj.bias.zero_()
        self.channels, self.dim, self.gem_p = int(channels), int(dim), float(gem_p)

    @property
    def matrix(self) -> torch.Tensor:
        """W as a (C, dim) matrix: ``x @ matrix + bias`` projects (..., C) features."""
        return self.proj.weight.flatten(1).T

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., dim): ``W x + b`` (Eq. H1 on any layout with channels last)."""
        return F.linear(x, self.proj.weight.flatten(1), self.proj.bias)

    def global_from_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, C) GeM vectors -> (B, dim) L2-normalised global descriptors (Eq. H2)."""
        return F.normalize(self.project(pooled), dim=-1)

    def forward(self, fmap: torch.Tensor) -> dict[str, torch.Tensor]:
        """fmap (B, C, h, w) -> ``{"local": (B, h*w, dim), "global": (B, dim)}``."""
        local = self.proj(fmap).flatten(2).transpose(1, 2)
        return {"local": local, "global": self.global_from_pooled(gem(fmap, self.gem_p))}


def save_global_head(path: str | Path, head: GlobalHead, config: dict[str, Any]) -> Path:
    """Write ``head`` and its ``config`` (plus channels / dim / gem_p) atomically; also ``<path>.json``."""
    path = Path(path)
    conf = {**config, "channels": head.channels, "dim": head.dim, "gem_p": head.gem_p}
    state = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": 1, "config_json": to_json(conf), "state_dict": state}, tmp)
    with atomic_path(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(conf, indent=2, sort_keys=True, default=str))
    return path


def load_global_head(path: str | Path) -> tuple[GlobalHead, dict[str, Any]]:
    """(head, config) of a ``relook train global`` head file; one ``DataError`` line for anything else
    (a missing file, a pickled object: nothing but tensors and plain containers is read)."""
    ckpt = load_checkpoint(path, "global head file (relook train global)")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError(f"{path}: expected a global head written by `relook train global`, found {describe(ckpt)}")
    conf = config_of(ckpt, path, "global head", legacy_key="config")
    try:
        head = GlobalHead(int(conf["channels"]), int(conf["dim"]), float(conf["gem_p"]))
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{path}: the global head config lacks or garbles channels / dim / gem_p ({e})") from None
    load_state_into(head, ckpt.get("state_dict"), path, f"a global head {conf['channels']} -> {conf['dim']}")
    return head.eval(), conf


def check_backbone(conf: dict[str, Any], path: str | Path, arch: str, record: Any, who: str) -> None:
    """``ConfigError`` when the head at ``path`` was trained on another backbone than ``arch`` with ``record``
    (a ``WeightsRecord``): the same channel count (Lite0/1/2 all give 1280) is not the same feature space."""
    if conf.get("arch") != arch:
        raise ConfigError(
            f"{who}: {path} was trained on {conf.get('arch')!r} features, this backbone is {arch!r}; "
            "train a head for it with `relook train global`"
        )
    want, have = conf.get("weights_sha256") or conf.get("weights"), record.sha256 or record.describe()
    if want != have:
        raise ConfigError(
            f"{who}: {path} was trained on features of other weights ({conf.get('weights')}), "
            f"this backbone has {record.describe()}; train a head for these weights"
        )


def head_provenance(path: str | Path, conf: dict[str, Any]) -> dict[str, str]:
    """Store metadata of a head file: its sha256 and its training record (so a store never mixes heads)."""
    sha = file_sha256(path)
    return {
        "head": f"learned global head {path} (sha256 {sha[:12]}, {conf.get('channels')} -> {conf.get('dim')}, "
        f"GeM p={conf.get('gem_p')})",
        "head.sha256": sha,
        "head.train": json.dumps(conf.get("train", {}), sort_keys=True, default=str),
    }
