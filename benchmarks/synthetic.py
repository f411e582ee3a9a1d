"""Time the synthetic benchmark generator and the CO3D-Retrieve build on its output.

Synthetic data only (no real images, no weights). The reference measured in the same run is the I/O
floor: encoding and writing the same number of JPEG + PNG files of the same size with OpenCV.
Run: .venv/bin/python benchmarks/synthetic.py [--num-instances 60 --num-views 5 --image-size 224]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from relook.datasets.co3d_retrieve import build_co3d_retrieve
from relook.datasets.synthetic import generate_synthetic


def io_floor(out: Path, n: int, size: int) -> None:
    import cv2

    out.mkdir(parents=True, exist_ok=True)
    img = (np.random.default_rng(0).random((size, size, 3)) * 255).astype(np.uint8)
    for i in range(n):
        cv2.imwrite(str(out / f"{i}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(out / f"{i}.png"), img[..., 0])
        cv2.imwrite(str(out / f"{i}.d.png"), img[..., :2].copy().view(np.uint16)[..., 0])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--num-instances", type=int, default=60)
    ap.add_argument("--num-views", type=int, default=5)
    ap.add_argument("--image-size", type=int, default=224)
    args = ap.parse_args()
    n = args.num_instances * args.num_views
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        io_floor(tmp / "floor", n, args.image_size)
        t_floor = time.perf_counter() - t
        t = time.perf_counter()
        generate_synthetic(tmp / "synth", args.num_instances, args.num_views, args.image_size)
        t_gen = time.perf_counter() - t
        t = time.perf_counter()
        build_co3d_retrieve(tmp / "synth", tmp / "retrieve", progress=False)
        t_build = time.perf_counter() - t
    print(
        f"synthetic data: {args.num_instances} instances x {args.num_views} views at {args.image_size} px ({n} images)"
    )
    print(f"{'step':<36}{'seconds':>10}{'x I/O floor':>14}")
    for name, s in [
        ("I/O floor (write jpg+png+depth)", t_floor),
        ("generate_synthetic", t_gen),
        ("build_co3d_retrieve (+masked)", t_build),
    ]:
        print(f"{name:<36}{s:>10.2f}{s / t_floor:>14.2f}")


if __name__ == "__main__":
    main()
