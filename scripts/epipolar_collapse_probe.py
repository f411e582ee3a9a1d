"""Why the literal epipolar losses squash the supervised logits, and what the default reading changes.

Controlled case with a known answer: ONE fixed camera pose (224 x 224 images, 7 x 7 grids), so the epipolar
grid is the same for every pair and is learnable from token positions alone; the local contents are random
(N(0, content^2), new every step). An RRT (``sop`` variant: sine PE at the input, post-LN, 6 layers, d 128,
random init) is trained on the guidance loss alone (``EpipolarGuidance.extra_loss``, weight 1), AdamW. Per
setting it prints: the epipolar share of the head-averaged last-layer softmax cross-attention on 32 fresh
pairs (``relook.viz.epipolar.cross_attention_maps``, both directions) vs chance (the indicator's base rate),
the std of the supervised logits, and the variance of the last layer's input tokens y_{L-1} (total, and
its position part = variance over cells of the mean over pairs).

    PYTHONPATH=src python scripts/epipolar_collapse_probe.py --steps 250 --lr 1e-4
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from relook.losses.epipolar import epipolar_attention_share
from relook.models.position_encoding import grid_positions
from relook.models.rrt import RRT
from relook.train.epipolar import TrainingGuidance as EpipolarGuidance
from relook.viz.epipolar import cross_attention_maps

S = 7
SETTINGS = [  # (guidance, logits, offset)
    ("epi", "sum", "zero"),
    ("epi", "mean", "zero"),
    ("epi", "sum", "prior"),
    ("epi", "mean", "prior"),
    ("maxepi", "sum", "zero"),
    ("maxepi", "mean", "prior"),
]


def cameras():
    K = np.array([[300.0, 0, 111.5], [0, 300.0, 111.5], [0, 0, 1]])
    c, s = np.cos(0.4), np.sin(0.4)
    R2 = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
    return {"a": {"K": K, "R": np.eye(3), "t": np.zeros(3)}, "b": {"K": K, "R": R2, "t": np.array([1.0, 0.1, 0.3])}}


def side(local):
    n = local.shape[0]
    pos = grid_positions(S, S).expand(n, -1, -1)
    return {
        "local": local,
        "pos": pos,
        "mask": torch.zeros(n, S * S, dtype=torch.bool),
        "scale_idx": None,
        "global": None,
    }


def run(guidance, logits, offset, args):
    torch.manual_seed(args.seed)
    model = RRT(variant="sop", num_layers=args.layers)
    g = EpipolarGuidance(
        cameras=cameras(),
        image_sizes={"a": (224, 224), "b": (224, 224)},
        guidance=guidance,
        logits=logits,
        offset=offset,
        weight=1.0,
    )
    F, _ = g.fundamentals(["a"], ["b"])
    I12, I21 = (t.float() for t in g.indicators(F))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    B = args.batch
    batch = {"query_ids": ["a"] * B, "candidate_ids": ["b"] * B, "labels": torch.ones(B), "model": model}
    gen = torch.Generator().manual_seed(args.seed)
    for _ in range(args.steps):
        q, c = (args.content * torch.randn(B, S * S, 128, generator=gen) for _ in range(2))
        pos = side(q)["pos"]
        out = model(q, c, pos, pos, return_last_input=True, return_raw_cross=True)
        loss = g.extra_loss(batch, out)
        opt.zero_grad()
        loss.backward()
        opt.step()
    ev = torch.Generator().manual_seed(123)
    q, c = (args.content * torch.randn(32, S * S, 128, generator=ev) for _ in range(2))
    a12, a21 = cross_attention_maps(model, side(q), side(c))
    share = float(
        (
            0.5
            * (
                epipolar_attention_share(a12, I12.expand(32, -1, -1))
                + epipolar_attention_share(a21, I21.expand(32, -1, -1))
            )
        ).mean()
    )
    with torch.no_grad():
        pos = side(q)["pos"]
        out = model(q, c, pos, pos, return_last_input=True, return_raw_cross=True)
        A12, _ = g.supervised_logits(model, out)
        y = out.last_input[:, 1 : 1 + S * S]
        tok_var, pos_var = float(y.var(dim=(0, 1)).sum()), float(y.mean(0).var(0).sum())
    chance = float(0.5 * (I12.mean() + I21.mean()))
    return share, chance, float(A12.std()), tok_var, pos_var, float(loss.detach()) / (2 * S**4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--content", type=float, default=0.3, help="std of the random local contents")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"data: synthetic fixed pose, random contents (std {args.content}); weights: random init, trained here")
    print(f"RRT sop {args.layers} layers d128, AdamW lr {args.lr}, {args.steps} steps x {args.batch} pairs")
    print("guidance logits offset |  share  chance | logit std | y var (pos part) | loss/cell | time")
    for gdn, lg, off in SETTINGS:
        t = time.time()
        share, chance, std, tv, pv, lc = run(gdn, lg, off, args)
        print(
            f"{gdn:8s} {lg:6s} {off:6s} | {100 * share:5.1f}%  {100 * chance:5.1f}% | {std:9.2f} | "
            f"{tv:6.2f} ({pv:6.2f}) | {lc:9.3f} | {time.time() - t:.0f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
