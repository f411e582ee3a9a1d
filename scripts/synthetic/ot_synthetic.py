"""Global-only retrieval vs OT structural reranking on the synthetic multi-view benchmark.

Rows: the global ranking (S_global only) and the ``ot`` reranker (S_global + S_struct on the top-100)
with uniform / cross (DIML) / relevancy (rollout) marginals and partial-OT mass a in {0.7, 0.8, 0.9, 1.0}.
Columns: P@1, R-Precision, MAP@R (Musgrave et al., the paper's metrics) and mAP.

Data: ``relook.datasets.synthetic`` rendered in the CO3Dv2 layout, then the CO3D-Retrieve split (label =
object instance, every test image queries all the others). Weights: whatever ``--pretrained`` says --
by default random init (seeded), because the model hubs are unreachable here. These numbers are NOT the
paper's benchmarks (CUB / Cars / SOP with fine-tuned models).

    PYTHONPATH=src python scripts/synthetic/ot_synthetic.py --out runs/ot_synthetic --backbones swin_tiny
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from relook.datasets.base import load_dataset
from relook.datasets.co3d_retrieve import build_co3d_retrieve
from relook.datasets.synthetic import generate_synthetic
from relook.eval.metrics import mean_average_precision, musgrave_metrics
from relook.features import create_extractor, extract_to_store
from relook.rerank import create_reranker
from relook.search import exact_search
from relook.store import FeatureStore

MARGINALS = ("uniform", "cross", "relevancy")
MASSES = (0.7, 0.8, 0.9, 1.0)


def metrics(indices: np.ndarray, positives, ignore) -> dict[str, float]:
    out = musgrave_metrics(indices, positives, ignore)
    out["mAP"] = mean_average_precision(indices, positives, ignore)
    return {k: 100.0 * v for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("runs/ot_synthetic"))
    ap.add_argument("--instances", type=int, default=60, help="synthetic object instances (half go to test)")
    ap.add_argument("--views", type=int, default=5)
    ap.add_argument("--render-size", type=int, default=224, help="synthetic image size in pixels")
    ap.add_argument("--input-size", type=int, default=224, help="backbone input size")
    ap.add_argument("--backbones", nargs="+", default=["swin_tiny"], help="deit_small swin_tiny resnet50")
    ap.add_argument("--pretrained", action="store_true", help="timm ImageNet weights (needs the hub)")
    ap.add_argument(
        "--dim",
        type=int,
        default=None,
        help="project tokens + global to this size (seeded random "
        "orthogonal; the paper's D = 128); default: keep the backbone's channels",
    )
    ap.add_argument("--variant", default="full", help="full | masked backgrounds")
    ap.add_argument("--top-k", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    synth, retr = args.out / "synthetic", args.out / "retrieve"
    t0 = time.time()
    if not (retr / "manifest.json").exists():
        generate_synthetic(
            synth,
            num_instances=args.instances,
            num_views=args.views,
            image_size=args.render_size,
            seed=args.seed,
            progress=True,
        )
        build_co3d_retrieve(synth, retr, seed=args.seed)
    ds = load_dataset("co3d_retrieve", root=retr, split="test", variant=args.variant)
    positives, ignore = ds.ground_truth()
    weights = "timm ImageNet" if args.pretrained else f"random init (seed {args.seed})"
    proj = f", tokens projected to {args.dim} (seeded random orthogonal)" if args.dim else ""
    label = (
        f"synthetic data ({len(ds.gallery)} test images, {len(set(ds.gallery_labels.tolist()))} instances, "
        f"{args.variant} backgrounds, seed {args.seed}); weights: {weights}{proj}"
    )
    print(f"# {label}; setup {time.time() - t0:.0f}s")
    results = []
    for bb in args.backbones:
        ext = create_extractor(
            "vit_tokens",
            backbone=bb,
            pretrained=args.pretrained,
            image_size=args.input_size,
            seed=args.seed,
            dim=args.dim,
        )
        store = args.out / (
            f"{bb}_{args.variant}_{args.input_size}_{'pre' if args.pretrained else 'rand'}"
            + (f"_d{args.dim}" if args.dim else "")
            + ".h5"
        )
        t = time.time()
        extract_to_store(ext, ds.gallery, store, progress=True)
        print(f"# {bb}: extracted in {time.time() - t:.0f}s ({ext.provenance['relevancy_source']} relevancy)")
        with FeatureStore(store) as fs:
            g = fs.stack("global_desc", ds.gallery_ids)
            short = exact_search(g, g, len(ds.gallery_ids), ds.gallery_ids, ds.gallery_ids)
            results.append({"backbone": bb, "method": "global only", **metrics(short.indices, positives, ignore)})
            print(f"# {bb} global only: {results[-1]}", flush=True)
            for marginal in MARGINALS:
                for mass in MASSES:
                    rr = create_reranker("ot", marginal=marginal, partial=mass, top_k=args.top_k)
                    t = time.time()
                    ranking = rr.rerank_shortlist(short, fs, fs, progress=False)
                    row = {
                        "backbone": bb,
                        "method": f"ot {marginal} a={mass}",
                        **metrics(ranking.indices, positives, ignore),
                        "seconds": time.time() - t,
                    }
                    results.append(row)
                    print(
                        f"# {bb} {row['method']}: P@1 {row['P@1']:.2f} RP {row['RP']:.2f} MAP@R {row['MAP@R']:.2f} "
                        f"mAP {row['mAP']:.2f} ({row['seconds']:.0f}s)",
                        flush=True,
                    )
    print(f"\n{'backbone':<11} {'method':<22} {'P@1':>6} {'RP':>6} {'MAP@R':>6} {'mAP':>6}")
    for r in results:
        print(f"{r['backbone']:<11} {r['method']:<22} {r['P@1']:6.2f} {r['RP']:6.2f} {r['MAP@R']:6.2f} {r['mAP']:6.2f}")
    print(f"# {label}; top-{args.top_k} reranked, eps=0.05, 100 Sinkhorn iterations")
    tag = "_".join(args.backbones) + (f"_d{args.dim}" if args.dim else "")
    (args.out / f"results_{tag}.json").write_text(
        json.dumps({"label": label, "args": {k: str(v) for k, v in vars(args).items()}, "rows": results}, indent=1)
    )


if __name__ == "__main__":
    main()
