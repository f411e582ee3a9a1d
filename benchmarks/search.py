"""Exact top-100 inner-product search: faiss IndexFlatIP vs a numpy brute-force reference.

Random unit vectors (no real data, no weights): 10k x 1536 gallery, 100 queries by default.
Prints wall time, speed ratio, peak extra memory of each, and whether the results agree.
Run: .venv/bin/python benchmarks/search.py [--gallery 10000 --queries 100 --dim 1536 --k 100]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import numpy as np

from relook.search import build_index, search


def numpy_topk(q: np.ndarray, g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = q @ g.T
    part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1, kind="stable")
    idx = np.take_along_axis(part, order, 1)
    return idx, np.take_along_axis(sims, idx, 1)


def _peak_child(method: str, args, conn) -> None:
    """In a fresh process: make the data, note the peak RSS, run ``method`` once, report the growth."""
    q, g = make_data(args)
    with open("/proc/self/clear_refs", "w") as f:  # Linux: reset the peak-RSS mark to the current RSS
        f.write("5")
    base = _status_kib("VmRSS")
    if method == "numpy":
        numpy_topk(q, g, args.k)
    else:
        search(build_index(g), q, args.k, [str(i) for i in range(len(q))], [str(i) for i in range(len(g))])
    conn.send((_status_kib("VmHWM") - base) * 1024)


def _status_kib(key: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))


def peak_bytes(method: str, args) -> int:
    """Peak resident-memory growth of one search (index build included for faiss), in bytes."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_peak_child, args=(method, args, child))
    proc.start()
    out = parent.recv()
    proc.join()
    return out


def make_data(args):
    rng = np.random.default_rng(0)
    g = rng.standard_normal((args.gallery, args.dim), dtype=np.float32)
    g /= np.sqrt(np.einsum("ij,ij->i", g, g))[:, None]  # no (G, D) temporary
    q = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q, g


def timed(fn, repeats: int = 5):
    best, out = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gallery", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--k", type=int, default=100)
    args = ap.parse_args()
    q, g = make_data(args)
    qids, gids = [str(i) for i in range(len(q))], [str(i) for i in range(len(g))]
    index = build_index(g)
    t_np, (ref_idx, _) = timed(lambda: numpy_topk(q, g, args.k))
    t_fa, sl = timed(lambda: search(index, q, args.k, qids, gids))
    m_np, m_fa = peak_bytes("numpy", args), peak_bytes("faiss", args)
    agree = float((sl.indices == ref_idx).mean())
    print(f"data: random unit vectors, gallery {args.gallery} x {args.dim}, {args.queries} queries, top-{args.k}")
    print(f"{'method':<22}{'time (ms)':>12}{'peak MiB':>12}{'speed-up':>10}")
    print(f"{'numpy brute force':<22}{t_np * 1e3:>12.1f}{m_np / 2**20:>12.1f}{1.0:>10.2f}")
    print(f"{'faiss IndexFlatIP':<22}{t_fa * 1e3:>12.1f}{m_fa / 2**20:>12.1f}{t_np / t_fa:>10.2f}")
    print(
        f"identical top-{args.k} ids: {agree:.4%}; time = best of 5 (faiss: search only, index prebuilt); "
        "peak MiB = resident-memory growth of one run in a fresh process (faiss: index build + search)"
    )


if __name__ == "__main__":
    main()
