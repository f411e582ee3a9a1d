"""Classic rerankers on the synthetic multi-view benchmark: global-only vs gv / aqe / asmk (mAP, R@1).

Data: the synthetic benchmark (``relook.datasets.synthetic``) in the CO3D-Retrieve layout, instance-split
train / test halves; label = instance; every test image queries all other test images (itself excluded
from its shortlist). Features: OpenCV RootSIFT (weight-free, <= 1000 per image). Global descriptor:
``rootsift-mean`` (weight-free: L2-normalised mean RootSIFT, power-normalised) by default, or
``cnn_local`` (timm backbone, random init unless the extractor is configured otherwise) when that
extractor is registered. The ASMK codebook is trained on the train split. Every reranker reorders the
SAME global shortlist. Numbers are "synthetic data, weight-free features" and not a paper benchmark.

    PYTHONPATH=src python scripts/synthetic/classic_synthetic.py --work runs/classic_syn --instances 60
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from relook.datasets.base import load_dataset
from relook.eval.metrics import mean_average_precision, recall_at_k
from relook.features.base import EXTRACTORS, create_extractor, extract_to_store
from relook.rerank import create_reranker
from relook.search import exact_search
from relook.store import FeatureStore
from relook.types import ImageFeatures, Shortlist


def build_data(work: Path, instances: int, views: int, seed: int) -> Path:
    from relook.datasets.co3d_retrieve import synthetic_co3d_retrieve

    return synthetic_co3d_retrieve(work, instances, views, 224, seed, masked=False)


def rootsift_mean(feats: ImageFeatures) -> np.ndarray:
    """Weight-free global descriptor: signed-sqrt of the mean RootSIFT, L2-normalised."""
    d = feats.local_desc
    g = d.mean(0) if len(d) else np.ones(d.shape[1], np.float32)
    g = np.sign(g) * np.sqrt(np.abs(g))
    return (g / max(np.linalg.norm(g), 1e-12)).astype(np.float32)


def shortlist_without_self(glob: np.ndarray, ids: list[str], k: int, meta: dict) -> Shortlist:
    """Top-``k`` of every image among the others (the query itself is dropped from its own list)."""
    full = exact_search(glob, glob, min(k + 1, len(ids)), ids, ids, meta)
    idx, sc = [], []
    for q in range(len(ids)):
        keep = full.indices[q] != q
        idx.append(full.indices[q][keep][:k])
        sc.append(full.scores[q][keep][:k])
    return Shortlist(ids, ids, np.stack(idx), np.stack(sc), meta)


def evaluate(ranking, ds) -> dict:
    pos, ign = ds.ground_truth()
    ranking = ranking.indices
    return {
        "mAP": 100 * mean_average_precision(ranking, pos, ign),
        "R@1": 100 * recall_at_k(ranking, pos, (1,), ign)[1],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/classic_syn"))
    ap.add_argument("--instances", type=int, default=60, help="synthetic instances (half train, half test)")
    ap.add_argument("--views", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--global-desc", default="rootsift-mean", choices=["rootsift-mean", "cnn_local"])
    ap.add_argument("--top-k", type=int, default=100)
    ap.add_argument(
        "--gv-threshold",
        type=float,
        default=5.0,
        help="inlier threshold in px (DELG's 20 px at ~1024 px, scaled to 224 px images)",
    )
    ap.add_argument("--codebook", type=int, default=1024, help="ASMK visual words (trained on the train split)")
    ap.add_argument("--sift-scales", default="1", help="comma-separated SIFT image scales, e.g. 1,1.4142,2")
    ap.add_argument("--only", default="", help="comma-separated substrings: run only matching methods")
    args = ap.parse_args()
    t0 = time.time()
    root = build_data(args.work, args.instances, args.views, args.seed)
    train, test = (load_dataset("co3d_retrieve", root, split=s) for s in ("train", "test"))
    stores = {}
    for name, ds in (("train", train), ("test", test)):
        scales = [float(x) for x in args.sift_scales.split(",")]
        stores[name] = args.work / f"{name}_rootsift_s{'-'.join(f'{x:g}' for x in scales)}.h5"
        extract_to_store(
            create_extractor("sift", num_features=1000, root=True, scales=scales),
            ds.gallery,
            stores[name],
            progress=False,
        )
    ids = test.gallery_ids
    if args.global_desc == "cnn_local":
        if "cnn_local" not in EXTRACTORS:
            raise SystemExit("cnn_local extractor not available on this branch; use --global-desc rootsift-mean")
        gstore = args.work / "test_cnn_local.h5"
        extract_to_store(create_extractor("cnn_local"), test.gallery, gstore, progress=False)
        with FeatureStore(gstore) as st:
            glob = st.stack("global_desc", ids)
        weights = "cnn_local default conf (random init unless pretrained)"
    else:
        with FeatureStore(stores["test"]) as st:
            glob = np.stack([rootsift_mean(st.read(i, ["local_desc"])) for i in ids])
        weights = "none (weight-free)"
    meta = {"data": "synthetic", "global": args.global_desc, "weights": weights}
    shortlist = shortlist_without_self(glob, ids, args.top_k, meta)
    t1 = time.time()
    with FeatureStore(stores["train"]) as st:
        train_desc = np.concatenate([st.read(i, ["local_desc"]).local_desc for i in train.gallery_ids])
    asmk = create_reranker("asmk", codebook_size=args.codebook, top_k=args.top_k).fit(train_desc)
    asmk_global = create_reranker("asmk", codebook_size=args.codebook, research=True)
    asmk_global.centroids = asmk.centroids
    thr = args.gv_threshold
    methods = {
        "global only": None,
        "+ gv (affine, MAGSAC)": create_reranker("gv", top_k=args.top_k, threshold=thr),
        "+ gv (homography)": create_reranker("gv", top_k=args.top_k, threshold=thr, model="homography"),
        "+ gv (fundamental)": create_reranker("gv", top_k=args.top_k, threshold=thr, model="fundamental"),
        "+ aqe (n=2, a=3)": create_reranker("aqe", top_k=args.top_k, n=2),
        "+ aqe + dba (n=2)": create_reranker("aqe", top_k=args.top_k, n=2, dba_n=2),
        "+ asmk* rerank": asmk,
        "asmk* global (no shortlist)": asmk_global,
    }
    if args.only:
        methods = {k: v for k, v in methods.items() if v is None or any(o.strip() in k for o in args.only.split(","))}
    rows, times = {}, {}
    with FeatureStore(stores["test"]) as st, FeatureStore(stores["test"]) as gs:
        for name, r in methods.items():
            t = time.time()
            if r is None:
                rows[name] = evaluate(shortlist, test)
            else:
                if r.name == "aqe":  # aqe needs global_desc: give it the shortlist's descriptors
                    ranking = _aqe_on(r, shortlist, glob)
                else:
                    ranking = r.rerank_shortlist(shortlist, st, gs, progress=False)
                rows[name] = evaluate(ranking, test)
            times[name] = time.time() - t
    n_local = np.mean([f.num_local for f in FeatureStore(stores["test"]).read_many(ids, ["local_desc"])])
    print(
        f"# synthetic data ({args.instances} instances x {args.views} views, seed {args.seed}; test split: "
        f"{len(ids)} images, each querying the others), RootSIFT (OpenCV, weight-free, scales "
        f"{args.sift_scales}, mean {n_local:.0f} per image), global: {args.global_desc} [{weights}], shortlist top-{args.top_k}, "
        f"ASMK codebook {args.codebook} words from the train split; NOT a paper benchmark"
    )
    print(f"{'method':<30}{'mAP':>8}{'R@1':>8}{'sec':>8}")
    for name, r in rows.items():
        print(f"{name:<30}{r['mAP']:>8.2f}{r['R@1']:>8.2f}{times[name]:>8.1f}")
    print(f"# data + features + shortlist: {t1 - t0:.0f}s")
    (args.work / f"classic_results_s{args.sift_scales.replace(',', '-')}.json").write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "meta": meta, "rows": rows}, indent=2)
    )


class _GlobalStore:
    """A read-only stand-in store holding only global descriptors (for aqe on computed globals)."""

    def __init__(self, ids, glob):
        self._g = dict(zip(ids, glob))

    def stack(self, field, ids):
        return np.stack([self._g[i] for i in ids])

    def read(self, image_id, fields=None):
        return ImageFeatures(image_id, global_desc=self._g[image_id])


def _aqe_on(r, shortlist: Shortlist, glob: np.ndarray):
    store = _GlobalStore(shortlist.gallery_ids, glob)
    return r.rerank_shortlist(shortlist, store, store, progress=False)


if __name__ == "__main__":
    main()
