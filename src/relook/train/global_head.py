"""Training the learned global head (``relook train global``) on a frozen CNN backbone.

The epipolar paper's "R50 (trained)" baseline (seed 002, Sec. 5) is a global descriptor trained with a
batch-wise contrastive loss; the OT paper (seed 003) fine-tunes its base model with a margin loss to a 128-d
embedding. relook trains the 128-d head of ``relook.models.global_head`` (Eq. H1 locals, Eq. H2 global) on
a labelled split with the backbone frozen:

1. every training image goes once through ``cnn_local`` (the same preprocessing as extraction, batched,
   with a progress bar) and its map's ``GeM_p`` vector (C floats) is kept in memory: with GeM before the
   projection (see ``relook.models.global_head``) that is all the head sees;
2. each epoch draws class-balanced batches from ``np.random.default_rng([seed, epoch])``: a permutation of
   the labels having >= 2 images, ``labels_per_batch`` labels per batch, ``per_label`` images of each
   (all of a label's images when it has fewer). Labels with one image give no positive pair and are left
   out (``n_labels_used`` in the record);
3. the loss (``contrastive``, Eq. C1, the default as in seed 002; ``multi_similarity``, Eq. MS1; or ``softmax``,
   Eq. SM1, the official RRT SOP global's temperature-0.05 softmax; all in
   ``relook.losses.contrastive``) on all in-batch pairs of the normalised 128-d globals; AdamW;
4. ``OUT/checkpoint.pt`` (head, optimiser, epoch, history; relook's weights-only format) and
   ``OUT/log.jsonl`` after every epoch, so ``resume`` continues an interrupted run where it stopped (with
   other settings or data it refuses in one line); at the end ``OUT/head.pt`` + ``OUT/head.json``.

The head starts from ``cnn_local``'s seeded projection (``projection_seed`` = ``seed``): epoch 0 is the
untrained baseline, so "learned vs seeded" compares the same W before and after training.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from relook.checkpoints import describe, load_checkpoint, load_state_into
from relook.config import merge_conf
from relook.errors import ConfigError, DataError
from relook.features.base import create_extractor
from relook.images import load_image
from relook.io import atomic_path, json_text
from relook.losses.contrastive import PAIR_LOSSES
from relook.models.backbone import timm_arch
from relook.models.global_head import GlobalHead, gem, save_global_head

CHECKPOINT_FORMAT = "relook-global-head-train"

DEFAULT_CONF: dict[str, Any] = {
    "dim": 128,  # head output: local and global dims (RRT, OT: 128)
    "gem_p": 3.0,  # GeM exponent of the global descriptor (Eq. H2)
    "loss": "contrastive",  # contrastive (Eq. C1, seed 002's R50 (trained)) | multi_similarity (Eq. MS1) | softmax (Eq. SM1, tau 0.05)
    "loss_params": {},  # override the loss's defaults, e.g. {neg_margin: 0.8} or {alpha: 2, beta: 50}
    "epochs": 10,  # passes over the labels
    "lr": 1e-3,  # AdamW learning rate
    "weight_decay": 1e-4,  # AdamW weight decay
    "labels_per_batch": 32,  # labels in one class-balanced batch
    "per_label": 4,  # images per label in a batch (m); all of them when a label has fewer
    "seed": 0,  # seeds the head's initial (seeded) projection and the batches
    "device": "cpu",  # torch device
}

#: cnn_local options the head fixes itself (the grid it reads is the unprojected, GeM-pooled map)
_FIXED = ("projection", "local_dim", "global_pool", "gem_p", "write_patch_tokens", "weights")


def resolve_conf(conf: dict[str, Any] | None) -> dict[str, Any]:
    """DEFAULT_CONF updated with ``conf`` (None values ignored), checked."""
    c = merge_conf(DEFAULT_CONF, {k: v for k, v in (conf or {}).items() if v is not None}, "train global")
    if c["loss"] not in PAIR_LOSSES:
        raise ConfigError(f"train global: unknown loss {c['loss']!r}; known: {sorted(PAIR_LOSSES)}")
    unknown = sorted(set(c["loss_params"]) - set(PAIR_LOSSES[c["loss"]][1]))
    if unknown:
        raise ConfigError(
            f"train global: loss {c['loss']} has no parameter(s) {unknown}; it takes "
            f"{sorted(PAIR_LOSSES[c['loss']][1])}"
        )
    for key, low in (("dim", 1), ("epochs", 1), ("labels_per_batch", 2), ("per_label", 2)):
        if int(c[key]) < low:
            raise ConfigError(f"train global: {key} must be >= {low}, got {c[key]}")
    return c


def balanced_batches(
    labels: np.ndarray, labels_per_batch: int, per_label: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Class-balanced batches of indices into ``labels`` (N,): labels with >= 2 images in a random order,
    ``labels_per_batch`` of them per batch, ``per_label`` random images of each (all when fewer)."""
    labels = np.asarray(labels)
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(classes))]
    usable = rng.permutation(np.flatnonzero(counts >= 2))
    out = []
    for s in range(0, len(usable), labels_per_batch):
        chosen = [
            rng.choice(members[k], size=min(per_label, len(members[k])), replace=False)
            for k in usable[s : s + labels_per_batch]
        ]
        out.append(np.concatenate(chosen))
    return out


