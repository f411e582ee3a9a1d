"""Training the Reranking Transformer: BCE on (query, positive) / (query, hard negative) pairs.

Follows the official RRT code (``TripletSampler`` + ``train_one_epoch``): every training image's top-K
(K = 100) neighbours by the global descriptor are computed once; each epoch visits the anchors in a
seeded random order and draws one random positive and one random negative (from the anchor's top-K: hard
negatives). ``triplets_per_batch`` triplets give 2x as many pairs, labelled 1 (anchor, positive) and 0
(anchor, negative), scored with the anchor as the query; the loss is the mean binary cross-entropy with
logits. AdamW, MultiStep learning-rate milestones, optional gradient-norm clipping (max_norm 0.1, RRT supp.
Sec. D).

Positives (``positives``): ``"topk"`` = the same-label images among the anchor's top-K, and anchors with
fewer than ``min_positives`` of them are dropped (official landmark code, GLD value 5); ``"label"`` = every
other image of the anchor's label, wherever it ranks (official SOP code).

Recipes (config files ``configs/train/rrt-<name>.yaml`` read by ``relook.train.config``; options given
after them override them):

- ``official-landmark``: the official GLD script: 15 epochs, lr 1e-4, weight decay 5e-4, milestones
  [16, 18] (so a constant rate over its 15 epochs), 12 triplets (36 images) per step, top-100 positives
  with at least 5 of them.
- ``official-sop``: the official SOP script: 100 epochs, lr 1e-4, weight decay 4e-4, milestones [60, 80],
  100 triplets (300 images) per step, positives from all same-label images, negatives from the global
  top-100; with ``finetune`` the images are augmented by a random resized crop + flip.
- ``epipolar-sop``: seed 002 (Sec. 5): "the same as [the official SOP code], except 40 epochs with a
  constant learning rate of 1e-4" (no milestones).

Without a recipe the milestones default to none (a constant rate): the official [16, 18] only meant
"constant" for 15 epochs, and silently dropped the rate to 1e-5 at epoch 16 of longer runs.

Backbone: ``frozen`` trains on features already in the store (the "R50 (frozen) + RRT" baseline);
``finetune`` recomputes the locals from images through a ``CNNLocalNet`` trained jointly (the
"R50 (finetune) + RRT" baseline; BatchNorm statistics frozen as in the official code). With ``augment``
(fine-tuning only) each image is randomly cropped, resized and flipped (``TrainTransform.official_sop``);
the side then carries ``pixel_map`` (B, 3, 3), original -> network pixels, which the epipolar guidance
applies to F (the crop-adjusted F of Sec. 5.2 of the epipolar paper).

Distillation (``loss: distill``, relook's own option, not in the paper): instead of BCE on triplets, the
logit is regressed (mean squared error) onto the training-free teacher of ``relook.train.teacher`` (global
cosine + w * Chamfer similarity of the same tokens, Eq. T2 there) over the pairs (anchor, neighbour) of
every anchor's global top-K (``distill_pairs`` random neighbours per anchor and epoch; all K when None).
With ``distill_standardize`` the target is the teacher's z-score over all training top-K pairs (ranking
is unchanged by it; the logit stays on a BCE-friendly scale for the fine-tuning that follows). "Distil,
then fine-tune" = a ``distill`` run, then a ``bce`` run with ``init_checkpoint`` = its checkpoint.
Needs a model with a global token (the teacher reads the global descriptors).

``distill_within`` (relook's own): the MSE sees only the part of the teacher that a reranking uses. Each
anchor's mean is removed from both the logits and the teacher over its pairs in the step (``within_anchor_mse``,
Eq. W1), and the target is scaled by the teacher's mean within-anchor std (so it has unit spread inside a
shortlist); an epoch's pairs come grouped by anchor (``distill_pairs`` per anchor). Why: with the plain MSE the
between-anchor part of the teacher (which anchors have high scores overall) dominates the target, and an RRT
learns it first while its within-shortlist correlation stays near 0.1 (docs/findings/rrt-ukbench.md); the
centred loss removes that part, and the same RRT reaches a within-shortlist correlation of ~0.5-0.7 in the
first few hundred steps (``scripts/rrt_fidelity_probe.py --loss within``).

Warm start: ``init_checkpoint`` loads an RRT checkpoint's weights (not its optimizer or epoch) before
training, e.g. fine-tuning from a frozen-backbone RRT (a ``.pt`` checkpoint or a shipped ``.safetensors``),
or BCE after distillation.

Augmentation with a frozen backbone: ``ViewSource`` holds several stored views of every image (e.g.
random crops through the frozen CNN, ``scripts/rrt_ukbench_features.py``) and draws one per image and
step (seeded per epoch), the offline stand-in for re-augmenting images every epoch.

Extra losses: ``extra_loss(batch, output) -> scalar tensor`` is added to the BCE (the Epipolar Loss
plugs in here). ``input_pe(batch) -> (2B, n1+n2, C)`` (``batch``: ``query_ids``, ``candidate_ids``,
``labels``, ``query`` / ``candidate`` sides) is added to the local tokens (RRT's ``input_pe``; the
Epipolar Positional Encoding plugs in here). ``batch`` holds ``query`` / ``candidate`` sides (see
``relook.models.rrt.inputs``, with ``keypoints`` in pixels and ``image_size``), ``labels`` (2B,),
``query_ids`` / ``candidate_ids``, ``pair_info`` (``pair_info(qid, cid)`` per pair when given, e.g.
cameras), ``info`` (the data's info dict) and ``model`` (the unwrapped RRT, e.g. for
``raw_cross_attention``). ``output`` is the ``RRTOutput`` with ``last_input`` and full-width (summed over
heads) ``raw_cross`` filled in.

Guidance record: ``guidance`` (``relook.train.epipolar.guidance_hooks`` gives it) is saved in every
checkpoint as ``guidance_json`` (default ``{"guidance": "none"}``), so reranking knows that an EPE model
needs the encoding at its input; resuming with another guidance than the checkpoint's is refused.

Distributed: under ``torchrun`` (WORLD_SIZE > 1) the process group is initialised, the model is wrapped
in DDP and each rank takes every WORLD_SIZE-th triplet; rank 0 writes checkpoints.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from relook.checkpoints import load_state_into
from relook.config import merge_conf
from relook.errors import ConfigError, DataError
from relook.features.cnn_local import grid_keypoints, to_tensor
from relook.geometry.pixel_maps import eval_transform_map
from relook.io import atomic_path, json_text
from relook.models.position_encoding import grid_positions
from relook.models.rrt import RRT, RRTOutput
from relook.models.rrt.checkpoint import guidance_of, read_checkpoint, read_safetensors, save_rrt
from relook.models.rrt.inputs import index_side, model_kwargs, pack_side
from relook.search import exact_search
from relook.train.teacher import teacher_of_sides
from relook.types import ImageFeatures

LOSSES = ("bce", "distill")

DEFAULT_CONF: dict[str, Any] = {
    "epochs": 15,  # training epochs (official landmark)
    "lr": 1e-4,  # AdamW learning rate (official)
    "weight_decay": 5e-4,  # AdamW weight decay (official landmark; SOP 4e-4)
    "milestones": [],  # MultiStepLR epochs; none = constant lr (see module docstring)
    "gamma": 0.1,  # MultiStepLR factor
    "max_norm": 0.0,  # gradient-norm clipping; 0 = off, 0.1 for the R101 models (supp. D)
    "triplets_per_batch": 12,  # (anchor, positive, negative) per step (official landmark: 36 images)
    "top_k": 100,  # neighbours by global descriptor that negatives (and topk positives) come from
    "positives": "topk",  # topk: same-label images in the top-k (landmark) | label: all same-label (SOP)
    "min_positives": 1,  # topk positives: anchors need this many in their top-k (official GLD: 5)
    "augment": False,  # fine-tuning: random resized crop + flip of every image (official SOP)
    "seed": 0,  # seeds model init elsewhere, triplet sampling and augmentation here
    "finetune": False,  # train the CNN backbone jointly (needs an image source)
    "max_locals": None,  # locals per image; None = the model's max_locals
    "loss": "bce",  # bce (official: triplets) | distill (MSE onto the teacher over top-K pairs, relook's own)
    "distill_pairs": None,  # distill: neighbours per anchor and epoch drawn from its top-K; None = all K
    "pairs_per_batch": 200,  # distill: pairs per step (= the pairs of 100 triplets)
    "distill_weight": 1.0,  # distill: Chamfer weight w of the teacher (Eq. T2 of relook.train.teacher)
    "distill_standardize": True,  # distill: target = z-score of the teacher over the training top-K pairs
    "distill_within": False,  # distill: remove each anchor's mean from logit and teacher (Eq. W1, relook's own)
    "init_checkpoint": None,  # warm start: RRT checkpoint whose weights initialise the model
    "device": "cpu",  # torch device (cuda:LOCAL_RANK under torchrun with CUDA)
}


@dataclass
class PairData:
    """Training images: ``ids`` (N,), ``labels`` (N,), ``neighbours`` (N, K) indices into ids (-1 = none)."""

    ids: list[str]
    labels: np.ndarray
    neighbours: np.ndarray
    info: dict = field(default_factory=dict)


def global_neighbours(global_desc: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` neighbours (N, k) of every row by inner product, itself excluded (-1 pads short rows)."""

    n = len(global_desc)
    ids = [str(i) for i in range(n)]
    sl = exact_search(global_desc, global_desc, k, ids, ids, exclude=np.arange(n))
    out = np.full((n, k), -1, np.int64)
    out[:, : sl.k] = sl.indices
    return out


