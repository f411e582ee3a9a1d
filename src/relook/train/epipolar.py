"""Epipolar guidance for RRT training (seed 002): ``--guidance {none, epi, maxepi, epe}``.

``EpipolarGuidance`` turns per-image cameras (or per-pair pseudo ground truth F) into the two hooks of
``relook.train.rrt.train_rrt``:

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

F is computed in the pixel frame the network sees; the grid is the ``grid x grid`` feature map over that
frame. Both sources of F start in the pixel frame of the original image (size (H, W) from
``image_sizes``, e.g. the store's ``image_size``): camera intrinsics K describe the original image, and
pseudo ground truth (``relook.geometry.robust``) is estimated on the original images. Each image's pixel
map ``A`` (original -> network pixels: the resize to ``net_size``, or the crop/resize/flip a training
transform reports in ``batch[side]["pixel_map"]``) is then applied to F alike,
``F_net = A_c^-T F A_q^-1`` (Sec. 5.2 of the epipolar paper: F follows the image transforms), which for
cameras equals F of the adjusted intrinsics ``A K``. A pseudo ground-truth file holding only the pair
(c, q) serves (q, c) with ``F^T``.

``weight`` is not in the main paper (its supplementary has the CO3D hyperparameters); the default
scales the summed loss (2 s^4 = 4802 terms for s = 7) down so that it starts a few times the match BCE.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from relook.config import merge_conf
from relook.errors import ConfigError, DataError
from relook.geometry.epipolar import epipolar_indicator, fundamental_from_cameras, random_fundamental
from relook.losses.epipolar import OFFSETS, epipolar_loss, max_epipolar_loss
from relook.models.epe import EpipolarPositionalEncoding, choose_fundamentals, pair_generator

GUIDANCES = ("none", "epi", "maxepi", "epe")
LOGITS = ("mean", "sum")


class EpipolarGuidance:
    default_conf: ClassVar[dict[str, Any]] = {
        "guidance": "epi",  # none | epi (Eq. 1) | maxepi (Eq. 2) | epe (Sec. 3.4)
        "weight": 1e-3,  # lambda in BCE + lambda * L (sum over s^4 entries per direction)
        "per_head": False,  # loss on each head's logits (averaged) instead of one map of the heads
        "logits": "mean",  # mean: mean_h Q_h K_h^T / sqrt(d_h) (MHA's averaged map, raw) | sum: full-width Q K^T
        "offset": "prior",  # prior: sigma(A + logit(base rate)) (relook.losses.epipolar) | zero: literal sigma(A)
        "grid": 7,  # s: feature grid side
        "net_size": (224, 224),  # (H, W) of the network input the grid covers
        "mode": "intersect",  # indicator rule: intersect (cells the line passes through, Sec. 3.3) | distance
        "radius": 1.0,  # indicator threshold factor (distance mode)
        "eval_resize": None,  # store extracted with cnn_local eval_resize=N (resize N x N, centre crop): same N
        "dim": 128,  # EPE width = RRT d_model
        "bands": 10,  # EPE octaves (``relook.models.epe``: NeRF Eq. (4), frequencies 2^1 .. 2^bands)
        "seed": 0,  # random F for non-matches and EPE reference pixels
    }

    def __init__(
        self,
        cameras: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        image_sizes: Mapping[str, Sequence[int]] | None = None,
        pseudo_gt: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
        **conf: Any,
    ) -> None:
        self.conf = c = merge_conf(self.default_conf, conf, "EpipolarGuidance")
        if c["guidance"] not in GUIDANCES:
            raise ConfigError(f"guidance must be one of {GUIDANCES}, got {c['guidance']!r}")
        if c["logits"] not in LOGITS:
            raise ConfigError(f"logits must be one of {LOGITS}, got {c['logits']!r}")
        if c["offset"] not in OFFSETS:
            raise ConfigError(f"offset must be one of {OFFSETS}, got {c['offset']!r}")
        if c["guidance"] != "none" and cameras is None and pseudo_gt is None:
            raise ConfigError(f"guidance {c['guidance']!r} needs cameras or pseudo ground truth")
        self.cameras, self.image_sizes, self.pseudo_gt = cameras or {}, image_sizes or {}, pseudo_gt or {}
        self.generator = torch.Generator().manual_seed(int(c["seed"]))
        self.epe = (
            EpipolarPositionalEncoding(dim=c["dim"], grid=c["grid"], seed=c["seed"], bands=c["bands"])
            if c["guidance"] == "epe"
            else None
        )

    def resize_map(self, image_id: str) -> np.ndarray:
        """Pixel map (3, 3) from the original image to the network frame (pixel centres at integers): the
        resize to ``net_size``, or with ``eval_resize`` N the official SOP resize to N x N + centre crop."""
        from relook.datasets.transforms import eval_transform_map

        H, W = self.image_sizes.get(image_id, self.conf["net_size"])
        nh, nw = self.conf["net_size"]
        if self.conf["eval_resize"]:
            if nh != nw:
                raise ConfigError(f"eval_resize needs a square net_size, got {self.conf['net_size']}")
            return eval_transform_map((H, W), int(self.conf["eval_resize"]), nh)
        sx, sy = nw / W, nh / H
        return np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])

    def original_fundamental(self, q: str, c: str) -> tuple[np.ndarray, bool] | None:
        """F (3, 3) between the ORIGINAL images q and c (x_c^T F x_q = 0) and whether it is reliable;
        cameras first, then pseudo ground truth (either order of the pair); None when neither is known."""
        if q in self.cameras and c in self.cameras:
            cq, cc = self.cameras[q], self.cameras[c]
            F = fundamental_from_cameras(
                np.asarray(cq["K"], np.float64), cq["R"], cq["t"], np.asarray(cc["K"], np.float64), cc["R"], cc["t"]
            ).numpy()
            return F, True
        for key, transpose in (((q, c), False), ((c, q), True)):
            if key in self.pseudo_gt:
                r = self.pseudo_gt[key]
                F = np.asarray(r["F"], np.float64)
                return (F.T if transpose else F), bool(r["reliable"])
        return None

    def fundamentals(
        self, qids: Sequence[str], cids: Sequence[str], q_maps=None, c_maps=None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """F (B, 3, 3) float64 in the network frame and ``known`` (B,) bool (cameras, or reliable pseudo GT).

        ``q_maps`` / ``c_maps`` (B, 3, 3): per-image pixel maps original -> network frame (e.g. a random
        resized crop + flip of training); default: the resize to ``net_size`` (``resize_map``).
        """
        B = len(qids)
        F = torch.zeros(B, 3, 3, dtype=torch.float64)
        known = torch.zeros(B, dtype=torch.bool)
        for b, (q, c) in enumerate(zip(qids, cids)):
            got = self.original_fundamental(q, c)
            if got is None:
                continue
            Aq = np.asarray(q_maps[b], np.float64) if q_maps is not None else self.resize_map(q)
            Ac = np.asarray(c_maps[b], np.float64) if c_maps is not None else self.resize_map(c)
            Fn = np.linalg.inv(Ac).T @ got[0] @ np.linalg.inv(Aq)
            F[b] = torch.from_numpy(Fn / max(np.linalg.norm(Fn), 1e-300))
            known[b] = got[1]
        return F, known

    @staticmethod
    def _maps(batch: dict) -> tuple:
        """Per-image pixel maps (original -> network) of the batch's sides when a training transform set them."""
        q, c = batch.get("query") or {}, batch.get("candidate") or {}
        qm, cm = q.get("pixel_map"), c.get("pixel_map")
        return (None, None) if qm is None or cm is None else (qm.cpu().numpy(), cm.cpu().numpy())

    def indicators(self, F: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = tuple(self.conf["net_size"])
        return epipolar_indicator(F, size, size, self.conf["grid"], self.conf["mode"], self.conf["radius"])

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

    def test_input_pe(self, F: torch.Tensor, available: torch.Tensor) -> torch.Tensor | None:
        """EPE at test time: ``F`` (B, 3, 3) pseudo ground truth of every pair (never cameras); random rank-2
        where none was estimated (``available`` False)."""
        if self.epe is None:
            return None
        Fc = choose_fundamentals(torch.ones(len(F), dtype=torch.bool), F, available, self.generator)
        size = tuple(self.conf["net_size"])
        return self.epe(Fc, size, size)

    def pair_input_pe(self, query_id: str, candidate_ids: Sequence[str]) -> torch.Tensor:
        """EPE (K, 2 s^2, dim) of one query against K candidates at reranking time (Sec. 5.2, test).

        F of every pair from the pseudo ground truth (either stored order), mapped into the network frame
        as in training (``fundamentals``, image sizes from ``image_sizes``); a pair whose estimate is
        unreliable (Sec. 5.2 rule) or missing gets a random rank-2 F. The random F and the reference pixel of
        a pair come from ``pair_generator(seed, query_id, candidate_id)``: the same pair always gets the
        same encoding, whatever else is in the shortlist.
        """
        if self.epe is None:
            raise ConfigError(f"pair_input_pe needs guidance 'epe', this guidance is {self.conf['guidance']!r}")
        K = len(candidate_ids)
        F, known = self.fundamentals([query_id] * K, list(candidate_ids))
        size = tuple(self.conf["net_size"])
        Fc, ref = torch.zeros(K, 3, 3, dtype=torch.float64), torch.zeros(K, 2, dtype=torch.float64)
        for b, cid in enumerate(candidate_ids):
            g = pair_generator(self.conf["seed"], query_id, cid)
            Fc[b] = F[b] if bool(known[b]) else random_fundamental(seed=g)
            ref[b] = torch.rand(2, generator=g, dtype=torch.float64) * Fc.new_tensor([size[1], size[0]]) - 0.5
        return self.epe(Fc, size, size, ref_pixel=ref)

    def record(self) -> dict[str, Any]:
        """The settings a checkpoint keeps (``guidance_json``): what reranking must reproduce."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.conf.items()}


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
        raise ConfigError(f"--guidance must be one of {GUIDANCES}, got {guidance!r}")
    if guidance == "none":
        return {"guidance": {"guidance": "none"}}
    cams = (getattr(dataset, "info", None) or {}).get("cameras") or {}
    pairs = {}
    if pseudo_gt is not None:
        from relook.geometry.robust import read_pseudo_gt

        pairs = read_pseudo_gt(pseudo_gt)
    if not cams and not pairs:
        raise ConfigError(
            f"--guidance {guidance}: dataset {getattr(dataset, 'name', '?')} has no cameras "
            "(info['cameras']); pass --pseudo-gt FILE from `relook geometry pseudo-gt`"
        )
    ids = set(cams) | {i for p in pairs for i in p}
    sizes = {}
    if store_path is not None:
        from relook.store import FeatureStore

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
    g = EpipolarGuidance(cameras=cams or None, image_sizes=sizes, pseudo_gt=pairs or None, guidance=guidance, **conf)
    hook = {"extra_loss": g.extra_loss} if guidance in ("epi", "maxepi") else {"input_pe": g.input_pe}
    return {**hook, "guidance": g.record()}
