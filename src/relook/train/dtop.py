"""Training loop of DToP (supplementary A.1): ArcFace (margin 0.15), SGD (momentum 0.9, lr 1e-3),
cosine decay to lr x 1e-4, warm-up per training set, batch 64, random crop / illumination / scale
augmentation, group-size sampling (``group_size.py``) or fixed 384x384.

``train_dtop`` is a resumable stage: it writes ``config.yaml``, ``checkpoint.pt`` (model, ArcFace
centres, optimiser, epoch, per-epoch losses) after every epoch and continues from it when rerun. Under
``torchrun`` (WORLD_SIZE > 1) it runs DDP (nccl on GPU, gloo on CPU); rank 0 writes the files.
``batch_size`` is the global batch: each of the W ranks takes batch_size / W images of every global batch
(``GroupSizeBatchSampler``), so an optimiser step averages gradients over exactly ``batch_size`` images
and the paper's learning rate applies unchanged on any number of GPUs; ``config.yaml`` records the
global and per-rank batch and the number of ranks.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torchvision.transforms import v2
from tqdm.auto import tqdm

from relook.checkpoints import load_state_into, to_json
from relook.config import merge_conf
from relook.errors import ConfigError, DataError
from relook.images import load_image, open_image
from relook.losses.arcface import ArcFace
from relook.models.dtop import DToP
from relook.models.dtop.checkpoint import read_dtop_checkpoint
from relook.train.group_size import GroupSizeBatchSampler

#: warm-up epochs per training set (supplementary A.1)
WARMUP_EPOCHS = {"nc_clean": 0, "sfm120k": 3, "gldv1_noisy": 5, "gldv2_clean": 5}

DEFAULT_CONF: dict[str, Any] = {
    "model": {},  # DToP options (models/dtop/model.py default_conf)
    "epochs": 10,  # number of epochs (not stated in the paper)
    "batch_size": 64,  # GLOBAL mini-batch size, split over the DDP ranks (paper: 64 on 8 GPUs)
    "lr": 1e-3,  # initial learning rate (paper: 1e-3)
    "momentum": 0.9,  # SGD momentum (paper: 0.9)
    "weight_decay": 0.0,  # not stated in the paper
    "lr_final_factor": 1e-4,  # cosine decay ends at lr x this (paper: decay factor 1e-4)
    "training_set": "sfm120k",  # picks the warm-up: nc_clean 0, sfm120k 3, gldv1_noisy 5, gldv2_clean 5
    "warmup_epochs": None,  # override the per-training-set warm-up
    "sampling": "group",  # group (group-size sampling) | fixed (max_size x max_size), Table A12
    "max_size": 384,  # longer side of training batches (fixed baseline: 384x384)
    "num_groups": 5,  # aspect-ratio groups of the group-size sampler
    "crop_scale": [0.5, 1.0],  # random crop area range (crop + scale augmentation)
    "illumination": 0.3,  # brightness / contrast / saturation jitter strength
    "margin": 0.15,  # ArcFace margin in radians (paper: 0.15)
    "scale": 30.0,  # ArcFace scale (not stated; DOLG's 30)
    "workers": 0,  # DataLoader workers
    "seed": 0,  # seeds sampling, augmentation and initialisation
    "device": "auto",  # auto | cpu | cuda
}


class TrainImages(torch.utils.data.Dataset):
    """Training images read at the (h, w) the batch sampler asks for, with augmentation.

    items: (path, crop box or None); __getitem__((index, h, w)) -> (image (3, h, w) in [0, 1], label).
    """

    def __init__(
        self,
        items: Sequence[tuple[Any, Any]],
        labels: Sequence[int],
        crop_scale=(0.5, 1.0),
        illumination: float = 0.3,
        augment: bool = True,
    ) -> None:

        self.items, self.labels, self.augment = list(items), np.asarray(labels, dtype=np.int64), augment
        self.crop_scale = tuple(crop_scale)
        self.jitter = v2.ColorJitter(illumination, illumination, illumination) if illumination > 0 else None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, int]:

        index, h, w = key
        path, bbox = self.items[index]
        x = torch.from_numpy(np.array(load_image(path, bbox))).permute(2, 0, 1).float() / 255.0
        if self.augment:
            aspect = w / h
            x = v2.RandomResizedCrop(
                (h, w), scale=self.crop_scale, ratio=(aspect * 0.75, aspect / 0.75), antialias=True
            )(x)
            if self.jitter is not None:
                x = self.jitter(x)
        else:
            x = v2.Resize((h, w), antialias=True)(x)
        return x.clamp(0, 1), int(self.labels[index])


def image_sizes(items: Sequence[tuple[Any, Any]]) -> np.ndarray:
    """(N, 2) (height, width) of each item, from the file header or the crop box."""

    out = np.zeros((len(items), 2), dtype=np.int64)
    for i, (path, bbox) in enumerate(items):
        if bbox is not None:
            out[i] = (bbox[3] - bbox[1], bbox[2] - bbox[0])
            continue
        try:
            with open_image(Path(path)) as im:
                out[i] = (im.height, im.width)
        except OSError as e:
            raise DataError(f"cannot read image size of {path}: {e}") from e
    return out


def lr_at(step: int, total: int, warmup: int, lr: float, final_factor: float) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay from lr to lr * final_factor at ``total``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return lr * (final_factor + (1 - final_factor) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


class _Trainee(torch.nn.Module):
    """Model + ArcFace centres as one module so DDP synchronises both."""

    def __init__(self, model: DToP, head: ArcFace) -> None:
        super().__init__()
        self.model, self.head = model, head

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.head(self.model(self.model.normalize(images)), labels)


def _dist() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    return (torch.distributed.get_rank() if world > 1 else 0), world, int(os.environ.get("LOCAL_RANK", "0"))


def train_dtop(
    conf: dict[str, Any],
    items: Sequence[tuple[Any, Any]],
    labels: Sequence[int],
    out_dir: str | Path,
    resume: bool = True,
    progress: bool = True,
) -> Path:
    """Train DToP on (path, box) ``items`` with class ``labels``; returns the checkpoint path."""
    conf = merge_conf(DEFAULT_CONF, conf, "train dtop")
    if conf["sampling"] not in ("group", "fixed"):
        raise ConfigError(f"train dtop: sampling must be group or fixed, got {conf['sampling']!r}")
    warmup = conf["warmup_epochs"]
    if warmup is None:
        if conf["training_set"] not in WARMUP_EPOCHS:
            raise ConfigError(
                f"train dtop: training_set {conf['training_set']!r} unknown ({sorted(WARMUP_EPOCHS)});"
                " set warmup_epochs"
            )
        warmup = WARMUP_EPOCHS[conf["training_set"]]
    labels = np.asarray(labels)
    if len(items) == 0 or len(items) != len(labels):
        raise DataError(f"train dtop: need as many labels as images (got {len(items)} images, {len(labels)} labels)")
    classes, labels = np.unique(labels, return_inverse=True)
    rank, world, local_rank = _dist()
    dev = conf["device"]
    device = torch.device(
        f"cuda:{local_rank}" if (dev == "auto" and torch.cuda.is_available()) or dev == "cuda" else "cpu"
    )
    out_dir = Path(out_dir)
    ckpt_path = out_dir / "checkpoint.pt"
    torch.manual_seed(conf["seed"])
    model = DToP(**{"seed": conf["seed"], **conf["model"]})  # init from the training seed unless model.seed
    trainee = _Trainee(model, ArcFace(model.out_dim, len(classes), conf["margin"], conf["scale"])).to(device)
    opt = torch.optim.SGD(
        trainee.parameters(), lr=conf["lr"], momentum=conf["momentum"], weight_decay=conf["weight_decay"]
    )
    start, history = 0, []
    if resume and ckpt_path.exists():
        state = read_dtop_checkpoint(ckpt_path, device)
        load_state_into(trainee, state.get("trainee"), ckpt_path, "the DToP model + ArcFace centres being resumed")
        opt.load_state_dict(state["optimizer"])
        start, history = state["epoch"], state["history"]
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.yaml").write_text(
            yaml.safe_dump(
                {
                    **conf,
                    "num_classes": len(classes),
                    "world_size": world,
                    "global_batch_size": conf["batch_size"],
                    "per_rank_batch_size": conf["batch_size"] // world,
                },
                sort_keys=False,
            )
        )
    net = trainee
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            trainee, device_ids=[local_rank] if device.type == "cuda" else None, find_unused_parameters=True
        )
    sampler = GroupSizeBatchSampler(
        image_sizes(items),
        conf["batch_size"],
        conf["max_size"],
        conf["num_groups"],
        group_size=conf["sampling"] == "group",
        seed=conf["seed"],
        rank=rank,
        world_size=world,
    )
    data = TrainImages(items, labels, conf["crop_scale"], conf["illumination"])
    loader = torch.utils.data.DataLoader(
        data, batch_sampler=sampler, num_workers=conf["workers"], generator=torch.Generator().manual_seed(conf["seed"])
    )
    steps = len(sampler)
    for epoch in range(start, conf["epochs"]):
        sampler.set_epoch(epoch)
        torch.manual_seed(conf["seed"] * 1000 + epoch)
        net.train()
        losses = []
        bar = tqdm(loader, desc=f"dtop epoch {epoch + 1}/{conf['epochs']}", disable=not progress or rank != 0)
        for i, (images, y) in enumerate(bar):
            for g in opt.param_groups:
                g["lr"] = lr_at(
                    epoch * steps + i, conf["epochs"] * steps, warmup * steps, conf["lr"], conf["lr_final_factor"]
                )
            loss = net(images.to(device), y.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            bar.set_postfix(loss=f"{losses[-1]:.3f}", size=f"{images.shape[2]}x{images.shape[3]}")
        history.append(float(np.mean(losses)) if losses else float("nan"))
        if rank == 0:
            state = {
                "format": "relook-dtop",
                "version": 2,
                "trainee": trainee.state_dict(),
                "model": model.state_dict(),
                "config_json": to_json(model.conf),
                "optimizer": opt.state_dict(),
                "epoch": epoch + 1,
                "history": history,
                "classes": classes.tolist(),
            }
            torch.save(state, out_dir / "checkpoint.tmp")
            os.replace(out_dir / "checkpoint.tmp", ckpt_path)
            (out_dir / "history.json").write_text(json.dumps({"epoch_loss": history}))
    if world > 1:
        torch.distributed.barrier()
    return ckpt_path
