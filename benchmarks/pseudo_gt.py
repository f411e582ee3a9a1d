"""Seconds per pair and accuracy of pseudo ground-truth F (SIFT + MAGSAC++) vs exact F, synthetic pairs.

Data: synthetic two-view scenes (benchmarks/two_view_scene.py, exact cameras), no learned weights.
Reference measured in the same run: the same SIFT matches with OpenCV's classic RANSAC (cv2.FM_RANSAC).
Accuracy: median symmetric epipolar distance (px, 224x224 images) of 500 exact correspondences (projected
object surface points) under the estimated F; the exact F gives ~0.

    PYTHONPATH=src python benchmarks/pseudo_gt.py --pairs 6
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    import cv2
    from two_view_scene import render_two_views  # beside this script

    from relook.geometry.epipolar import symmetric_epipolar_distance
    from relook.geometry.robust import estimate_fundamental, match_sift

    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=6, help="pairs per viewpoint difference")
    args = ap.parse_args()
    print("synthetic two-view scenes (exact cameras), no learned weights; 224x224")
    print(
        f"{'delta':>6} {'match s':>8} {'MAGSAC++ s':>10} {'RANSAC s':>9} {'ratio':>6} {'reliable':>8} "
        f"{'med d MAGSAC++':>14} {'med d RANSAC':>12}"
    )
    for delta in (20, 40, 72):
        tm, tg, tr, rel, dg, dr = [], [], [], [], [], []
        for seed in range(args.pairs):
            a, b, cams, X = render_two_views(seed, delta)
            x = []
            for K, R, t in cams:
                p = (K @ (R @ X.T + t[:, None])).T
                x.append(p[:, :2] / p[:, 2:])
            t0 = time.perf_counter()
            x1, x2 = match_sift(a, b)
            t1 = time.perf_counter()
            r = estimate_fundamental(x1, x2)
            t2 = time.perf_counter()
            F_r = None
            if len(x1) >= 8:
                cv2.setRNGSeed(0)
                F_r, _ = cv2.findFundamentalMat(x1, x2, cv2.FM_RANSAC, 1.0, 0.999)
            t3 = time.perf_counter()
            tm.append(t1 - t0), tg.append(t2 - t1), tr.append(t3 - t2), rel.append(r["reliable"])
            if r["num_inliers"]:
                dg.append(float(np.median(symmetric_epipolar_distance(r["F"], *x).numpy())))
            if F_r is not None and F_r.shape == (3, 3):
                dr.append(float(np.median(symmetric_epipolar_distance(F_r, *x).numpy())))
        med = lambda v: float(np.median(v)) if v else float("nan")  # noqa: E731
        print(
            f"{delta:>5}d {np.mean(tm):8.4f} {np.mean(tg):10.4f} {np.mean(tr):9.4f} {np.mean(tg) / np.mean(tr):6.2f} "
            f"{np.mean(rel):8.2f} {med(dg):14.2f} {med(dr):12.2f}"
        )


if __name__ == "__main__":
    main()
