"""Epipolar guidance for RRT training (the epipolar paper): ``guidance.kind: none | epi | maxepi | epe``.

``TrainingGuidance`` extends ``relook.models.epipolar_guidance.EpipolarGuidance`` (F in the network frame,
indicators, the encoding) with the two hooks of ``relook.train.rrt.train_rrt``:

- ``extra_loss(batch, output)``: ``weight * L`` with L = L_EPI (Eq. 1) or L_MaxEPI (Eq. 2) on the last
  layer's raw cross-attention, applied only to matching pairs (label 1) whose geometry is reliable
  (cameras known, or pseudo ground truth marked reliable). Total loss = BCE(match) + weight * L.

Which map is "the raw cross-attention" (Sec. 3.3: A12 = Q K'^T, A21 = Q' K^T of the last layer's input
y_{L-1}; Sec. 5.6 / Fig. 4 show one 49 x 49 map per direction, "the cross-attention maps from the last
layer"). RRT's code (``TransformerEncoder.get_last_attentions`` of the official RRT_SOP) reads the last
layer's ``nn.MultiheadAttention`` weights, which PyTorch returns AVERAGED over heads, each head's logits
being ``(q_h / sqrt(d_h)) k_h^T``. The raw counterpart of that map is therefore ``logits="mean"``
(default): A = mean_h Q_h K_h'^T / sqrt(d_h), the head-averaged pre-softmax logits, the quantity whose
row-wise softmax each head applies. ``logits="sum"`` is the literal single-W_Q reading (full width
Q K'^T, unscaled: the sum of the heads' unscaled products, H sqrt(d_h) = 22.6 times the mean for
d = 128, H = 4); at Xavier init its std is ~4, and the BCE first spends the steps on removing that random
variance. ``offset`` (``relook.losses.epipolar``, "prior" by default) adds the base-rate logit so the
pattern-free optimum is A = 0; with ``offset="zero"`` and either reading the supervised logits collapse
to a constant and the attention share stays at chance (mechanism in ``relook.losses.epipolar``; the
controlled case in ``tests/train/test_epipolar_controlled.py``). ``per_head=True`` applies the loss to
each head's map (scaled by 1/sqrt(d_h) with ``logits="mean"``) and averages over heads.
- ``input_pe(batch)``: the Epipolar Positional Encoding of every pair (Sec. 3.4): F of the cameras /
  pseudo ground truth for matching pairs, a random rank-2 matrix for non-matching pairs.

A training transform's crop / resize / flip reaches F through the per-image pixel maps it reports in
``batch[side]["pixel_map"]`` (Sec. 5.2: F follows the image transforms).
"""

from __future__ import annotations

from collections.abc import Mapping
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
        A12, A21 = self.supervised_logits(batch["model"], output)
        I12, I21 = self.indicators(F)
        dev, dt = A12.device, A12.dtype
        fn = epipolar_loss if g == "epi" else max_epipolar_loss
        L = fn(
            A12,
            A21,
            I12.to(dev, dt),
            I21.to(dev, dt),
            valid.to(dev),
            per_head=self.conf["per_head"],
            offset=self.conf["offset"],
        )
        return self.conf["weight"] * L

    def supervised_logits(self, model, output) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw maps (A12, A21) the loss reads: (B, n1, n2) / (B, n2, n1), or per head (B, H, ., .).

        ``logits="mean"``: mean_h Q_h K_h'^T / sqrt(d_h) (the module docstring says why); computed from the
        full-width ``output.raw_cross`` (sum over heads of the unscaled products) divided by H sqrt(d_h),
        which is the same number. ``logits="sum"``: ``output.raw_cross`` as it is.
        """
        n1, n2 = output.n_query, output.n_candidate
        mean = self.conf["logits"] == "mean"
        if self.conf["per_head"]:
            return model.raw_cross_attention(output.last_input, n1, n2, per_head=True, scaled=mean)
        A12, A21 = output.raw_cross
        if mean:
            H = model.conf["nhead"]
            k = H * (model.conf["d_model"] // H) ** 0.5
            A12, A21 = A12 / k, A21 / k
        return A12, A21

    def input_pe(self, batch: dict) -> torch.Tensor | None:
        """Hook of ``train_rrt``: EPE (B, 2 s^2, dim) of the pairs, or None unless guidance is ``epe``."""
        if self.epe is None:
            return None
        F, known = self.fundamentals(batch["query_ids"], batch["candidate_ids"], *self._maps(batch))
        Fc = choose_fundamentals(batch["labels"].detach().cpu() > 0.5, F, known, self.generator)
        size = tuple(self.conf["net_size"])
        return self.epe(Fc, size, size)


def store_frame(meta: Mapping[str, str]) -> dict[str, Any]:
    """The network frame a store's locals were computed in, as guidance settings (``net_size``,
    ``eval_resize``), from its provenance (``extractor.image_size``, ``extractor.eval_resize``, written as
    strings by ``Extractor.provenance``). ``cnn_local`` with ``eval_resize=N`` resizes to N x N and takes
    the centre ``image_size`` crop (official SOP test preprocessing), so a grid cell covers another part of
    the original image than under a plain resize; F must follow the same map. Empty when the store does
    not say (other extractors, ``image_size`` None)."""

    def num(key: str) -> int | None:
        v = meta.get(f"extractor.{key}")
        try:
            return int(v) if v not in (None, "None", "") else None
        except ValueError:
            return None

    size, resize = num("image_size"), num("eval_resize")
    if size is None:
        return {}
    return {"net_size": (size, size), **({"eval_resize": resize} if resize else {})}


def guidance_hooks(guidance: str, dataset, store_path=None, pseudo_gt=None, **conf: Any) -> dict:
    """Keyword arguments of ``train_rrt``: ``extra_loss`` (epi, maxepi) or ``input_pe`` (epe), and
    ``guidance``, the settings the checkpoint records (``{"guidance": "none"}`` without guidance).

    Geometry from the dataset's ``info["cameras"]`` and/or a pseudo ground-truth file ``pseudo_gt``
    (``relook geometry pseudo-gt``: the SOP setting of the epipolar paper's Table 2, where no cameras
    exist). Original image sizes come from the store's ``image_size`` when present, and the network frame
    from the store's extractor settings (``store_frame``) unless ``conf`` names ``net_size`` /
    ``eval_resize`` itself.
    """
    if guidance not in GUIDANCES:
        raise ConfigError(f"guidance.kind must be one of {GUIDANCES}, got {guidance!r}")
    if guidance == "none":
        return {"guidance": {"guidance": "none"}}
    cams = (getattr(dataset, "info", None) or {}).get("cameras") or {}
    pairs = {}
    if pseudo_gt is not None:
        pairs = read_pseudo_gt(pseudo_gt)
    if not cams and not pairs:
        raise ConfigError(
            f"guidance.kind {guidance}: dataset {getattr(dataset, 'name', '?')} has no cameras "
            "(info['cameras']); give guidance.pseudo_gt=FILE from `relook geometry pseudo-gt`"
        )
    ids = set(cams) | {i for p in pairs for i in p}
    sizes = {}
    if store_path is not None:
        with FeatureStore(store_path, "r") as st:
            conf = {**store_frame(st.meta), **conf}
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
