"""Throughput of DToP 3-scale extraction at 512 px (default R50+ViT-B hybrid, RANDOM INIT: speed only).

Prints images/s for: the timm backbone's own single-scale forward (reference, same run), DToP at one
scale, and DToP at 3 scales (1, 1/sqrt 2, 1/2), with ratios to the reference. Images are random
512x384 arrays (synthetic data); descriptors are not meaningful with random weights.

    PYTHONPATH=src python benchmarks/dtop.py [--device cuda] [--images 4] [--backbone r50_vit_b]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from relook.models.dtop import DToP
from relook.models.dtop.multiscale import DEFAULT_SCALES, image_tensor, multiscale_descriptor


def _rate(fn, images, device) -> float:
    fn(images[0])  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for im in images:
        fn(im)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--size", type=int, default=512, help="longer side")
    ap.add_argument("--backbone", default="r50_vit_b")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = DToP(backbone=args.backbone, pretrained=False).to(device).eval()
    rng = np.random.default_rng(0)
    images = [
        image_tensor(rng.integers(0, 255, (384, 512, 3), dtype=np.uint8), args.size).to(device)
        for _ in range(args.images)
    ]

    @torch.no_grad()
    def reference(x):
        return model.backbone.vit.forward_features(model.normalize(x))

    rows = [
        ("timm backbone forward, 1 scale (reference)", _rate(reference, images, device)),
        ("DToP descriptor, 1 scale", _rate(lambda x: multiscale_descriptor(model, x, (1.0,)), images, device)),
        (
            "DToP descriptor, 3 scales (averaged)",
            _rate(lambda x: multiscale_descriptor(model, x, DEFAULT_SCALES), images, device),
        ),
    ]
    threads = torch.get_num_threads() if device.type == "cpu" else "-"
    print(
        f"DToP extraction speed: backbone {args.backbone} (random init), synthetic {args.size}x"
        f"{round(args.size * 0.75)} images, device {device} ({threads} threads), {args.images} images, batch 1"
    )
    print(f"{'what':<44} {'images/s':>9} {'vs reference':>13}")
    for name, r in rows:
        print(f"{name:<44} {r:9.2f} {r / rows[0][1]:12.2f}x")


if __name__ == "__main__":
    main()
