"""How much reranking evidence do the synthetic test split's RootSIFT locals carry? (a diagnostic)

The RRT trained here does not leave the BCE plateau on the synthetic benchmark. This script measures
what a weight-free reranker gets from the same inputs the RRT sees: the top-100 of each query by the
power-normalised mean-RootSIFT global descriptor is re-sorted by the number of mutual nearest-neighbour
pairs among the ``n`` strongest RootSIFT keypoints whose cosine exceeds a threshold
(``relook.rerank.matching.mutual_nn_batch`` with the equivalent distance bound). If this count beats
global-only, the local evidence an RRT would have to learn to read is present in the data.

All numbers are on SYNTHETIC data (``synthetic_co3d_retrieve``, test split, seeded random queries) with
no learned weights.

    PYTHONPATH=src python scripts/rrt_local_signal.py --work runs/big --queries 100
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from rrt_learning_curve import load_locals

from relook.datasets.base import load_dataset
from relook.datasets.co3d_retrieve import synthetic_co3d_retrieve
from relook.eval.metrics import mean_average_precision, recall_at_k
from relook.features.base import create_extractor, extract_to_store
from relook.rerank.matching import mutual_nn_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/big"))
    ap.add_argument("--instances", type=int, default=300)
    ap.add_argument("--queries", type=int, default=100, help="seeded random test queries")
    ap.add_argument("--locals", default="32,64,128,300")
    ap.add_argument("--thresholds", default="0.8,0.9")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    root = synthetic_co3d_retrieve(args.work, args.instances, 5, 224, args.seed, masked=True)
    test = load_dataset("co3d_retrieve", root, split="test")
    store = args.work / "sift_test.h5"
    extract_to_store(create_extractor("sift", num_features=300), test.gallery, store)
    rows = np.sort(np.random.default_rng(0).choice(len(test.query_ids), args.queries, replace=False))
    pos, ign = test.ground_truth()
    pos, ign = [pos[i] for i in rows], [ign[i] for i in rows]
    qidx = [test.gallery_ids.index(test.query_ids[i]) for i in rows]

    def metrics(ind: np.ndarray) -> str:
        r = recall_at_k(ind, pos, (1, 10), ign)
        return f"{100 * mean_average_precision(ind, pos, ign):6.2f} {100 * r[1]:6.1f} {100 * r[10]:6.1f}"

    print(
        f"# SYNTHETIC test split ({args.instances} instances x 5 views), {args.queries} seeded queries; "
        "RootSIFT locals, no learned weights"
    )
    print(f"{'locals':>6} {'method':>16} {'mAP':>6} {'R@1':>6} {'R@10':>6}")
    for n in [int(v) for v in args.locals.split(",")]:
        loc, glob = load_locals(store, test.gallery_ids, n)
        order = np.argsort(-(glob[qidx] @ glob.T), axis=1, kind="stable")
        print(f"{n:>6} {'global':>16} {metrics(order)}")
        for thr in [float(v) for v in args.thresholds.split(",")]:
            out = order.copy()
            for r, qi in enumerate(qidx):
                top = order[r, :101]
                top = top[top != qi][:100]
                valid = [loc[j][np.abs(loc[j]).sum(1) > 0] for j in top]  # drop zero padding rows
                q = loc[qi][np.abs(loc[qi]).sum(1) > 0]
                # unit vectors: cosine > t  <=>  Euclidean distance < sqrt(2 - 2t)
                matches = mutual_nn_batch(q, valid, max_distance=float(np.sqrt(2 - 2 * thr)))
                score = np.array([len(m[0]) for m in matches], float)
                out[r, : len(top)] = top[np.argsort(-score, kind="stable")]  # ties keep the global order
                out[r, len(top) :] = [j for j in order[r] if j not in set(top)][: out.shape[1] - len(top)]
            print(f"{n:>6} {f'MNN cos>{thr:g}':>16} {metrics(out)}", flush=True)


if __name__ == "__main__":
    main()
