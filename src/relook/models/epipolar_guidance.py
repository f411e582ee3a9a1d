"""Epipolar guidance of an RRT (the epipolar paper): ``guidance`` one of ``none, epi, maxepi, epe``.

``EpipolarGuidance`` is the half that inference needs as well as training: F of a pair in the network's
pixel frame (``fundamentals``), the epipolar indicator grids (``indicators``, Sec. 3.3) and the Epipolar
Positional Encoding of a query against its shortlist at reranking time (``pair_input_pe``, Sec. 3.4 / 5.2),
with the settings a checkpoint records (``record``). The training hooks (L_EPI / L_MaxEPI and the EPE of
a training batch) extend it in ``relook.train.epipolar.TrainingGuidance``.

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
from relook.errors import ConfigError
from relook.geometry.epipolar import epipolar_indicator, fundamental_from_cameras, random_fundamental
from relook.geometry.pixel_maps import eval_transform_map, resize_matrix
from relook.losses.epipolar import OFFSETS
from relook.models.epe import EpipolarPositionalEncoding, choose_fundamentals, pair_generator

GUIDANCES = ("none", "epi", "maxepi", "epe")
LOGITS = ("mean", "sum")  # the raw map L_EPI / L_MaxEPI read (relook.train.epipolar.TrainingGuidance)


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
        H, W = self.image_sizes.get(image_id, self.conf["net_size"])
        nh, nw = self.conf["net_size"]
        if self.conf["eval_resize"]:
            if nh != nw:
                raise ConfigError(f"eval_resize needs a square net_size, got {self.conf['net_size']}")
            return eval_transform_map((H, W), int(self.conf["eval_resize"]), nh)
        return resize_matrix((W, H), (nw, nh))

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

    def indicators(self, F: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Epipolar indicator grids (I12, I21), each (B, s^2, s^2), of F (B, 3, 3) in the network frame (Sec. 3.3)."""
        size = tuple(self.conf["net_size"])
        return epipolar_indicator(F, size, size, self.conf["grid"], self.conf["mode"], self.conf["radius"])

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
