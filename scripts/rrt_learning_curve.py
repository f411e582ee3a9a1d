"""How fast does a randomly initialised RRT leave the ln 2 plateau? Step-by-step BCE / accuracy on CPU.

Why: on the synthetic benchmark the RRT trained here never beat global-only retrieval. This
probe separates "the data carry no learnable signal" from "the optimiser has not left the plateau yet"
by training the same model on several tasks and printing the moving loss, accuracy and logit spread:

* ``--task real``: official RRT triplets (anchor, positive, hard negative from the global top-100) of the
  synthetic training split; locals = the ``--locals`` strongest RootSIFT keypoints per image (weight-free,
  128-d like DELG's locals), PCA-whitened on the training split when ``--whiten 1``; global = the
  power-normalised mean RootSIFT (only used to draw the top-100);
* ``--task copy``: the same negatives, but every positive candidate is a shuffled copy of the anchor's own
  locals plus Gaussian noise (sigma 0.05): the easiest possible "same image?" task;
* ``--task paste``: every positive candidate is the anchor's hard negative with a fraction (uniform in
  [``--paste-min``, 1]) of its locals replaced by exact copies of the anchor's locals: positive and negative
  differ only in those copies, so nothing but matching separates them.

Beware of shortcuts in such pretext tasks: the copies must come from the same distribution as real
locals. Gaussian noise on locals that the model does not re-normalise (norm ~1.15 instead of 1), or on
RootSIFTs without whitening (negative entries), or blending two real locals, each let the RRT separate
the classes within 150-250 steps without matching anything; the copy-trained models then rank the real
test top-100 below the global order. ``copy`` re-normalises (the landmark RRT's ``normalize_inputs``) and
``paste`` copies real locals unchanged.

The model is the ``landmark`` RRT (no position encoding, L2-normalised inputs) without the global token;
``--pre-ln`` switches to pre-LayerNorm, ``--warmup`` ramps the learning rate linearly. Printed numbers are
training-set statistics on SYNTHETIC data with an RRT trained here from random init.

    PYTHONPATH=src python scripts/rrt_learning_curve.py --work runs/big --task copy --steps 500

Measured (see ``rrt_synthetic_findings.md``): none of the tasks leaves the plateau within 500 steps at lr
1e-4 (official) or 1e-3 (with warm-up, pre- or post-LN); on the real task lr 1e-4 reaches 58% training
accuracy after about 3,200 steps of 4 triplets.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from relook.datasets.base import load_dataset
from relook.datasets.co3d_retrieve import synthetic_co3d_retrieve
from relook.features.base import create_extractor, extract_to_store
from relook.models.rrt import RRT
from relook.store import FeatureStore
from relook.train.rrt import PairData, global_neighbours, sample_triplets


def load_locals(store: Path, ids: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, n, 128) strongest-first RootSIFTs (zero rows pad) and (N, 128) mean-RootSIFT globals."""
    locs = np.zeros((len(ids), n, 128), np.float32)
    glob = np.zeros((len(ids), 128), np.float32)
    with FeatureStore(store) as st:
        for k, i in enumerate(ids):
            d = st.read(i, ["local_desc"]).local_desc
            locs[k, : min(n, len(d))] = d[:n]
            m = np.sqrt(np.maximum(d.mean(0), 0)) if len(d) else np.zeros(128)
            glob[k] = m / (np.linalg.norm(m) + 1e-12)
    return locs, glob