def sample_triplets(
    data: PairData, min_positives: int, rng: np.random.Generator, positives: str = "topk"
) -> np.ndarray:
    """One epoch of (anchor, positive, negative) index triplets (T, 3), official TripletSampler rules.

    Negatives: a random different-label image of the anchor's top-K. Positives: ``"topk"`` a random
    same-label image of the top-K (anchors with fewer than ``min_positives`` dropped, landmark code);
    ``"label"`` a random other image of the anchor's label (SOP code). Anchors without a positive or a
    negative are skipped.
    """
    if positives not in ("topk", "label"):
        raise ConfigError(f"train rrt: positives must be 'topk' or 'label', got {positives!r}")
    by_label: dict[Any, np.ndarray] = {}
    if positives == "label":
        for lab in np.unique(data.labels):
            by_label[lab] = np.flatnonzero(data.labels == lab)
    out = []
    for a in rng.permutation(len(data.ids)):
        nn_ = data.neighbours[a][data.neighbours[a] >= 0]
        same = data.labels[nn_] == data.labels[a]
        neg = nn_[~same]
        if positives == "topk":
            pos = nn_[same]
            if len(pos) < max(1, min_positives):
                continue
        else:
            pos = by_label[data.labels[a]]
            pos = pos[pos != a]
        if len(pos) == 0 or len(neg) == 0:
            continue
        out.append((a, rng.choice(pos), rng.choice(neg)))
    return np.asarray(out, np.int64).reshape(-1, 3)


