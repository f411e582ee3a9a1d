"""Mechanism probe: can the shipped RRT architecture reproduce a score of its own inputs at all, and how fast?

Cached inputs only (``scripts/rrt_ukbench_features.py``: pretrained EfficientNet-Lite0 ImageNet, GeM
global 1280-d + 7x7 raw 1280-d tokens of UKBench train objects with 6 augmented views, and of the val
objects), held as tensors, so a step costs only the transformer. The RRT is the one of
``scripts/rrt_ukbench.py`` (``MODEL_CONF``); it is regressed (MSE) onto the z-score of a target over
(anchor, top-100 neighbour) pairs, one random stored view per image and step:

- ``teacher``: global cosine + w * Chamfer of the same tokens (``relook.train.teacher``, Eq. T2);
- ``global``: the global cosine alone (can RRT reproduce the one number its global tokens carry?);
- ``chamfer``: the Chamfer similarity alone.

Fidelity (``fidelity``), on fixed pairs: the top-30 of 20 seeded train anchors (view 0, i.e. training
images) and of 20 val anchors (held-out objects): pooled Pearson, the within-query Pearson (per-query means
removed: the part that decides a reranking) and the mean per-query Spearman. A replacing reranker needs a
within-query correlation above ~0.98 to stay level with the global order (docs/findings/rrt-ukbench.md, point 1).

    OMP_NUM_THREADS=1 PYTHONPATH=src python scripts/rrt_fidelity_probe.py --target global \
        --steps 1000 --eval-at 0,250,500,1000 --out runs/probe/global.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, spearmanr

from relook.models.rrt import RRT
from relook.models.rrt.checkpoint import load_rrt, save_rrt
from relook.train.rrt import global_neighbours, within_anchor_mse
from relook.train.teacher import chamfer_similarity, teacher_score

MODEL_CONF = {
    "variant": "sop",
    "d_local": 1280,
    "d_global": 1280,
    "normalize_inputs": True,
    "position_encoding": "none",
}


def target_fn(name: str, w: float = 1.0):
    """(gq (B, D), gc, tq (B, n, d), tc) -> (B,) float32 target scores."""
    if name == "teacher":
        return lambda gq, gc, tq, tc: teacher_score(gq, gc, tq, tc, weight=w)
    if name == "global":
        return lambda gq, gc, tq, tc: (F.normalize(gq.float(), dim=-1) * F.normalize(gc.float(), dim=-1)).sum(-1)
    if name == "chamfer":
        return lambda gq, gc, tq, tc: chamfer_similarity(tq, tc)
    raise ValueError(name)


def eval_groups(G: torch.Tensor, n_anchor: int, k: int, seed: int) -> list[tuple[int, np.ndarray]]:
    """(anchor, its global top-k) for ``n_anchor`` seeded anchors of view 0."""
    nn_ = global_neighbours(G[:, 0].float().numpy(), k)
    anchors = np.random.default_rng(seed).permutation(len(G))[:n_anchor]
    return [(int(a), nn_[a]) for a in anchors]


@torch.no_grad()
def fidelity(model: RRT, G, T, groups, tfn, view: int = 0) -> dict:
    model.eval()
    out, tgt = [], []
    for a, nb in groups:
        B = len(nb)
        gq, tq = G[[a] * B, view].float(), T[[a] * B, view].float()
        gc, tc = G[nb, view].float(), T[nb, view].float()
        out.append(model(q_local=tq, c_local=tc, q_global=gq, c_global=gc).logits.float().numpy())
        tgt.append(tfn(gq, gc, tq, tc).numpy())
    model.train()
    a, b = np.concatenate(out), np.concatenate(tgt)
    ac = np.concatenate([o - o.mean() for o in out])
    bc = np.concatenate([t - t.mean() for t in tgt])
    return {
        "pearson": float(pearsonr(a, b).statistic),
        "within_pearson": float(pearsonr(ac, bc).statistic) if ac.std() > 0 else 0.0,
        "spearman_q": float(np.nanmean([spearmanr(o, t).statistic for o, t in zip(out, tgt)])),
        "logit_std_q": float(np.mean([o.std() for o in out])),
        "target_std_q": float(np.mean([t.std() for t in tgt])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path("runs/rrt_ukbench"))
    ap.add_argument("--target", choices=["teacher", "global", "chamfer"], default="teacher")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--pairs", type=int, default=32, help="pairs per step")
    ap.add_argument(
        "--loss",
        choices=["mse", "within"],
        default="mse",
        help="mse: onto the z-scored target over all pairs (round 1-2); within: onto the target with each "
        "anchor's mean removed, scaled by the mean within-anchor std (only the part a reranking uses)",
    )
    ap.add_argument("--per-anchor", type=int, default=8, help="within: neighbours per anchor in a step")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--wd", type=float, default=4e-4)
    ap.add_argument("--warmup", type=int, default=0, help="linear lr warm-up steps (0 = none, official)")
    ap.add_argument("--norm-first", action="store_true", help="pre-LayerNorm instead of the official post-LN")
    ap.add_argument(
        "--no-normalize", action="store_true", help="raw projected tokens (official SOP) instead of L2-normalised"
    )
    ap.add_argument("--views", type=int, default=7, help="stored views drawn from (1 = originals only)")
    ap.add_argument("--eval-at", default="0,250,500,1000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", type=Path, help="continue from this probe checkpoint (weights only)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    z = np.load(a.work / "features.npz")
    G = torch.from_numpy(z["train_global"][:, : a.views])  # (N, V, 1280) fp16
    T = torch.from_numpy(z["train_tokens"][:, : a.views])  # (N, V, 49, 1280) fp16
    Gv, Tv = torch.from_numpy(z["val_global"]), torch.from_numpy(z["val_tokens"])
    nbr = global_neighbours(G[:, 0].float().numpy(), 100)
    tfn = target_fn(a.target)
    rng = np.random.default_rng(a.seed)
    # standardisation over the training top-100 pairs of 64 anchors, view 0 (as relook.train.rrt.teacher_stats)
    with torch.no_grad():
        v = torch.cat(
            [
                tfn(G[[i] * 100, 0].float(), G[nbr[i], 0].float(), T[[i] * 100, 0].float(), T[nbr[i], 0].float())
                for i in rng.permutation(len(G))[:64]
            ]
        )
    mu, sd = float(v.mean()), float(v.std())
    # mean within-anchor std of the target (top-100); unbiased, where relook.train.rrt uses the population std
    # (0.5 % apart at 100 pairs: a scale of the target, no effect on the correlations reported)
    sd_within = float(v.view(-1, 100).std(dim=1).mean())
    model = RRT(**{**MODEL_CONF, "normalize_inputs": not a.no_normalize}, norm_first=a.norm_first)
    if a.init:
        model.load_state_dict(load_rrt(a.init).state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.wd)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / a.warmup) if a.warmup else 1.0)
    tr_groups, va_groups = eval_groups(G, 20, 30, 1), eval_groups(Gv, 20, 30, 1)
    evals = sorted(int(s) for s in a.eval_at.split(","))
    rec = {"args": {k: str(v) for k, v in vars(a).items()}, "target_mean": mu, "target_std": sd, "target_std_within": sd_within,
           "curve": []}  # fmt: skip
    a.out.parent.mkdir(parents=True, exist_ok=True)
    N, V = G.shape[:2]
    losses, t0, t_train = [], time.time(), 0.0
    for step in range(a.steps + 1):
        if step in evals:
            r = {
                "step": step,
                "train": fidelity(model, G, T, tr_groups, tfn),
                "val": fidelity(model, Gv, Tv, va_groups, tfn),
                "mse": float(np.mean(losses[-100:])) if losses else None,
                "s_per_step": t_train / max(step, 1),
            }
            rec["curve"].append(r)
            print(json.dumps(r), flush=True)
            a.out.write_text(json.dumps(rec, indent=1))
        if step == a.steps:
            save_rrt(a.out.with_suffix(".pt"), model, epoch=1, train_conf_json=json.dumps(rec["args"]), log=[])
            break
        ts = time.time()
        if a.loss == "within":  # a.pairs // per_anchor anchors, each with per_anchor distinct neighbours
            n_anc = max(1, a.pairs // a.per_anchor)
            anc = np.repeat(rng.integers(0, N, n_anc), a.per_anchor)
            cand = np.concatenate(
                [nbr[x, rng.choice(nbr.shape[1], a.per_anchor, replace=False)] for x in anc[:: a.per_anchor]]
            )
        else:
            anc = rng.integers(0, N, a.pairs)
            cand = nbr[anc, rng.integers(0, nbr.shape[1], a.pairs)]
        va, vc = torch.from_numpy(rng.integers(0, V, len(anc))), torch.from_numpy(rng.integers(0, V, len(anc)))
        if a.loss == "within":  # one view of the anchor across its neighbours
            va = torch.from_numpy(np.repeat(rng.integers(0, V, len(anc) // a.per_anchor), a.per_anchor))
        gq, tq = G[anc, va].float(), T[anc, va].float()
        gc, tc = G[cand, vc].float(), T[cand, vc].float()
        logit = model(q_local=tq, c_local=tc, q_global=gq, c_global=gc).logits.float()
        with torch.no_grad():
            t = tfn(gq, gc, tq, tc)
        if a.loss == "within":  # Eq. W1 of relook.train.rrt: each anchor group's mean removed from both sides
            groups = torch.arange(len(anc) // a.per_anchor).repeat_interleave(a.per_anchor)
            loss = within_anchor_mse(logit, t / sd_within, groups)
        else:
            loss = F.mse_loss(logit, (t - mu) / sd)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        t_train += time.time() - ts
    print("done", a.out, f"{time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
