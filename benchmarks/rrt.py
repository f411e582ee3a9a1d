"""RRT top-100 reranking speed: pairs/s, ms per query, achieved GFLOP/s as a share of dense matmul.

Data: random descriptors (synthetic), weights: random init (the speed does not depend on them).
In the same run the machine's dense fp32 matmul GFLOP/s is measured, so every RRT number is also a
ratio of that limit. Rows:

* ``grid 7x7`` — the SOP / epipolar setting: 100 candidates of 49 locals, one forward pass (the reranker's
  ``score_pairs``: fused ``nn.TransformerEncoderLayer`` path under ``torch.inference_mode``, last layer
  for the CLS token only);
* ``grid 7x7, unfused`` — the same through the attention-returning path (reference implementation, all
  six layers in full);
* ``keypoints 500`` — the landmark setting (500 DELG-like locals + global token); timed on ``--kp-pairs``
  pairs and reported per 100 pairs.

Usage: python benchmarks/rrt.py [--threads 2] [--repeats 5] [--device cpu|cuda] [--dtype float32|bfloat16]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from relook.models.rrt import RRT
from relook.rerank.rrt import RRTReranker
from relook.types import ImageFeatures


def rrt_flops(n_pairs: int, seq_len: int, d: int = 128, ff: int = 1024, layers: int = 6,
              cls_only_last: bool = True) -> float:
    """2 x multiply-adds of the encoder as computed: per token and layer the projections (4 d^2) and the
    feed-forward (2 d ff), per layer the scores and weighted sum (2 L^2 d). With ``cls_only_last`` the
    last layer projects keys/values of every token but runs the rest for the CLS token only (what
    ``RRT.forward`` does when no attention maps are requested). Embeddings/classifier are negligible."""
    full = 2 * seq_len * (4 * d * d + 2 * d * ff) + 4 * seq_len * seq_len * d
    last = 2 * seq_len * 2 * d * d + 4 * seq_len * d + 2 * (2 * d * d + 2 * d * ff) if cls_only_last else full
    return float(n_pairs * ((layers - 1) * full + last))


def timeit(fn, repeats: int, sync=lambda: None) -> float:
    fn()
    sync()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def matmul_gflops(device: str, dtype: torch.dtype, repeats: int, sync) -> float:
    n = 2048 if device == "cpu" else 8192
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    t = timeit(lambda: a @ b, repeats, sync)
    return 2 * n ** 3 / t / 1e9


def feats(iid: str, n: int, rng: np.random.Generator, d_global: int = 0) -> ImageFeatures:
    return ImageFeatures(iid, local_desc=rng.standard_normal((n, 128)), keypoints=rng.random((n, 2)) * 224,
                         image_size=np.array([224, 224]), attention=rng.random(n),
                         scales=np.ones(n), global_desc=rng.standard_normal(d_global) if d_global else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--kp-pairs", type=int, default=10, help="pairs timed for the 500-keypoint row")
    ap.add_argument("--top-k", type=int, default=100)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = args.device
    sync = (lambda: torch.cuda.synchronize()) if dev.startswith("cuda") else (lambda: None)
    dtype = getattr(torch, args.dtype)
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    limit = matmul_gflops(dev, dtype, args.repeats, sync)
    print(f"# synthetic random descriptors, random-init RRT (6 layers, 4 heads, width 128, FF 1024); "
          f"device {dev}, {args.threads} threads, {args.dtype}")
    print(f"dense {args.dtype} matmul: {limit:8.1f} GFLOP/s (the limit below)")
    print(f"{'setting':<28}{'pairs':>6}{'ms/query':>11}{'pairs/s':>10}{'GFLOP':>8}{'GFLOP/s':>9}{'of limit':>9}"
          f"{'limit ms':>10}")

    def row(name, n_pairs, seq_len, seconds, cls_only=True):
        per_query = seconds * args.top_k / n_pairs
        fl = rrt_flops(args.top_k, seq_len, cls_only_last=cls_only)
        achieved = rrt_flops(n_pairs, seq_len, cls_only_last=cls_only) / seconds / 1e9
        print(f"{name:<28}{n_pairs:>6}{per_query * 1e3:>11.1f}{n_pairs / seconds:>10.0f}{fl / 1e9:>8.1f}"
              f"{achieved:>9.1f}{achieved / limit:>9.2f}{fl / limit / 1e6:>10.1f}")

    grid = RRTReranker(model=RRT(variant="sop"), device=dev, dtype=args.dtype)
    q = grid._pack([feats("q", 49, rng)])
    c = grid._pack([feats(f"g{i}", 49, rng) for i in range(args.top_k)])
    row("grid 7x7 (fused)", args.top_k, 100, timeit(lambda: grid.score_pairs(q, c), args.repeats, sync))
    from relook.models.rrt_inputs import index_side, model_kwargs

    qq = index_side(q, torch.zeros(args.top_k, dtype=torch.long, device=dev))

    def unfused():
        with torch.inference_mode(), torch.autocast(dev.split(":")[0], dtype=dtype, enabled=dtype != torch.float32):
            grid.model(**model_kwargs(qq, c), return_attention=True)

    row("grid 7x7 (unfused ref.)", args.top_k, 100, timeit(unfused, max(1, args.repeats // 2), sync), False)
    kp = RRTReranker(model=RRT(variant="landmark"), device=dev, dtype=args.dtype, batch_size=args.kp_pairs)
    qk = kp._pack([feats("q", 500, rng, 2048)])
    ck = kp._pack([feats(f"g{i}", 500, rng, 2048) for i in range(args.kp_pairs)])
    row("keypoints 500 + global", args.kp_pairs, 1004, timeit(lambda: kp.score_pairs(qk, ck), args.repeats, sync))
    print("# ms/query and GFLOP are for reranking the top-%d; 'limit ms' = GFLOP / matmul GFLOP/s; GFLOP counts "
          "what is computed (full 6-layer grid model: %.1f GFLOP)" % (args.top_k, rrt_flops(args.top_k, 100, cls_only_last=False) / 1e9))


if __name__ == "__main__":
    main()
