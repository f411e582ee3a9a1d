"""ImageNet top-k accuracy of a classifier on a folder of class-named photos: a check that weights loaded right.

A photo's file name starts with its WordNet id (``n01440764_tench.jpg``); the class index is that id's
position in the sorted list of the 1000 ImageNet-1k synsets (the order every ImageNet classifier's logits
use), read from timm's bundled ImageNet metadata, independent of any model code here. A wrong key map or
normalisation shows at once: accuracy falls from ~80-90 % to near chance (0.1 %).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from timm.data import ImageNetInfo

from relook.errors import DataError
from relook.images import load_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPEG")


def imagenet_wnids() -> list[str]:
    """The 1000 ImageNet-1k WordNet ids in class-index order."""

    return list(ImageNetInfo().label_names())


def imagenet_folder(folder: str | Path) -> tuple[list[Path], np.ndarray]:
    """(image paths sorted by name, class indices (N,)) of the class-named photos in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder of ImageNet photos")
    index = {w: i for i, w in enumerate(imagenet_wnids())}
    paths, labels = [], []
    for p in sorted(folder.iterdir()):
        if p.suffix in IMAGE_SUFFIXES:
            wnid = p.name.split("_", 1)[0]
            if wnid not in index:
                raise DataError(f"{p}: file name does not start with an ImageNet-1k WordNet id")
            paths.append(p)
            labels.append(index[wnid])
    if not paths:
        raise DataError(f"{folder}: no images")
    return paths, np.asarray(labels, np.int64)


def topk_accuracy(logits: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Share of rows of ``logits`` (N, C) whose true class (N,) is among the k highest, for each k."""
    logits = np.asarray(logits)
    top = np.argsort(-logits, axis=1, kind="stable")[:, : max(ks)]
    hit = top == np.asarray(labels)[:, None]
    return {k: float(hit[:, :k].any(1).mean()) for k in ks}


@torch.inference_mode()
def classify(
    model: torch.nn.Module, paths: Sequence[Path], transform: Callable[[np.ndarray], torch.Tensor], batch_size: int = 32
) -> np.ndarray:
    """Logits (N, C) of ``model`` on the images at ``paths`` (RGB, through ``transform``)."""
    out = []
    for s in range(0, len(paths), batch_size):
        x = torch.stack([transform(load_image(p)) for p in paths[s : s + batch_size]])
        out.append(model(x).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 1000), np.float32)
