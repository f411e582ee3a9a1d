"""DToP on real features: global retrieval on the warped-photo benchmark's TEST photos.

Rows (every one on the same images, longer side ``--size`` px, the paper's 3 scales 1, 1/sqrt 2, 1/2
averaged and L2-normalised, ``models/dtop/multiscale.py``):

- ``gem``: plain GeM (p = 3) of the pretrained EfficientNet-Lite0 stem's 1280-channel map (the map the
  hybrid's patch tokens are made from), L2-normalised: the global descriptor of the same stem, no training;
- ``untrained``: DToP with the ``lite0_vit`` hybrid (``configs/train/dtop-real-warp.yaml``'s model), seed 0, not
  trained: the pretrained stem + random ViT, branches and FCs (the initial state of the trained run);
- ``trained``: the same model after ``relook train dtop`` on the TRAIN photos (``--checkpoint``).

Every test image queries the other 599 (itself ignored), full ranking, relook's ``evaluate``. Each row's
descriptors are saved as OUT/<row>.npy and reused; the table is printed for the rows present.

    python scripts/dtop_real_warp.py --warp WARP --out runs/dtop_real_warp --rows gem,untrained
    python scripts/dtop_real_warp.py --warp WARP --out runs/dtop_real_warp --rows trained \
        --checkpoint runs/dtop_real_warp/train/checkpoint.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import yaml

LABELS = {
    "gem": "plain GeM 1280-d (Lite0 stem)",
    "untrained": "DToP untrained (seed 0)",
    "trained": "DToP trained here",
}


class GeMStem(torch.nn.Module):
    """normalised (B, 3, H, W) -> (B, 1280): L2norm(GeM_p(Lite0 forward_features)); has ``normalize``."""

    def __init__(self, p: float = 3.0) -> None:
        super().__init__()
        from relook.models.backbone import create_backbone

        self.cnn, self.record, (mean, std) = create_backbone("tf_efficientnet_lite0", pretrained=True, num_classes=0)
        self.cnn.eval()
        self.p = p
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.cnn.forward_features(x)
        return torch.nn.functional.normalize(fmap.clamp_min(1e-6).pow(self.p).mean((2, 3)).pow(1 / self.p), dim=1)


def describe_all(model: torch.nn.Module, items, size: int) -> np.ndarray:
    from tqdm.auto import tqdm

    from relook.images import load_image
    from relook.models.dtop.multiscale import image_tensor, multiscale_descriptor

    model.eval()
    return np.stack(
        [
            multiscale_descriptor(model, image_tensor(load_image(p, b), size))[0].numpy()
            for _, p, b in tqdm(items, desc="describe", mininterval=30)
        ]
    )


def main() -> None:
    from relook.datasets import load_dataset
    from relook.eval.evaluate import evaluate, format_table
    from relook.models.dtop import DToP
    from relook.models.dtop.checkpoint import load_dtop

    ap = argparse.ArgumentParser()
    ap.add_argument("--warp", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--rows", default="", help="comma list of rows to compute: gem, untrained, trained")
    ap.add_argument("--config", type=Path, default=Path("configs/train/dtop-real-warp.yaml"))
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--size", type=int, default=320, help="longer side before the 3 scales (the images' own)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    test = load_dataset("warp", args.warp, split="test")
    for row in filter(None, args.rows.split(",")):
        if row == "gem":
            model = GeMStem()
        elif row == "untrained":
            conf = yaml.safe_load(args.config.read_text())  # a `relook train dtop` config: its train section
            model = DToP(**{**conf["train"]["model"], "seed": conf["train"]["seed"]})
        elif row == "trained":
            model = load_dtop(args.checkpoint)
        else:
            raise SystemExit(f"unknown row {row!r}: gem | untrained | trained")
        np.save(args.out / f"{row}.npy", describe_all(model, test.gallery, args.size))
    from relook.search import exact_search  # every image against all (itself included; the metrics skip it)

    ids, descs = (
        test.gallery_ids,
        {r: np.load(args.out / f"{r}.npy") for r in LABELS if (args.out / f"{r}.npy").exists()},
    )
    results = {LABELS[r]: evaluate(exact_search(d, d, len(ids), ids, ids), test, ks=(1, 10)) for r, d in descs.items()}
    print(format_table({k: {m: v[m] for m in ("R@1", "R@10", "mAP")} for k, v in results.items()}))
    print(
        f"{len(test.gallery)} test images ({len(set(test.gallery_labels.tolist()))} photos), longer side "
        f"{args.size}, scales 1, 0.707, 0.5"
    )
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
