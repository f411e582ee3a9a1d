"""Epipolar guidance for RRT training (seed 002): ``--guidance {none, epi, maxepi, epe}``.

``EpipolarGuidance`` turns per-image cameras (or per-pair pseudo ground truth F) into the two hooks of
``relook.train.rrt.train_rrt``:

- ``extra_loss(batch, output)``: ``weight * L`` with L = L_EPI (Eq. 1) or L_MaxEPI (Eq. 2) on the last
  layer's raw cross-attention, applied only to matching pairs (label 1) whose geometry is reliable
  (cameras known, or pseudo ground truth marked reliable). Total loss = BCE(match) + weight * L.
- ``input_pe(batch)``: the Epipolar Positional Encoding of every pair (Sec. 3.4): F of the cameras /
  pseudo ground truth for matching pairs, a random rank-2 matrix for non-matching pairs.

F is computed in the pixel frame the network sees: the stored image of size (H, W) resized to
``net_size`` (``resize_intrinsics``); the grid is the ``grid x grid`` feature map over that frame.

``weight`` is not in the main paper (its supplementary has the CO3D hyperparameters); the default
scales the summed loss (2 s^4 = 4802 terms for s = 7) down so that it starts a few times the match BCE.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch

from relook.config import merge_conf
from relook.errors import ConfigError, DataError
from relook.geometry.epipolar import epipolar_indicator, fundamental_from_cameras, resize_intrinsics
from relook.losses.epipolar import epipolar_loss, max_epipolar_loss
from relook.models.epe import EpipolarPositionalEncoding, choose_fundamentals

GUIDANCES = ("none", "epi", "maxepi", "epe")


class EpipolarGuidance:
    default_conf: ClassVar[dict[str, Any]] = {
        "guidance": "epi",       # none | epi (Eq. 1) | maxepi (Eq. 2) | epe (Sec. 3.4)
        "weight": 1e-3,          # lambda in BCE + lambda * L (sum over s^4 entries per direction)
        "per_head": False,       # loss on each head's logits (averaged) instead of the full-width Q K^T (Eq. 1-2)
        "grid": 7,               # s: feature grid side
        "net_size": (224, 224),  # (H, W) of the network input the grid covers
        "mode": "distance",      # indicator rule: distance (<= radius * half cell diagonal) | intersect
        "radius": 1.0,           # indicator threshold factor (distance mode)
        "dim": 128,              # EPE width = RRT d_model
        "seed": 0,               # random F for non-matches and EPE reference pixels
    }

    def __init__(self, cameras: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                 image_sizes: Mapping[str, Sequence[int]] | None = None,
                 pseudo_gt: Mapping[tuple[str, str], Mapping[str, Any]] | None = None, **conf: Any) -> None:
        self.conf = c = merge_conf(self.default_conf, conf, "EpipolarGuidance")
        if c["guidance"] not in GUIDANCES:
            raise ConfigError(f"guidance must be one of {GUIDANCES}, got {c['guidance']!r}")
        if c["guidance"] != "none" and cameras is None and pseudo_gt is None:
            raise ConfigError(f"guidance {c['guidance']!r} needs cameras or pseudo ground truth")
        self.cameras, self.image_sizes, self.pseudo_gt = cameras or {}, image_sizes or {}, pseudo_gt or {}
        self.generator = torch.Generator().manual_seed(int(c["seed"]))
        self.epe = EpipolarPositionalEncoding(dim=c["dim"], grid=c["grid"], seed=c["seed"]) if c["guidance"] == "epe" else None

    def _net_K(self, image_id: str) -> np.ndarray:
        cam = self.cameras[image_id]
        H, W = self.image_sizes.get(image_id, self.conf["net_size"])
        nh, nw = self.conf["net_size"]
        return resize_intrinsics(np.asarray(cam["K"], np.float64), nw / W, nh / H).numpy()

    def fundamentals(self, qids: Sequence[str], cids: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """F (B, 3, 3) float64 in the network frame and ``known`` (B,) bool (cameras, or reliable pseudo GT)."""
        B = len(qids)
        F = torch.zeros(B, 3, 3, dtype=torch.float64)
        known = torch.zeros(B, dtype=torch.bool)
        for b, (q, c) in enumerate(zip(qids, cids)):
            if q in self.cameras and c in self.cameras:
                cq, cc = self.cameras[q], self.cameras[c]
                F[b] = fundamental_from_cameras(self._net_K(q), cq["R"], cq["t"], self._net_K(c), cc["R"], cc["t"])
                known[b] = True
            elif (q, c) in self.pseudo_gt:
                r = self.pseudo_gt[(q, c)]
                F[b] = torch.as_tensor(r["F"], dtype=torch.float64)
                known[b] = bool(r["reliable"])
        return F, known

    def indicators(self, F: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = tuple(self.conf["net_size"])
        return epipolar_indicator(F, size, size, self.conf["grid"], self.conf["mode"], self.conf["radius"])

    def extra_loss(self, batch: dict, output) -> torch.Tensor:
        """Hook of ``train_rrt``: weight * L_EPI / L_MaxEPI on matching pairs with known geometry."""
        g = self.conf["guidance"]
        if g not in ("epi", "maxepi"):
            return output.logits.sum() * 0.0
        labels = batch["labels"].detach().cpu() > 0.5
        F, known = self.fundamentals(batch["query_ids"], batch["candidate_ids"])
        valid = labels & known
        n1, n2 = output.n_query, output.n_candidate
        if n1 != self.conf["grid"] ** 2 or n2 != self.conf["grid"] ** 2:
            raise DataError(f"epipolar guidance: expected {self.conf['grid']}^2 tokens per image, got {n1} and {n2}")
        if self.conf["per_head"]:
            A12, A21 = batch["model"].raw_cross_attention(output.last_input, n1, n2, per_head=True)
        else:
            A12, A21 = output.raw_cross
        I12, I21 = self.indicators(F)
        dev, dt = A12.device, A12.dtype
        fn = epipolar_loss if g == "epi" else max_epipolar_loss
        L = fn(A12, A21, I12.to(dev, dt), I21.to(dev, dt), valid.to(dev), per_head=self.conf["per_head"])
        return self.conf["weight"] * L

    def input_pe(self, batch: dict) -> torch.Tensor | None:
        """Hook of ``train_rrt``: EPE (B, 2 s^2, dim) of the pairs, or None unless guidance is ``epe``."""
        if self.epe is None:
            return None
        F, known = self.fundamentals(batch["query_ids"], batch["candidate_ids"])
        Fc = choose_fundamentals(batch["labels"].detach().cpu() > 0.5, F, known, self.generator)
        size = tuple(self.conf["net_size"])
        return self.epe(Fc, size, size)

    def test_input_pe(self, F: torch.Tensor, available: torch.Tensor) -> torch.Tensor | None:
        """EPE at test time: ``F`` (B, 3, 3) pseudo ground truth of every pair (never cameras); random rank-2
        where none was estimated (``available`` False)."""
        if self.epe is None:
            return None
        Fc = choose_fundamentals(torch.ones(len(F), dtype=torch.bool), F, available, self.generator)
        size = tuple(self.conf["net_size"])
        return self.epe(Fc, size, size)


def guidance_hooks(guidance: str, dataset, store_path=None, **conf: Any) -> dict:
    """``{"extra_loss": ..., "input_pe": ...}`` for ``train_rrt`` from a dataset with ``info["cameras"]``
    (image sizes from the store's ``image_size`` when present); ``{}`` for ``guidance="none"``."""
    if guidance not in GUIDANCES:
        raise ConfigError(f"--guidance must be one of {GUIDANCES}, got {guidance!r}")
    if guidance == "none":
        return {}
    cams = (getattr(dataset, "info", None) or {}).get("cameras")
    if not cams:
        raise ConfigError(f"--guidance {guidance}: dataset {getattr(dataset, 'name', '?')} has no cameras "
                          "(info['cameras']); use pseudo ground truth (relook geometry pseudo-gt)")
    sizes = {}
    if store_path is not None:
        from relook.store import FeatureStore

        with FeatureStore(store_path, "r") as st:
            for i in cams:
                if i in st and "image_size" in st.fields(i):
                    sizes[i] = tuple(int(v) for v in st.read(i, ["image_size"]).image_size)
    g = EpipolarGuidance(cameras=cams, image_sizes=sizes, guidance=guidance, **conf)
    return {"extra_loss": g.extra_loss} if guidance in ("epi", "maxepi") else {"input_pe": g.input_pe}
