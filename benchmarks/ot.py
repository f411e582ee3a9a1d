"""Benchmark: batched Sinkhorn (relook.rerank.sinkhorn) vs a POT ``ot.sinkhorn`` loop over pairs.

One shortlist of ``--k`` candidates per query (``--queries`` queries), 7x7 = 49 patches per image, D = 128,
cosine cost, eps = 0.05, exactly ``--iters`` iterations on both sides (POT: stopThr = 0), so the two give
the same plans; the max abs difference of the plans and of S_struct is printed next to the times.
Each round runs POT, float64 and float32 in turn; the best of ``--repeat`` rounds is printed as wall
time and as process CPU time (robust to other processes on a shared machine when ``--threads 1``).
Data: random unit vectors (synthetic, no model weights) -- this measures the solver only; or, with
``--store``, real patch tokens and relevancy marginals of a ``vit_tokens`` feature store (e.g. pretrained
EfficientNet-Lite0 7x7 tokens of real photos): query i against the next ``--k`` images of the store, cosine
cost of the L2-normalised tokens (range up to 2, so cost / eps reaches 40 at eps 0.05 and 400 at 0.005, where
a plain float32 scaling overflows). A plan with a NaN is counted and printed.

    PYTHONPATH=src python benchmarks/ot.py --threads 1
    PYTHONPATH=src python benchmarks/ot.py --threads 1 --store run/features/vit_tokens/gallery.h5 --eps 0.005
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

# this file is named ot.py: keep its folder off the path so that `import ot` finds POT
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
import numpy as np  # noqa: E402
import ot  # noqa: E402
import torch  # noqa: E402

from relook.rerank.sinkhorn import partial_sinkhorn  # noqa: E402


def _best_interleaved(fns, repeat):
    """Best wall and process-CPU time of each function over ``repeat`` rounds, the functions taking turns in
    every round (so that load from other processes on a shared machine hits all of them alike), and their
    outputs. CPU time is not inflated when other processes preempt this one (with 1 thread it is the work
    done); with several threads it adds theirs up."""
    wall, cpu, outs = [math.inf] * len(fns), [math.inf] * len(fns), [None] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t, c = time.perf_counter(), time.process_time()
            outs[i] = fn()
            wall[i] = min(wall[i], time.perf_counter() - t)
            cpu[i] = min(cpu[i], time.process_time() - c)
    return wall, cpu, outs


def _store_pairs(path: str, queries: int, k: int):
    """(query tokens, candidate tokens, query marginals, candidate marginals, data line) for query i of the
    store against the next ``k`` images: real tokens (L2-normalised) and their relevancy marginals."""
    from relook.store import FeatureStore

    with FeatureStore(path, "r") as store:
        ids = store.ids()
        if len(ids) < queries + k:
            sys.exit(f"error: {path}: {len(ids)} images, need --queries + --k = {queries + k}")
        feats = {i: store.read(i, ["patch_tokens", "relevancy"]) for i in ids[: queries + k]}
        meta = store.meta
    tok = {
        i: torch.nn.functional.normalize(
            torch.from_numpy(f.patch_tokens.reshape(-1, f.patch_tokens.shape[-1])).double(), dim=-1
        )
        for i, f in feats.items()
    }
    rel = {i: torch.from_numpy(f.relevancy).double() for i, f in feats.items()}
    pairs = [(ids[q], ids[q + 1 + j]) for q in range(queries) for j in range(k)]
    fq, fg = torch.stack([tok[a] for a, _ in pairs]), torch.stack([tok[c] for _, c in pairs])
    mu, nu = torch.stack([rel[a] for a, _ in pairs]), torch.stack([rel[c] for _, c in pairs])
    mu, nu = mu / mu.sum(1, keepdim=True), nu / nu.sum(1, keepdim=True)
    weights = meta.get("weights", meta.get("weights.what", "?"))
    return fq, fg, mu, nu, f"real tokens + relevancy of {path} (weights: {weights})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=1)
    ap.add_argument("--k", type=int, default=100, help="shortlist length")
    ap.add_argument("--patches", type=int, default=49)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--eps", type=float, default=0.05)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", help="a vit_tokens feature store: real tokens and relevancy instead of random data")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Sinkhorn did not converge")
    g = torch.Generator().manual_seed(args.seed)
    b, p = args.queries * args.k, args.patches
    if args.store:
        fq, fg, mu, nu, data = _store_pairs(args.store, args.queries, args.k)
        p = fq.shape[1]
    else:
        fq = torch.nn.functional.normalize(torch.randn(b, p, args.dim, generator=g, dtype=torch.float64), dim=-1)
        fg = torch.nn.functional.normalize(torch.randn(b, p, args.dim, generator=g, dtype=torch.float64), dim=-1)
        mu = torch.rand(b, p, generator=g, dtype=torch.float64) + 0.05
        nu = torch.rand(b, p, generator=g, dtype=torch.float64) + 0.05
        mu, nu = mu / mu.sum(1, keepdim=True), nu / nu.sum(1, keepdim=True)
        data = "random unit vectors (synthetic, no weights)"
    sim = fq @ fg.transpose(1, 2)
    sim_np, mu_np, nu_np = sim.numpy(), mu.numpy(), nu.numpy()

    print(
        f"# {args.queries} query x {args.k} candidates = {b} pairs, {p}x{p} patches, eps={args.eps}, "
        f"{args.iters} iterations, torch threads={args.threads}; data: {data}"
    )
    print(
        f"{'a':>4} {'method':<32} {'wall (ms)':>9} {'speed-up':>8} {'CPU (ms)':>9} {'speed-up':>8} "
        f"{'max|dT|':>8} {'max|dS_struct|':>14} {'NaN plans':>9}"
    )
    for mass in (1.0, 0.9):

        def pot_loop(mass: float = mass):
            plans = np.empty((b, p, p))
            for i in range(b):
                c, x, y = 1 - sim_np[i], mu_np[i], nu_np[i]
                if mass < 1:
                    c = np.pad(c, ((0, 1), (0, 1)))
                    c[-1, -1] = 1e4
                    x, y = np.append(x, 1 - mass), np.append(y, 1 - mass)
                t = ot.sinkhorn(x, y, c, args.eps, numItermax=args.iters, stopThr=0.0)
                plans[i] = t[:p, :p]
            return plans

        dtypes = (torch.float64, torch.float32)
        inputs = [(1 - sim.to(dt), mu.to(dt), nu.to(dt)) for dt in dtypes]
        ours = [
            lambda c=c, m=m, n=n, mass=mass: partial_sinkhorn(c, m, n, mass, args.eps, args.iters) for c, m, n in inputs
        ]
        partial_sinkhorn(*inputs[0], mass, args.eps, args.iters)  # warm-up (first-call allocations)
        wall, cpu, outs = _best_interleaved([pot_loop, *ours], args.repeat)
        ref = outs[0]
        s_ref = (sim_np * ref).sum((1, 2))
        names = ["POT ot.sinkhorn, loop over pairs"] + [f"relook batched, {str(dt)[6:]}" for dt in dtypes]
        for name, t_w, t_c, plan in zip(names, wall, cpu, outs):
            plan = plan if isinstance(plan, np.ndarray) else plan.double().numpy()
            nan = int(np.isnan(plan).any((1, 2)).sum())
            d_t = np.nanmax(np.abs(plan - ref)) if nan < b else math.nan
            d_s = np.nanmax(np.abs((sim_np * plan).sum((1, 2)) - s_ref)) if nan < b else math.nan
            print(
                f"{mass:>4} {name:<32} {1e3 * t_w:>9.1f} {wall[0] / t_w:>7.1f}x {1e3 * t_c:>9.1f} "
                f"{cpu[0] / t_c:>7.1f}x {d_t:>8.1e} {d_s:>14.1e} {nan:>9d}"
            )


if __name__ == "__main__":
    main()
