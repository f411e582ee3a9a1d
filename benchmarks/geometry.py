"""Real-pair geometry table: homographies and fundamental matrices from relook's matchers, hloc style.

Data: the real pairs of ``../shared/data/geometry`` (read by ``relook.datasets.geometry_pairs``):
homographies on HPatches (subset), graf, EVD and MAGSAC's planar pairs; fundamental matrices on the
KUSVOD2 pairs with hand-marked correspondences and on the ScanNet pairs with K0, K1, T_0to1.

Per set and method: accuracy at 1 / 3 / 5 px (share of pairs whose error is below), the median error
over pairs (a failed fit counts as inf), and seconds per pair (extraction of both images, matching and
the robust fit; CPU with 2 torch threads).

- homography error: HPatches mean corner error of the MAGSAC++ H (``gv.count_inliers``, threshold
  2 px of the network input) against the true H;
- KUSVOD2: median symmetric epipolar distance of the hand-marked correspondences under the estimated F;
- ScanNet: median symmetric epipolar distance, under the estimated F, of virtual correspondences of the
  true F (``two_view.virtual_correspondences``);
- F is the pseudo ground truth of ``relook.geometry.robust.estimate_fundamental`` (MAGSAC++, threshold
  1 px of the network input, and the epipolar paper's reliability rule: unreliable when #matches <= 20 or
  #inliers <= 0.2 #matches); ``reliable`` is the share of pairs it accepts; an unreliable F is still
  scored (the errors show what the rule rejects).

    PYTHONPATH=src python benchmarks/geometry.py [--sets hpatches graf ...] [--methods ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "geometry"
H_METHODS = ["sift+mnn", "aliked+mnn", "aliked+lightglue", "disk+lightglue", "xfeat+lighterglue"]
F_METHODS = ["sift+ratio", "aliked+lightglue", "disk+lightglue"]
THRESHOLDS = (1, 3, 5)


_FEATURES: dict = {}  # (extractor, conf, image path) -> (features, seconds): shared by methods and pairs


def features(matcher, path: Path, image: np.ndarray):
    """Features of one image and the seconds their extraction took (measured once, reused)."""
    key = (matcher.extractor_name, tuple(sorted(matcher.extractor_conf.items())), str(path))
    if key not in _FEATURES:
        t0 = time.perf_counter()
        f = matcher.features(str(path), image)
        _FEATURES[key] = (f, time.perf_counter() - t0)
    return _FEATURES[key]


def run_pair(matcher, pair, kind: str, seed: int = 0) -> tuple[float, float, bool]:
    """(error in px, seconds, reliable) of one pair; seconds = extraction of both images (each measured
    once, reused by the pairs and methods that share it) + matching + robust fit; reading is not timed."""
    from relook.geometry.epipolar import symmetric_epipolar_distance
    from relook.geometry.robust import estimate_fundamental
    from relook.images import load_image
    from relook.rerank.two_view import corner_error, estimate_homography, threshold_px, virtual_correspondences

    im1, im2 = load_image(pair.image1), load_image(pair.image2)
    (f1, t1), (f2, t2) = features(matcher, pair.image1, im1), features(matcher, pair.image2, im2)
    t0 = time.perf_counter() - t1 - t2
    x1, x2 = matcher.match(f1, f2)
    if kind == "H":
        H, _ = estimate_homography(x1, x2, threshold_px(2.0, im1.shape, matcher.resize), seed)
        dt = time.perf_counter() - t0
        return corner_error(H, pair.H, im1.shape[:2]), dt, H is not None
    r = estimate_fundamental(x1, x2, {"ransac_threshold": threshold_px(1.0, im1.shape, matcher.resize), "seed": seed})
    dt = time.perf_counter() - t0
    if r["num_inliers"] == 0:
        return float("inf"), dt, False
    if pair.x1 is not None:  # hand-marked correspondences
        y1, y2 = pair.x1, pair.x2
    else:  # correspondences consistent with the true F
        y1, y2 = virtual_correspondences(pair.F, im1.shape[:2], im2.shape[:2])
    return float(np.median(symmetric_epipolar_distance(r["F"], y1, y2).numpy())), dt, r["reliable"]


def main() -> None:
    import torch

    from relook.datasets.geometry_pairs import EPIPOLAR_SETS, HOMOGRAPHY_SETS, load_geometry_set
    from relook.rerank.two_view import TwoViewMatcher

    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=str(ROOT), help="the geometry data folder")
    ap.add_argument("--sets", nargs="+", default=[*HOMOGRAPHY_SETS, *EPIPOLAR_SETS])
    ap.add_argument("--methods", nargs="+", default=None, help="default: H_METHODS for H sets, F_METHODS for F")
    ap.add_argument("--max-pairs", type=int, default=None, help="first N pairs of each set")
    ap.add_argument("--max-keypoints", type=int, default=2048)
    ap.add_argument("--resize", type=int, default=640, help="long side the extractors see (px)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import cv2

    cv2.setNumThreads(args.threads)

    sets = {s: load_geometry_set(s, args.root)[: args.max_pairs] for s in args.sets}
    print(f"data: real pairs from {args.root}: " + ", ".join(f"{s} {len(p)}" for s, p in sets.items()))
    print(
        f"features: long side {args.resize} px, at most {args.max_keypoints} keypoints; CPU, "
        f"{args.threads} torch threads; error: H corner error / median symmetric epipolar distance (px)"
    )
    matchers: dict[str, TwoViewMatcher] = {}
    rows = []
    for s, pairs in sets.items():
        kind = "H" if s in HOMOGRAPHY_SETS else "F"
        for m in args.methods or (H_METHODS if kind == "H" else F_METHODS):
            if m not in matchers:
                matchers[m] = TwoViewMatcher(m, args.max_keypoints, args.resize)
            res = [run_pair(matchers[m], p, kind) for p in pairs]
            err = np.array([r[0] for r in res])
            rows.append(
                (
                    s,
                    m,
                    len(pairs),
                    *(100 * np.mean(err < t) for t in THRESHOLDS),
                    float(np.median(err)),
                    100 * np.mean([r[2] for r in res]),
                    float(np.mean([r[1] for r in res])),
                )
            )
            print(f"  done {s} {m}", flush=True)
    print()
    head = "| set | method | pairs | @1px | @3px | @5px | median err px | found (H) / reliable (F) % | s/pair |"
    print(head)
    print("|" + "|".join("---" for _ in range(head.count("|") - 1)) + "|")
    for s, m, n, a1, a3, a5, med, rel, t in rows:
        print(f"| {s} | {m} | {n} | {a1:.0f} | {a3:.0f} | {a5:.0f} | {med:.2f} | {rel:.0f} | {t:.2f} |")
    print()
    print("weights:")
    seen = set()
    for m in matchers.values():
        for w in m.weights:
            if w.describe() not in seen:
                seen.add(w.describe())
                print(f"  {w.describe()}")
    print("  SIFT: OpenCV " + cv2.__version__ + " (no weights)")


if __name__ == "__main__":
    main()
