"""Epipolar guidance for RRT training (the epipolar paper): ``--guidance {none, epi, maxepi, epe}``.

``TrainingGuidance`` extends ``relook.models.epipolar_guidance.EpipolarGuidance`` (F in the network frame,
indicators, the encoding) with the two hooks of ``relook.train.rrt.train_rrt``:

- ``extra_loss(batch, output)``: ``weight * L`` with L = L_EPI (Eq. 1) or L_MaxEPI (Eq. 2) on the last
  layer's raw cross-attention, applied only to matching pairs (label 1) whose geometry is reliable
  (cameras known, or pseudo ground truth marked reliable). Total loss = BCE(match) + weight * L.
- ``input_pe(batch)``: the Epipolar Positional Encoding of every pair (Sec. 3.4): F of the cameras /
  pseudo ground truth for matching pairs, a random rank-2 matrix for non-matching pairs.

A training transform's crop / resize / flip reaches F through the per-image pixel maps it reports in
``batch[side]["pixel_map"]`` (Sec. 5.2: F follows the image transforms).
"""

from __future__ import annotations

from typing import Any

import torch

from relook.errors import ConfigError, DataError
from relook.geometry.robust import read_pseudo_gt
from relook.losses.epipolar import epipolar_loss, max_epipolar_loss
from relook.models.epe import choose_fundamentals
from relook.models.epipolar_guidance import GUIDANCES, EpipolarGuidance
from relook.store import FeatureStore


class TrainingGuidance(EpipolarGuidance):
    """``EpipolarGuidance`` plus the training hooks ``extra_loss`` (epi, maxepi) and ``input_pe`` (epe)."""

    @staticmethod
    def _maps(batch: dict) -> tuple:
        """Per-image pixel maps (original -> network) of the batch's sides when a training transform set them."""
        q, c = batch.get("query") or {}, batch.get("candidate") or {}
        qm, cm = q.get("pixel_map"), c.get("pixel_map")
        return (None, None) if qm is None or cm is None else (qm.cpu().numpy(), cm.cpu().numpy())

    def extra_loss(self, batch: dict, output) -> torch.Tensor:
        """Hook of ``train_rrt``: weight * L_EPI / L_MaxEPI on matching pairs with known geometry."""
        g = self.conf["guidance"]
        if g not in ("epi", "maxepi"):
            return output.logits.sum() * 0.0
        labels = batch["labels"].detach().cpu() > 0.5
        F, known = self.fundamentals(batch["query_ids"], batch["candidate_ids"], *self._maps(batch))
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
        F, known = self.fundamentals(batch["query_ids"], batch["candidate_ids"], *self._maps(batch))
        Fc = choose_fundamentals(batch["labels"].detach().cpu() > 0.5, F, known, self.generator)
        size = tuple(self.conf["net_size"])
        return self.epe(Fc, size, size)


def guidance_hooks(guidance: str, dataset, store_path=None, pseudo_gt=None, **conf: Any) -> dict:
    """Keyword arguments of ``train_rrt``: ``extra_loss`` (epi, maxepi) or ``input_pe`` (epe), and
    ``guidance``, the settings the checkpoint records (``{"guidance": "none"}`` without guidance).

    Geometry from the dataset's ``info["cameras"]`` and/or a pseudo ground-truth file ``pseudo_gt``
    (``relook geometry pseudo-gt``: the SOP setting of the epipolar paper's Table 2, where no cameras
    exist). Original image sizes come from the store's ``image_size`` when present.
    """
    if guidance not in GUIDANCES:
        raise ConfigError(f"--guidance must be one of {GUIDANCES}, got {guidance!r}")
    if guidance == "none":
        return {"guidance": {"guidance": "none"}}
    cams = (getattr(dataset, "info", None) or {}).get("cameras") or {}
    pairs = {}
    if pseudo_gt is not None:
        pairs = read_pseudo_gt(pseudo_gt)
    if not cams and not pairs:
        raise ConfigError(
            f"--guidance {guidance}: dataset {getattr(dataset, 'name', '?')} has no cameras "
            "(info['cameras']); pass --pseudo-gt FILE from `relook geometry pseudo-gt`"
        )
    ids = set(cams) | {i for p in pairs for i in p}
    sizes = {}
    if store_path is not None:
        with FeatureStore(store_path, "r") as st:
            for i in ids:
                if i in st and "image_size" in st.fields(i):
                    sizes[i] = tuple(int(v) for v in st.read(i, ["image_size"]).image_size)
            first = next((i for i in sorted(ids) if i in st), None)
            if first is not None and "grid" not in conf:  # grid side from the stored s x s locals
                n = st.read(first, ["local_desc"]).num_local
                if round(n**0.5) ** 2 == n:
                    conf = {**conf, "grid": round(n**0.5)}
    g = TrainingGuidance(cameras=cams or None, image_sizes=sizes, pseudo_gt=pairs or None, guidance=guidance, **conf)
    hook = {"extra_loss": g.extra_loss} if guidance in ("epi", "maxepi") else {"input_pe": g.input_pe}
    return {**hook, "guidance": g.record()}