def triplet_pairs(trip: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triplets (T, 3) -> the 2T scored pairs: anchors (2T,), candidates (2T,) and BCE labels (2T,) float32:
    1 for (anchor, positive), 0 for (anchor, negative) (official ``train_one_epoch``)."""
    trip = np.asarray(trip, np.int64).reshape(-1, 3)
    anchors = np.concatenate([trip[:, 0], trip[:, 0]])
    cands = np.concatenate([trip[:, 1], trip[:, 2]])
    labels = np.concatenate([np.ones(len(trip), np.float32), np.zeros(len(trip), np.float32)])
    return anchors, cands, labels


def sample_distill_pairs(
    data: PairData, per_anchor: int | None, rng: np.random.Generator, grouped: bool = False
) -> np.ndarray:
    """One epoch of distillation pairs (P, 2) = (anchor, neighbour): anchors in a seeded random order,
    ``per_anchor`` distinct random neighbours of each anchor's top-K (all of them when None), shuffled
    (``grouped``: left in anchor order, each anchor's pairs consecutive, for ``within_anchor_mse``)."""
    out = []
    for a in rng.permutation(len(data.ids)):
        nn_ = data.neighbours[a][data.neighbours[a] >= 0]
        if per_anchor is not None and per_anchor < len(nn_):
            nn_ = rng.choice(nn_, per_anchor, replace=False)
        out.extend((a, int(j)) for j in nn_)
    pairs = np.asarray(out, np.int64).reshape(-1, 2)
    return pairs if grouped else pairs[rng.permutation(len(pairs))]


def within_batches(items: np.ndarray, bs: int, rank: int = 0, world: int = 1) -> tuple[np.ndarray, list]:
    """This rank's pairs and its batches as (start, end) spans for ``distill_within``: ``items`` (P, 2) come
    grouped by anchor (``sample_distill_pairs(..., grouped=True)``); whole groups go round-robin to the ranks,
    and each batch holds whole groups, up to ``bs`` pairs (one group when a group alone is larger). Every rank
    keeps the same number of batches (the smallest over the ranks, computed alike on each), so DDP steps
    stay in step."""
    cuts = np.flatnonzero(np.diff(items[:, 0])) + 1 if len(items) else np.zeros(0, np.int64)
    groups = np.split(items, cuts) if len(items) else []

    def spans_of(gs: list) -> list:
        out, start, n = [], 0, 0
        for g in gs:
            if n and n + len(g) > bs:
                out.append((start, start + n))
                start, n = start + n, 0
            n += len(g)
        if n:
            out.append((start, start + n))
        return out

    per_rank = [groups[r::world] for r in range(world)]
    n_steps = min(len(spans_of(gs)) for gs in per_rank)
    mine = per_rank[rank]
    return (np.concatenate(mine) if mine else items[:0]), spans_of(mine)[:n_steps]


def within_anchor_mse(logits: torch.Tensor, target: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Eq. W1 (relook's own): mean over pairs of ((s - mean_a s) - (t - mean_a t))^2, means taken over the
    pairs of the same anchor in the batch; pairs whose anchor has no other pair in the batch carry no ranking
    information and are left out (0 when none is left)."""
    _, inv = torch.unique(anchors, return_inverse=True)
    cnt = torch.bincount(inv).to(logits.dtype)
    d = logits - target
    mean = torch.zeros_like(cnt).index_add(0, inv, d) / cnt
    keep = cnt[inv] > 1
    if not bool(keep.any()):
        return logits.sum() * 0.0
    return ((d - mean[inv])[keep] ** 2).mean()


class StoreSource:
    """Frozen backbone: sides packed from stored ``ImageFeatures`` (indexed like ``PairData.ids``)."""

    def __init__(self, feats: Sequence[ImageFeatures]) -> None:
        self.feats = list(feats)

    def parameters(self):
        return []

    def sides(self, idx: np.ndarray, model_conf: dict, max_locals, device) -> dict:
        return pack_side([self.feats[i] for i in idx], model_conf, max_locals, device)


class ViewSource(StoreSource):
    """Frozen backbone with augmentation: ``views[i]`` lists stored views of image i (view 0 = the image
    itself); every call draws one view per image from a generator seeded by (seed, epoch) (``set_epoch``,
    called by ``train_rrt`` at every epoch, so a resumed run draws the same views)."""

    def __init__(self, views: Sequence[Sequence[ImageFeatures]], seed: int = 0) -> None:
        super().__init__([v[0] for v in views])
        self.views = [list(v) for v in views]
        self.seed = seed
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        self.rng = np.random.default_rng([self.seed, epoch])

    def sides(self, idx: np.ndarray, model_conf: dict, max_locals, device) -> dict:
        pick = [self.views[i][int(self.rng.integers(len(self.views[i])))] for i in idx]
        return pack_side(pick, model_conf, max_locals, device)


class ImageSource(nn.Module):
    """Fine-tuned backbone: sides computed from images by a ``CNNLocalNet`` (gradients flow into it).

    ``augment``: a ``TrainTransform`` (e.g. ``TrainTransform.official_sop(image_size)``) applied to every
    image with a generator seeded from ``seed``; None resizes the whole image to ``image_size``. Either
    way the side carries ``pixel_map`` (B, 3, 3), original -> network pixels, and the grid keypoints and
    ``image_size`` of the network frame.
    """

    def __init__(
        self,
        net: nn.Module,
        images: Sequence[Callable[[], np.ndarray]],
        image_size: int = 224,
        augment=None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.net, self.images, self.image_size = net, list(images), image_size
        self.augment = augment
        self.rng = np.random.default_rng(seed)

    def sides(self, idx: np.ndarray, model_conf: dict, max_locals, device) -> dict:

        S = self.image_size
        ims, maps = [], []
        for i in idx:
            im = self.images[i]()
            if self.augment is not None and self.training:
                im, _, A = self.augment(im, None, self.rng)
            else:
                A = eval_transform_map(im.shape[:2], None, S)
            ims.append(im)
            maps.append(A)
        out = self.net(torch.stack([to_tensor(im, S) for im in ims]).to(device))
        h, w = out["grid"]
        B, n = len(idx), h * w
        kps = torch.from_numpy(grid_keypoints(h, w, S, S)).to(device).expand(B, n, 2)
        sizes = torch.tensor([[S, S]] * B, dtype=torch.long, device=device)

        pos = grid_positions(h, w).to(device).expand(B, n, 2)  # official SOP grid positions, as pack_side
        return {
            "local": out["local"],
            "pos": pos,
            "keypoints": kps,
            "mask": torch.zeros(B, n, dtype=torch.bool, device=device),
            "image_size": sizes,
            "scale_idx": torch.full((B, n), 2, dtype=torch.long, device=device),
            "global": out["global"] if model_conf["d_global"] else None,
            "pixel_map": torch.from_numpy(np.stack(maps)).to(torch.float64),
        }


class _Joint(nn.Module):
    """RRT + (optional) trainable backbone in one module, so DDP sees every parameter."""

    def __init__(self, rrt: RRT, source) -> None:
        super().__init__()
        self.rrt = rrt
        self.source = source if isinstance(source, nn.Module) else None
        self._store_source = None if self.source is not None else source

    def forward(self, anchors, cands, max_locals, need_internals: bool, input_pe=None):
        """``input_pe``: None or ``fn(q, c) -> (B, n1+n2, C) | None`` called with the packed sides (so
        an encoding can use the per-image pixel maps of augmentation)."""
        src = self.source if self.source is not None else self._store_source
        # one draw of augmentation per distinct image and step: an anchor is the same view in both its pairs
        uniq, inv = np.unique(np.concatenate([anchors, cands]), return_inverse=True)
        dev = next(self.rrt.parameters()).device
        side = src.sides(uniq, self.rrt.conf, max_locals, dev)
        inv = torch.from_numpy(inv).to(dev)
        q, c = index_side(side, inv[: len(anchors)]), index_side(side, inv[len(anchors) :])
        pe = input_pe(q, c) if input_pe is not None else None
        out = self.rrt(
            **model_kwargs(q, c),
            input_pe=None if pe is None else pe.to(dev),
            return_last_input=need_internals,
            return_raw_cross=need_internals,
        )
        return out, q, c


def teacher_stats(source, data: PairData, model_conf: dict, conf: dict, device, max_anchors: int = 64):
    """(mean, std) of the teacher (Eq. T2) over the top-K pairs of up to ``max_anchors`` seeded anchors
    (original views), the standardisation of the distillation target."""
    rng = np.random.default_rng([conf["seed"], 7])
    anchors = rng.permutation(len(data.ids))[:max_anchors]
    vals = []
    with torch.no_grad():
        for a in anchors:
            nn_ = data.neighbours[a][data.neighbours[a] >= 0]
            if len(nn_) == 0:
                continue
            qs = StoreSource.sides(source, np.array([a]), model_conf, conf["max_locals"], device)
            cs = StoreSource.sides(source, nn_, model_conf, conf["max_locals"], device)
            qs = index_side(qs, torch.zeros(len(nn_), dtype=torch.long, device=device))
            vals.append(teacher_of_sides(qs, cs, conf["distill_weight"]).cpu().numpy())
    v = np.concatenate(vals) if vals else np.zeros(1)
    if conf.get("distill_within"):  # the mean within-anchor std: the spread of the part Eq. W1 keeps
        sd_w = float(np.mean([x.std() for x in vals if len(x) > 1])) if any(len(x) > 1 for x in vals) else 0.0
        return float(v.mean()), float(max(sd_w, 1e-6))
    return float(v.mean()), float(max(v.std(), 1e-6))


def _dist() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (torch.distributed.get_rank(), world) if world > 1 else (0, 1)


def _write_log(path: Path, history: list[dict]) -> None:
    """``log.jsonl``: one line per finished epoch, rewritten whole (atomically) from the checkpoint's
    history, so a run killed between the checkpoint and the log, then resumed, logs every epoch once."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json_text(rec) + "\n" for rec in history))


def train_rrt(
    model: RRT,
    data: PairData,
    source,
    out_dir: str | Path,
    conf: dict | None = None,
    extra_loss: Callable[[dict, RRTOutput], torch.Tensor] | None = None,
    pair_info: Callable[[str, str], Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    input_pe: Callable[[dict], torch.Tensor | None] | None = None,
    guidance: dict | None = None,
) -> Path:
    """Train ``model`` on ``data``; writes ``out_dir/checkpoint.pt`` every epoch and returns its path.

    ``source``: ``StoreSource`` (frozen backbone) or ``ImageSource`` (fine-tuning). With ``resume`` the
    model, backbone, optimizer, scheduler and epoch counter are restored from ``out_dir/checkpoint.pt``.
    """
    c = merge_conf(DEFAULT_CONF, conf or {}, "train rrt")
    if c["finetune"] != isinstance(source, ImageSource):
        raise ConfigError("train rrt: finetune=True needs an ImageSource, finetune=False a StoreSource")
    if len(data.ids) != len(data.labels) or len(data.ids) != len(data.neighbours):
        raise DataError(
            f"train rrt: {len(data.ids)} ids, {len(data.labels)} labels, {len(data.neighbours)} "
            "neighbour rows: they must match"
        )
    guidance = dict(guidance or {"guidance": "none"})
    if (guidance["guidance"] == "epe") != (input_pe is not None):
        raise ConfigError(
            f"train rrt: guidance {guidance['guidance']!r} with{'out' if input_pe is None else ''} an "
            "input_pe hook (EPE models are trained, and recorded, with their encoding)"
        )
    rank, world = _dist()
    device = torch.device(
        f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if world > 1 and torch.cuda.is_available() else c["device"]
    )
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoint.pt"
    if c["loss"] not in LOSSES:
        raise ConfigError(f"train rrt: loss must be one of {list(LOSSES)}, got {c['loss']!r}")
    if c["loss"] == "distill" and (c["finetune"] or not model.conf["d_global"]):
        raise ConfigError("train rrt: loss=distill needs a frozen backbone and a model with a global token (d_global)")
    if c["init_checkpoint"] and not (resume and ckpt_path.exists()):
        ini = str(c["init_checkpoint"])  # a training checkpoint (.pt) or a shipped export (.safetensors)
        warm = read_safetensors(ini) if ini.endswith(".safetensors") else read_checkpoint(ini)

        load_state_into(model, warm.get("state_dict"), c["init_checkpoint"], "RRT warm start")
    joint = _Joint(model, source).to(device)
    params = [p for p in joint.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=c["lr"], weight_decay=c["weight_decay"])
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(c["milestones"]), gamma=c["gamma"])
    start = 0
    if resume and ckpt_path.exists():
        ck = read_checkpoint(ckpt_path)

        was = guidance_of(ck, ckpt_path)["guidance"]
        if "guidance_json" in ck and was != guidance["guidance"]:  # older checkpoints did not record it
            raise ConfigError(
                f"{ckpt_path}: trained with guidance {was!r}, resumed with {guidance['guidance']!r}; "
                "resume with the same guidance.kind or use another out folder"
            )
        model.load_state_dict(ck["state_dict"])
        if joint.source is not None and "backbone_state" in ck:
            joint.source.net.load_state_dict(ck["backbone_state"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        start = int(ck["epoch"])
        if isinstance(ck.get("torch_rng"), torch.Tensor):  # dropout draws continue as if never stopped
            torch.set_rng_state(ck["torch_rng"])
        history = list(ck.get("log", []))
    else:
        history = []
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(out_dir / "train_conf.json") as tmp:
            tmp.write_text(json.dumps({"train": c, "model": model.conf}, indent=2, default=str))
        _write_log(out_dir / "log.jsonl", history)  # the epochs the checkpoint holds, no more, no less
    net: nn.Module = joint
    if world > 1:
        net = nn.parallel.DistributedDataParallel(joint, device_ids=[device.index] if device.type == "cuda" else None)
    need = extra_loss is not None
    distill = c["loss"] == "distill"
    if distill:
        mu, sd = teacher_stats(source, data, model.conf, c, device) if c["distill_standardize"] else (0.0, 1.0)
    for epoch in range(start, c["epochs"]):
        rng = np.random.default_rng([c["seed"], epoch])
        if distill:
            items = sample_distill_pairs(data, c["distill_pairs"], rng, grouped=c["distill_within"])
            bs = int(c["pairs_per_batch"])
            if c["distill_within"]:  # batches of whole anchor groups, so Eq. W1 centres over whole shortlists
                items, spans = within_batches(items, bs, rank, world)
            else:
                items = items[rank::world]
        else:
            items = sample_triplets(data, c["min_positives"], rng, c["positives"])[rank::world]
            bs = int(c["triplets_per_batch"])
        if len(items) == 0:
            raise DataError(
                f"train rrt: no anchor has >= {c['min_positives']} positive(s) and a negative in its "
                f"top-{data.neighbours.shape[1]}; lower min_positives or add data"
                if not distill
                else "train rrt: no anchor has a neighbour to distil on"
            )
        if hasattr(source, "set_epoch"):  # ViewSource: the epoch's view draws
            source.set_epoch(epoch)
        joint.train()
        if not (distill and c["distill_within"]):
            spans = [(i, min(i + bs, len(items))) for i in range(0, len(items), bs)]
        bar = tqdm(spans, desc=f"train rrt [{epoch + 1}/{c['epochs']}]", disable=not progress or rank != 0)
        main_name = "mse" if distill else "bce"
        tot = {"loss": 0.0, main_name: 0.0, "acc": 0.0, "n": 0}
        lr_used = opt.param_groups[0]["lr"]
        for s, e in bar:
            t = items[s:e]
            if distill:
                anchors, cands = t[:, 0], t[:, 1]
                y = (data.labels[anchors] == data.labels[cands]).astype(np.float32)
            else:
                anchors, cands, y = triplet_pairs(t)
            labels = torch.from_numpy(y).to(device)
            pe_fn = None
            if input_pe is not None:  # e.g. Epipolar Positional Encoding, after the sides (pixel maps) exist
                pe_fn = lambda q_, c_, a=anchors, b=cands, y=labels: input_pe(  # noqa: E731
                    {
                        "query_ids": [data.ids[i] for i in a],
                        "candidate_ids": [data.ids[i] for i in b],
                        "labels": y,
                        "query": q_,
                        "candidate": c_,
                    }
                )
            out, q, cside = net(anchors, cands, c["max_locals"], need, pe_fn)
            if distill:
                with torch.no_grad():
                    target = (teacher_of_sides(q, cside, c["distill_weight"]) - mu) / sd
                if c["distill_within"]:
                    main = within_anchor_mse(out.logits.float(), target, torch.from_numpy(anchors).to(device))
                else:
                    main = F.mse_loss(out.logits.float(), target)
            else:
                main = F.binary_cross_entropy_with_logits(out.logits.float(), labels)
            loss = main
            if extra_loss is not None:
                batch = {
                    "query": q,
                    "candidate": cside,
                    "labels": labels,
                    "info": data.info,
                    "model": model,
                    "query_ids": [data.ids[i] for i in anchors],
                    "candidate_ids": [data.ids[i] for i in cands],
                    "pair_info": [pair_info(data.ids[a], data.ids[b]) for a, b in zip(anchors, cands)]
                    if pair_info
                    else None,
                }
                loss = loss + extra_loss(batch, out)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if c["max_norm"] > 0:
                torch.nn.utils.clip_grad_norm_(params, c["max_norm"])
            opt.step()
            acc = ((out.logits.detach() > 0).float() == labels).float().mean().item()
            tot["loss"] += loss.item() * len(t)
            tot[main_name] += main.item() * len(t)
            tot["acc"] += acc * len(t)
            tot["n"] += len(t)
            bar.set_postfix(loss=f"{tot['loss'] / tot['n']:.4f}", acc=f"{tot['acc'] / tot['n']:.3f}")
        sched.step()
        if rank == 0:
            extra = {"backbone_state": joint.source.net.state_dict()} if joint.source is not None else {}
            rec = {"epoch": epoch + 1, "lr": lr_used, **{k: v / max(tot["n"], 1) for k, v in tot.items() if k != "n"}}
            if distill:
                rec.update(teacher_mean=mu, teacher_std=sd)
            history.append(rec)
            save_rrt(
                ckpt_path,
                model,
                optimizer=opt.state_dict(),
                scheduler=sched.state_dict(),
                epoch=epoch + 1,
                train_conf_json=json.dumps(c, sort_keys=True, default=str),
                log=history,
                torch_rng=torch.get_rng_state(),
                guidance_json=json.dumps(guidance, sort_keys=True),
                **extra,
            )
            _write_log(out_dir / "log.jsonl", history)
    if world > 1:
        torch.distributed.barrier()
    return ckpt_path
