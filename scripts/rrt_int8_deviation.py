"""int8 vs float32 logits of a TRAINED RRT on stored test features (the benchmark measures random weights).

Seeded test queries of a CO3D-Retrieve-layout dataset, each scored against its top-100 by the store's
global descriptor with ``RRTPairScorer`` in float32, ``int8_ff`` and ``int8``. Prints the logit deviation
and the ranking agreement (Spearman, same top-1, top-10 overlap) of each int8 mode against float32.

    python scripts/rrt_int8_deviation.py runs/big/P/checkpoint.pt runs/big/siftw_test.h5 \
        --root runs/big/co3d_retrieve
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
import torch
from scipy.stats import spearmanr

from relook.datasets.base import load_dataset
from relook.models.rrt.checkpoint import load_rrt
from relook.models.rrt.infer import RRTPairScorer
from relook.models.rrt.inputs import pack_side, required_fields
from relook.store import FeatureStore


def agreement(ref: torch.Tensor, approx: torch.Tensor) -> tuple[float, float, float, float, float]:
    """(max |d|, mean |d|, Spearman, same top-1, top-10 overlap) of approximate vs reference logits."""
    d = (approx - ref).abs()
    top10 = len(set(ref.topk(10).indices.tolist()) & set(approx.topk(10).indices.tolist()))
    return (
        d.max().item(),
        d.mean().item(),
        float(spearmanr(ref, approx)[0]),
        float(ref.argmax() == approx.argmax()),
        float(top10),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("store", help="feature store of the test split (locals, keypoints, global)")
    ap.add_argument("--root", default="runs/big/co3d_retrieve", help="dataset root (CO3D-Retrieve layout)")
    ap.add_argument("--queries", type=int, default=5)
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)  # quantize_per_channel deprecation in torch 2.14
    torch.set_num_threads(1)
    model = load_rrt(args.checkpoint).eval()
    test = load_dataset("co3d_retrieve", args.root, split="test")
    with FeatureStore(args.store) as st:
        glob = st.stack("global_desc", test.gallery_ids)
        feats = [st.read(i, required_fields(model.conf)) for i in test.gallery_ids]
    scorers = {mode: RRTPairScorer(model, workers=1, quantize=mode) for mode in (None, "int8_ff", "int8")}
    rows: dict[str, list] = {"int8_ff": [], "int8": []}
    for qi in np.random.default_rng(0).choice(len(feats), args.queries, replace=False):
        top = np.argsort(-(glob @ glob[qi]), kind="stable")
        top = top[top != qi][:100]
        q, c = pack_side([feats[qi]], model.conf), pack_side([feats[j] for j in top], model.conf)
        ref = scorers[None](q, c)
        for mode in rows:
            rows[mode].append(agreement(ref, scorers[mode](q, c)) + (ref.std().item(),))
    print(
        f"# SYNTHETIC test split, checkpoint {args.checkpoint} (trained here), store {args.store}; "
        f"{args.queries} queries x top-100, CPU"
    )
    print(
        f"{'mode':8} {'max|d|':>7} {'mean|d|':>8} {'spearman':>8} {'top1 same':>9} {'top10 overlap':>13} {'logit std':>9}"
    )
    for mode, r in rows.items():
        a = np.asarray(r)
        print(
            f"{mode:8} {a[:, 0].max():7.4f} {a[:, 1].mean():8.4f} {a[:, 2].mean():8.4f} {a[:, 3].mean():9.2f} "
            f"{a[:, 4].mean():13.1f} {a[:, 5].mean():9.4f}"
        )


if __name__ == "__main__":
    main()