def backbone_extractor(backbone_conf: dict[str, Any] | None, gem_p: float):
    """The ``cnn_local`` extractor whose unprojected grid the head reads (``backbone_conf``: its options)."""

    given = dict(backbone_conf or {})
    fixed = sorted(k for k in _FIXED if k in given)
    if fixed:
        raise ConfigError(
            f"train global: backbone option(s) {fixed} are set by the head itself; give the "
            "backbone's own (arch, pretrained, seed, image_size, eval_resize, batch_size, device)"
        )
    return create_extractor(
        "cnn_local", **given, projection="none", write_patch_tokens=False, global_pool="gem", gem_p=float(gem_p)
    )


def pooled_features(
    extractor, items: Sequence[tuple], exif_orientation: bool = False, progress: bool = True
) -> torch.Tensor:
    """(N, C) ``GeM_p`` of each image's backbone map: one batched pass, kept in memory."""
    p = float(extractor.conf["gem_p"])
    loaded = ((i, load_image(path, bbox, exif_orientation)) for i, path, bbox in items)
    rows = []
    for f in tqdm(
        extractor.extract(loaded), total=len(items), desc="train global: backbone features", disable=not progress
    ):
        grid = torch.from_numpy(f.local_desc).T[None, :, :, None]  # (1, C, h*w, 1): GeM over the cells
        rows.append(gem(grid, p)[0])
    if not rows:
        raise DataError("train global: no training images")
    return torch.stack(rows)


def data_digest(ids: Sequence[str], labels: Sequence) -> str:
    """sha256 (16 hex) of the (image id, label) list: what ``resume`` checks the data against."""
    return hashlib.sha256(json.dumps([[str(i), str(y)] for i, y in zip(ids, labels)]).encode()).hexdigest()[:16]


def _first_difference(old: dict, new: dict) -> str:
    """The first key (``train.lr``, ``data_digest``, ...) on which two run records differ, with both values."""
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                sub = next(j for j in sorted(set(a) | set(b)) if a.get(j) != b.get(j))
                return f"{k}.{sub} ({a.get(sub)!r}, now {b.get(sub)!r})"
            return f"{k} ({a!r}, now {b!r})"
    return "run"


def _write_log(path: Path, history: list[dict]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json_text(rec) + "\n" for rec in history))


