"""RRT on the synthetic multi-view benchmark: global-only vs RRT reranking (mAP, R@1/10/50).

Data: the synthetic benchmark (``relook.datasets.synthetic``) in the CO3D-Retrieve layout, instance-split
train / test halves (label = instance; every test image queries all other test images).
Weights: the ``cnn_local`` backbone is timm ``--arch`` with RANDOM init (no model hub here) unless
``--pretrained``; the RRT is trained HERE on the train split's global top-100, from random init.
Numbers printed are therefore "synthetic data, random-init backbone, RRT trained here" and are not a
paper benchmark.

Example:
    python experiments/rrt_synthetic.py --work runs/syn --instances 120 --epochs 6
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
from relook.features.base import create_extractor, extract_to_store
from relook.rerank import create_reranker
from relook.search import exact_search
from relook.store import FeatureStore
from relook.train.rrt_stage import train_rrt_stage


def build_data(work: Path, instances: int, views: int, seed: int) -> Path:
    from relook.datasets.co3d_retrieve import build_co3d_retrieve
    from relook.datasets.synthetic import generate_synthetic

    root = work / "retrieve"
    if not (root / "manifest.json").exists():
        generate_synthetic(work / "co3d", num_instances=instances, num_views=views, image_size=224, seed=seed)
        build_co3d_retrieve(work / "co3d", root, seed=seed, masked=False, progress=False)
    return root


def evaluate(ranking, ds) -> dict:
    pos, ign = ds.ground_truth()
    r = recall_at_k(ranking, pos, (1, 10, 50), ign)
    return {"mAP": 100 * mean_average_precision(ranking, pos, ign), **{f"R@{k}": 100 * v for k, v in r.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/syn"))
    ap.add_argument("--instances", type=int, default=120, help="synthetic instances (half train, half test)")
    ap.add_argument("--views", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--pretrained", action="store_true", help="ImageNet backbone weights (needs the timm hub)")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--pe", default="none", choices=["none", "sine"], help="RRT position encoding")
    ap.add_argument("--normalize", type=int, default=1, help="L2-normalise RRT inputs (1) or not (0)")
    ap.add_argument("--top-k", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    root = build_data(args.work, args.instances, args.views, args.seed)
    train, test = (load_dataset("co3d_retrieve", root, split=s) for s in ("train", "test"))
    ex_conf = {"arch": args.arch, "pretrained": args.pretrained, "image_size": 224, "local_dim": 128,
               "projection_seed": args.seed}
    tag = f"{args.arch}{'_pt' if args.pretrained else ''}"
    stores = {}
    for name, ds in (("train", train), ("test", test)):
        stores[name] = args.work / f"{name}_{tag}.h5"
        extract_to_store(create_extractor("cnn_local", **ex_conf), ds.gallery, stores[name])
    with FeatureStore(stores["test"]) as st:
        glob = st.stack("global_desc", test.gallery_ids)
    shortlist = exact_search(glob, glob, args.top_k + 1, test.query_ids, test.gallery_ids,
                             meta={"data": "synthetic", "weights": tag})
    rows = {"global only": evaluate(shortlist, test)}
    t1 = time.time()
    out = args.work / f"rrt_{tag}_pe-{args.pe}_n{args.normalize}_e{args.epochs}"
    ckpt = train_rrt_stage(train, stores["train"], out,
                           {"variant": "sop", "position_encoding": args.pe, "normalize_inputs": bool(args.normalize)},
                           {"epochs": args.epochs, "lr": args.lr, "seed": args.seed}, resume=True, seed=args.seed)
    t2 = time.time()
    rr = create_reranker("rrt", checkpoint=str(ckpt), top_k=args.top_k + 1)
    with FeatureStore(stores["test"]) as st:
        ranking = rr.rerank_shortlist(shortlist, st, st)
    rows["global + RRT"] = evaluate(ranking, test)
    t3 = time.time()
    print(f"# synthetic data ({args.instances} instances x {args.views} views, seed {args.seed}; test split: "
          f"{len(test.query_ids)} queries), backbone {args.arch} {'ImageNet' if args.pretrained else 'random init'} "
          f"(frozen), RRT trained here: {args.epochs} epochs, PE {args.pe}, normalize {args.normalize}")
    print(f"{'method':<16}" + "".join(f"{k:>8}" for k in rows["global only"]))
    for name, r in rows.items():
        print(f"{name:<16}" + "".join(f"{v:>8.2f}" for v in r.values()))
    print(f"# times: data+extract+search {t1 - t0:.0f}s, train {t2 - t1:.0f}s, rerank {t3 - t2:.0f}s; "
          f"checkpoint {ckpt}")
    (out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, **rows}, indent=2))


if __name__ == "__main__":
    main()
