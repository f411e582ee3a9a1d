"""RRT on the synthetic multi-view benchmark: global-only vs RRT reranking (mAP, R@1/10/50).

Data: the synthetic benchmark (``relook.datasets.synthetic``) in the CO3D-Retrieve layout, instance-split
train / test halves (label = instance; every test image queries all other test images).
Features (``--features``): ``cnn_local`` = timm ``--arch`` last-block 7x7 grid (RANDOM init: no model
hub here, unless ``--pretrained``; a random ResNet-50 gives near-chance global retrieval), or
``dense_sift`` = weight-free RootSIFT computed at the cell centres of a ``--grid`` x ``--grid`` grid
(7 = the cnn_local layout; OpenCV, one cell wide regions), global descriptor = power- and L2-normalised mean of the grid's RootSIFTs. The RRT is trained
HERE on the train split's global top-100, from random init. Numbers printed are "synthetic data,
<features>, RRT trained here" and are not a paper benchmark. ``--queries N`` evaluates a seeded subset
of N test queries (each still ranked against the whole test gallery) to bound CPU time.

Example:
    python scripts/synthetic/rrt_synthetic.py --work runs/syn --instances 120 --epochs 6
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from relook.datasets.base import load_dataset
from relook.eval.metrics import mean_average_precision, recall_at_k
from relook.features.base import Extractor, create_extractor, extract_to_store
from relook.rerank import create_reranker
from relook.search import exact_search
from relook.store import FeatureStore
from relook.train.rrt_stage import train_rrt_stage
from relook.types import ImageFeatures


def build_data(work: Path, instances: int, views: int, seed: int) -> Path:
    from relook.datasets.co3d_retrieve import synthetic_co3d_retrieve

    return synthetic_co3d_retrieve(work, instances, views, 224, seed, masked=False)


class DenseSift(Extractor):
    """RootSIFT at the cell centres of a ``grid x grid`` partition (the cnn_local layout), weight-free."""

    name = "dense_sift"
    default_conf = {"grid": 7, "size": 32.0}  # grid cells per side; SIFT region diameter in pixels (224 px)
    writes = frozenset({"global_desc", "local_desc", "keypoints", "scales", "image_size"})

    def extract_one(self, image_id, image):
        import cv2

        from relook.features.cnn_local import grid_keypoints

        h, w = image.shape[:2]
        g = self.conf["grid"]
        pts = grid_keypoints(g, g, h, w)
        size = self.conf["size"] * max(h, w) / 224.0
        kps = [cv2.KeyPoint(float(x), float(y), size) for x, y in pts]
        _, d = cv2.SIFT_create().compute(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), kps)
        d = np.sqrt(np.maximum(d, 0) / (np.maximum(d, 0).sum(1, keepdims=True) + 1e-12)).astype(np.float32)
        m = np.sqrt(d.mean(0))
        return ImageFeatures(
            image_id,
            global_desc=m / (np.linalg.norm(m) + 1e-12),
            local_desc=d,
            keypoints=pts,
            scales=np.ones(len(d)),
            image_size=np.array([h, w]),
        )


def pca_whiten_stores(src: dict, dst: dict, train_ids: list, eps: float = 1e-6) -> None:
    """Fit PCA whitening of the local descriptors on the train store (as DELG whitens its locals) and
    write copies of every store with whitened ``local_desc`` (same dimension)."""
    with FeatureStore(src["train"]) as st:
        x = np.concatenate([st.read(i, ["local_desc"]).local_desc for i in train_ids]).astype(np.float64)
    mu = x.mean(0)
    lam, vec = np.linalg.eigh(np.cov(x - mu, rowvar=False))
    w = vec / np.sqrt(np.maximum(lam, 0) + eps * lam.max())
    for name in src:
        with FeatureStore(src[name]) as st, FeatureStore(dst[name], "w", meta={**st.meta, "whitening": "pca"}) as out:
            for i in st.ids():
                f = st.read(i)
                f.local_desc = ((f.local_desc - mu) @ w).astype(np.float32)
                out.write(f)


def evaluate(ranking, ds, rows=None) -> dict:
    pos, ign = ds.ground_truth()
    if rows is not None:
        pos, ign = [pos[i] for i in rows], [ign[i] for i in rows]
    r = recall_at_k(ranking.indices, pos, (1, 10, 50), ign)
    return {"mAP": 100 * mean_average_precision(ranking.indices, pos, ign), **{f"R@{k}": 100 * v for k, v in r.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/syn"))
    ap.add_argument("--instances", type=int, default=120, help="synthetic instances (half train, half test)")
    ap.add_argument("--views", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--features", default="dense_sift", choices=["dense_sift", "cnn_local"])
    ap.add_argument("--queries", type=int, default=0, help="evaluate a seeded subset of test queries (0 = all)")
    ap.add_argument("--grid", type=int, default=7, help="dense_sift grid cells per side (7 = the RRT/SOP grid)")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--pretrained", action="store_true", help="ImageNet backbone weights (needs the timm hub)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--pe", default="none", choices=["none", "sine"], help="RRT position encoding")
    ap.add_argument("--normalize", type=int, default=1, help="L2-normalise RRT inputs (1) or not (0)")
    ap.add_argument("--top-k", type=int, default=100)
    ap.add_argument("--whiten", type=int, default=1, help="PCA-whiten locals, fitted on the train split (1/0)")
    ap.add_argument("--max-norm", type=float, default=0.1, help="gradient clipping (supp. D); 0 = off")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    root = build_data(args.work, args.instances, args.views, args.seed)
    train, test = (load_dataset("co3d_retrieve", root, split=s) for s in ("train", "test"))
    ex_conf = {
        "arch": args.arch,
        "pretrained": args.pretrained,
        "image_size": 224,
        "local_dim": 128,
        "projection_seed": args.seed,
    }
    tag = f"{args.arch}{'_pt' if args.pretrained else ''}" if args.features == "cnn_local" else f"dense_sift{args.grid}"
    stores = {}
    for name, ds in (("train", train), ("test", test)):
        stores[name] = args.work / f"{name}_{tag}.h5"
        ex = (
            create_extractor("cnn_local", **ex_conf)
            if args.features == "cnn_local"
            else DenseSift(grid=args.grid, size=224 / args.grid)
        )
        extract_to_store(ex, ds.gallery, stores[name])
    if args.whiten:
        white = {k: v.with_name(v.stem + "_pcaw.h5") for k, v in stores.items()}
        if not all(p.exists() for p in white.values()):
            pca_whiten_stores(stores, white, train.gallery_ids)
        stores, tag = white, tag + "_pcaw"
    with FeatureStore(stores["test"]) as st:
        glob = st.stack("global_desc", test.gallery_ids)
    # full ranking by the global descriptor; RRT reorders its first top_k + 1 entries (the query itself,
    # ignored by the metrics, is among them), the rest keeps the global order
    shortlist = exact_search(
        glob, glob, len(glob), test.query_ids, test.gallery_ids, meta={"data": "synthetic", "weights": tag}
    )
    qrows = None
    if args.queries and args.queries < len(test.query_ids):
        qrows = np.sort(np.random.default_rng(args.seed).choice(len(test.query_ids), args.queries, replace=False))
        shortlist = type(shortlist)(
            [shortlist.query_ids[i] for i in qrows],
            shortlist.gallery_ids,
            shortlist.indices[qrows],
            shortlist.scores[qrows],
            shortlist.meta,
        )
    rows = {"global only": evaluate(shortlist, test, qrows)}
    t1 = time.time()
    out = args.work / f"rrt_{tag}_pe-{args.pe}_n{args.normalize}_e{args.epochs}_lr{args.lr:g}"
    ckpt = train_rrt_stage(
        train,
        stores["train"],
        out,
        {"variant": "sop", "position_encoding": args.pe, "normalize_inputs": bool(args.normalize)},
        {"epochs": args.epochs, "lr": args.lr, "seed": args.seed, "max_norm": args.max_norm},
        resume=True,
        seed=args.seed,
    )
    t2 = time.time()
    rr = create_reranker("rrt", checkpoint=str(ckpt), top_k=args.top_k + 1)
    with FeatureStore(stores["test"]) as st:
        ranking = rr.rerank_shortlist(shortlist, st, st)
    rows["global + RRT"] = evaluate(ranking, test, qrows)
    t3 = time.time()
    feat = (
        f"cnn_local {args.arch} {'ImageNet' if args.pretrained else 'random init'} (frozen)"
        if args.features == "cnn_local"
        else f"dense RootSIFT {args.grid}x{args.grid} grid (weight-free)"
    )
    print(
        f"# synthetic data ({args.instances} instances x {args.views} views, seed {args.seed}; test split "
        f"{len(test.query_ids)} images, {len(shortlist.query_ids)} queries evaluated), features: {feat}; "
        f"whitened locals {args.whiten}; RRT trained here: {args.epochs} epochs, lr {args.lr:g}, max_norm "
        f"{args.max_norm:g}, PE {args.pe}, normalize {args.normalize}, "
        f"top-{args.top_k} reranked"
    )
    print(f"{'method':<16}" + "".join(f"{k:>8}" for k in rows["global only"]))
    for name, r in rows.items():
        print(f"{name:<16}" + "".join(f"{v:>8.2f}" for v in r.values()))
    print(
        f"# times: data+extract+search {t1 - t0:.0f}s, train {t2 - t1:.0f}s, rerank {t3 - t2:.0f}s; checkpoint {ckpt}"
    )
    (out / "results.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **rows}, indent=2)
    )


if __name__ == "__main__":
    main()