def pca_whiten(locs: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Centre + PCA-whiten the non-padding rows (fitted on these rows), L2-normalise; padding stays 0."""
    valid = np.abs(locs).sum(-1) > 0
    x = locs[valid].astype(np.float64)
    mu = x.mean(0)
    lam, vec = np.linalg.eigh(np.cov(x - mu, rowvar=False))
    w = vec / np.sqrt(np.maximum(lam, 0) + eps * lam.max())
    out = ((locs - mu) @ w).astype(np.float32)
    out /= np.linalg.norm(out, axis=-1, keepdims=True) + 1e-9
    out[~valid] = 0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/big"))
    ap.add_argument("--instances", type=int, default=300, help="synthetic instances (half of them train)")
    ap.add_argument("--task", choices=["real", "copy", "paste"], default="real")
    ap.add_argument("--paste-min", type=float, default=0.05, help="paste task: smallest pasted fraction")
    ap.add_argument("--locals", type=int, default=64, help="RootSIFT keypoints per image")
    ap.add_argument("--whiten", type=int, default=1)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--triplets", type=int, default=4, help="triplets per step (official: 12)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=0, help="linear warm-up steps (0 = none)")
    ap.add_argument("--pre-ln", action="store_true", help="pre-LayerNorm instead of the official post-LN")
    ap.add_argument("--layers", type=int, default=6, help="encoder layers (official: 6)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    root = synthetic_co3d_retrieve(args.work, args.instances, 5, 224, args.seed, masked=True)
    train = load_dataset("co3d_retrieve", root, split="train")
    store = args.work / "sift300_train.h5"
    extract_to_store(create_extractor("sift", num_features=300), train.gallery, store)
    locs, glob = load_locals(store, train.gallery_ids, args.locals)
    if args.whiten:
        locs = pca_whiten(locs)
    x = torch.from_numpy(locs)
    data = PairData(train.gallery_ids, np.asarray(train.gallery_labels), global_neighbours(glob, 100))
    model = RRT(variant="landmark", d_global=0, scale_embedding=False, norm_first=args.pre_ln, num_layers=args.layers)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=5e-4)
    rng = np.random.default_rng(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    queue, hist, t0 = np.zeros((0, 3), np.int64), [], time.time()
    print(
        f"# synthetic data ({args.instances} instances, train split), RootSIFT top-{args.locals} "
        f"{'whitened ' if args.whiten else ''}locals, task {args.task}; RRT trained here from random init: "
        f"lr {args.lr:g}, warm-up {args.warmup}, {'pre' if args.pre_ln else 'post'}-LN, {args.layers} layers, "
        f"{args.triplets} triplets/step"
    )
    print(f"{'step':>6} {'BCE':>8} {'acc':>7} {'logit std':>10} {'s':>6}")
    for step in range(1, args.steps + 1):
        if len(queue) < args.triplets:
            queue = sample_triplets(data, 1, rng)
        t, queue = queue[: args.triplets], queue[args.triplets :]
        q = torch.cat([x[t[:, 0]], x[t[:, 0]]])
        c = torch.cat([x[t[:, 1]], x[t[:, 2]]])
        if args.task == "copy":
            n = len(t)
            perm = torch.randperm(q.shape[1], generator=gen)
            c[:n] = q[:n, perm] + 0.05 * torch.randn(q[:n].shape, generator=gen)
        elif args.task == "paste":  # the hard negative with exact copies of some anchor locals
            n, m = len(t), q.shape[1]
            c[:n] = x[t[:, 2]]
            for i in range(n):
                k = max(1, int(round(rng.uniform(args.paste_min, 1.0) * m)))
                c[i, rng.choice(m, k, replace=False)] = q[i, rng.choice(m, k, replace=False)]
        y = torch.cat([torch.ones(len(t)), torch.zeros(len(t))])
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, step / args.warmup) if args.warmup else args.lr
        logits = model(q, c).logits
        loss = F.binary_cross_entropy_with_logits(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append((loss.item(), ((logits > 0).float() == y).float().mean().item(), logits.std().item()))
        if step % 50 == 0:
            h = np.asarray(hist[-50:]).mean(0)
            print(f"{step:>6} {h[0]:>8.4f} {h[1]:>7.3f} {h[2]:>10.3f} {time.time() - t0:>6.0f}", flush=True)


if __name__ == "__main__":
    main()