def train_global_head(
    dataset,
    out_dir: str | Path,
    conf: dict[str, Any] | None = None,
    backbone_conf: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = True,
    data_record: dict[str, Any] | None = None,
) -> Path:
    """Train the head on ``dataset``'s gallery images and labels; returns ``out_dir/head.pt``.

    ``backbone_conf``: ``cnn_local`` options of the frozen backbone (arch, pretrained, image_size, ...);
    ``data_record``: what to write about the data in the head's training record (e.g. the dataset options).
    """
    c = resolve_conf(conf)
    if dataset.gallery_labels is None:
        raise DataError(
            f"dataset {dataset.name} at {dataset.root} has no image labels (protocol "
            f"{dataset.protocol}); the global head trains on a labelled split"
        )
    ids, labels = dataset.gallery_ids, np.asarray(dataset.gallery_labels)
    n_used = int((np.unique(labels, return_counts=True)[1] >= 2).sum())
    if n_used < 2:
        raise DataError(
            f"dataset {dataset.name} at {dataset.root}: {n_used} label(s) with two or more images; "
            "the loss needs positive pairs of at least two labels"
        )
    ex = backbone_extractor(backbone_conf, c["gem_p"])
    record = ex.net.weights_record
    out_dir = Path(out_dir)
    ckpt_path, head_path = out_dir / "checkpoint.pt", out_dir / "head.pt"
    run = json.loads(
        json.dumps(
            {  # what a resumed run must share with the checkpoint (JSON-normalised)
                "train": {k: v for k, v in c.items() if k not in ("epochs", "device")},  # more epochs: go on training
                "backbone": {k: v for k, v in ex.conf.items() if k not in ex.runtime_keys},
                "weights_sha256": record.sha256 or record.describe(),
                "data_digest": data_digest(ids, labels),
            },
            sort_keys=True,
            default=str,
        )
    )
    device = torch.device(c["device"])
    head = GlobalHead(int(ex.net.backbone.num_features), int(c["dim"]), float(c["gem_p"]), seed=int(c["seed"]))
    head.to(device)
    opt = torch.optim.AdamW(head.parameters(), lr=float(c["lr"]), weight_decay=float(c["weight_decay"]))
    start, history = 0, []
    if resume and ckpt_path.exists():
        ck = _read_checkpoint(ckpt_path)
        old = json.loads(ck.get("run_json") or "{}")
        if old != run:
            raise DataError(
                f"{ckpt_path}: was trained with another {_first_difference(old, run)} than asked now; "
                "drop --resume to start again, or write to another --out folder"
            )

        load_state_into(head, ck.get("head"), ckpt_path, "the global head being resumed")
        opt.load_state_dict(ck["optimizer"])
        start, history = int(ck["epoch"]), list(ck.get("log", []))
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "train_conf.json") as tmp:
        tmp.write_text(json.dumps(run, indent=2, default=str))
    _write_log(out_dir / "log.jsonl", history)
    if start < c["epochs"] or not head_path.exists():
        x = (
            pooled_features(ex, dataset.gallery, dataset.exif_orientation, progress).to(device)
            if start < c["epochs"]
            else None
        )
        y = torch.as_tensor(np.unique(labels, return_inverse=True)[1], device=device)
        fn, defaults = PAIR_LOSSES[c["loss"]]
        params = {**defaults, **c["loss_params"]}
        for epoch in range(start, int(c["epochs"])):
            batches = balanced_batches(
                labels, int(c["labels_per_batch"]), int(c["per_label"]), np.random.default_rng([int(c["seed"]), epoch])
            )
            head.train()
            total, n = 0.0, 0
            bar = tqdm(batches, desc=f"train global [{epoch + 1}/{c['epochs']}]", disable=not progress)
            for idx in bar:
                idx_t = torch.as_tensor(idx, device=device)
                loss = fn(head.global_from_pooled(x[idx_t]), y[idx_t], **params)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total, n = total + float(loss.detach()) * len(idx), n + len(idx)
                bar.set_postfix(loss=f"{total / max(n, 1):.4f}")
            history.append(
                {"epoch": epoch + 1, "loss": total / max(n, 1), "batches": len(batches), "lr": float(c["lr"])}
            )
            _save_checkpoint(ckpt_path, head, opt, epoch + 1, history, run)
            _write_log(out_dir / "log.jsonl", history)
        train = {
            **c,
            "loss_params": params,
            "data": {
                "dataset": dataset.name,
                "root": str(dataset.root),
                **(data_record or {}),
                "n_images": len(ids),
                "n_labels": int(len(np.unique(labels))),
                "n_labels_used": n_used,
                "digest": run["data_digest"],
            },
            "final_loss": history[-1]["loss"] if history else None,
        }
        save_global_head(
            head_path,
            head.cpu(),
            {
                "arch": timm_arch(ex.conf["arch"]),
                "backbone": run["backbone"],
                "weights": record.describe(),
                "weights_sha256": record.sha256,
                "weights_record": record.as_meta("weights"),
                "train": train,
            },
        )
    return head_path


def _save_checkpoint(path: Path, head: GlobalHead, opt, epoch: int, history: list, run: dict) -> None:
    state = {k: v.detach().cpu().clone() for k, v in head.state_dict().items()}
    with atomic_path(path) as tmp:
        torch.save(
            {
                "format": CHECKPOINT_FORMAT,
                "version": 1,
                "head": state,
                "optimizer": opt.state_dict(),
                "epoch": epoch,
                "log": history,
                "run_json": json.dumps(run, sort_keys=True, default=str),
            },
            tmp,
        )


def _read_checkpoint(path: Path) -> dict:
    ck = load_checkpoint(path, "global head training checkpoint")
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path}: expected a `relook train global` checkpoint, found {describe(ck)}")
    return ck
