"""How search cost and memory grow with the gallery: relook's on-disk IVF-PQ (``relook.ondisk``) against
faiss's exact ``IndexFlatIP`` measured in the same run, on synthetic descriptors.

Data: seeded synthetic unit vectors around 1,000 random centres (no real features exist at 1M here), in
chunks, never all in memory. Per (dim, gallery size) one child process (so its peak RSS is its own):

- build: sample ``train_size`` rows, train IVF-PQ, fill it in parts, merge on disk (seconds, peak RSS);
- search: 100 queries (noisy copies of gallery rows), ms/query with the lists memory-mapped;
- recall@100: share of the exact top-100 (chunked brute force, the reference) found in IVF-PQ's top-100;
- exact ms/query: chunked flat search over the same chunks (the reference's cost at that size).

    python benchmarks/scale.py                         # 1280-d and 128-d at 10k, 100k, 1M
    python benchmarks/scale.py --dims 128 --sizes 10000 100000 --out runs/scale

Prints one table, writes ``<out>/scale.json`` and ``<out>/scale.png`` (cost and memory against gallery size).
Threads: 1 (``--threads``), so the numbers compare across a loaded 2-core machine; the machine's load
average is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CENTRES = 1000


def chunks(n: int, d: int, chunk: int, seed: int):
    """The synthetic gallery in chunks: row i is centre c_i plus noise, L2-normalised; seeded per chunk."""
    centres = np.random.default_rng([seed, 0]).standard_normal((CENTRES, d)).astype(np.float32)
    for k, start in enumerate(range(0, n, chunk)):
        rng = np.random.default_rng([seed, 1, k])
        m = min(chunk, n - start)
        x = centres[rng.integers(CENTRES, size=m)] + 0.6 * rng.standard_normal((m, d)).astype(np.float32)
        yield x / np.linalg.norm(x, axis=1, keepdims=True)


def one(d: int, n: int, threads: int, workdir: Path, nq: int = 100, chunk: int = 50_000) -> dict:
    """Measure one (dim, size) point; runs in its own process."""
    import faiss

    from relook.ondisk import build_on_disk, ivfpq_conf, read_on_disk, sample_rows, train_ivfpq

    faiss.omp_set_num_threads(threads)
    conf = ivfpq_conf({"m": 64 if d % 64 == 0 else 16, "chunk": chunk, "nlist": int(min(1024, 4 * np.sqrt(n)))}, n)
    rng = np.random.default_rng(7)
    first = next(chunks(min(n, chunk), d, chunk, seed=0))
    q = first[rng.choice(len(first), nq, replace=False)] + 0.05 * rng.standard_normal((nq, d)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)

    t = time.perf_counter()
    sample = sample_rows(chunks(n, d, chunk, 0), conf["train_size"], n, conf["seed"])
    trained = train_ivfpq(sample, conf["nlist"], conf["m"], conf["nbits"], conf["seed"])
    del sample
    path = build_on_disk(chunks(n, d, chunk, 0), workdir, trained, conf["nprobe"])
    build_s = time.perf_counter() - t
    build_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    index = read_on_disk(path)
    index.search(q[:5], 100)  # warm-up
    t = time.perf_counter()
    _, found = index.search(q, 100)
    ivf_ms = 1e3 * (time.perf_counter() - t) / nq

    t = time.perf_counter()  # the reference: exact top-100 by chunked brute force
    best_s, best_i = np.full((nq, 0), -np.inf, np.float32), np.zeros((nq, 0), np.int64)
    for k, x in enumerate(chunks(n, d, chunk, 0)):
        flat = faiss.IndexFlatIP(d)
        flat.add(x)
        s, i = flat.search(q, min(100, len(x)))
        best_s, best_i = np.hstack([best_s, s]), np.hstack([best_i, i + k * chunk])
        order = np.argsort(-best_s, 1)[:, :100]
        best_s, best_i = np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)
    exact_ms = 1e3 * (time.perf_counter() - t) / nq  # includes regenerating the chunks: an upper bound
    recall = float(np.mean([len(set(a) & set(b)) / 100 for a, b in zip(found, best_i)]))
    disk_mb = sum(f.stat().st_size for f in workdir.iterdir() if f.is_file()) / 2**20
    return {
        "dim": d,
        "gallery": n,
        "nlist": conf["nlist"],
        "m": conf["m"],
        "nprobe": conf["nprobe"],
        "build_s": build_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "build_peak_rss_mb": build_rss,
        "index_disk_mb": disk_mb,
        "ivfpq_ms_per_query": ivf_ms,
        "exact_ms_per_query": exact_ms,
        "recall_at_100": recall,
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for d in sorted({r["dim"] for r in rows}):
        rs = sorted((r for r in rows if r["dim"] == d), key=lambda r: r["gallery"])
        n = [r["gallery"] for r in rs]
        axes[0].plot(n, [r["build_s"] for r in rs], "o-", label=f"{d}-d")
        axes[1].plot(n, [r["peak_rss_mb"] for r in rs], "o-", label=f"{d}-d")
        axes[2].plot(n, [r["ivfpq_ms_per_query"] for r in rs], "o-", label=f"IVF-PQ {d}-d")
        axes[2].plot(n, [r["exact_ms_per_query"] for r in rs], "x--", label=f"exact {d}-d")
        axes[3].plot(n, [r["recall_at_100"] for r in rs], "o-", label=f"{d}-d")
    titles = ["build time (s)", "peak RSS (MiB)", "ms / query", "recall of exact top-100"]
    for ax, title in zip(axes, titles):
        ax.set_xscale("log")
        ax.set_xlabel("gallery size")
        ax.set_title(title)
        ax.legend(fontsize=7)
    axes[0].set_yscale("log")
    axes[2].set_yscale("log")
    fig.suptitle("relook on-disk IVF-PQ vs exact search, synthetic unit vectors, 1 thread", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=200)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, nargs="+", default=[1280, 128])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("runs/scale"))
    ap.add_argument("--one", type=int, nargs=2, metavar=("DIM", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(one(*args.one, args.threads, Path(tmp))))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    rows = []
    for d in args.dims:
        for n in args.sizes:
            cmd = [sys.executable, __file__, "--one", str(d), str(n), "--threads", str(args.threads)]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode:
                print(f"{d}-d x {n}: failed ({done.stderr.strip().splitlines()[-1:]})")
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(
                f"{d:>5}-d {n:>9,}  build {r['build_s']:8.1f} s  RSS {r['peak_rss_mb']:7.0f} MiB  "
                f"disk {r['index_disk_mb']:7.1f} MiB  IVF-PQ {r['ivfpq_ms_per_query']:7.2f} ms/q  "
                f"exact {r['exact_ms_per_query']:8.2f} ms/q  recall@100 {r['recall_at_100']:.3f}",
                flush=True,
            )
            (args.out / "scale.json").write_text(json.dumps({"rows": rows, "load_average": os.getloadavg()}, indent=1))
            plot(rows, args.out / "scale.png")  # after every point: a long run shows what it has so far
    load = os.getloadavg()
    print(
        f"data: synthetic unit vectors ({CENTRES} centres, seeded); index: relook.ondisk IVF-PQ "
        f"(nlist <= 1024, PQ 64x8 / 16x8, nprobe 16), reference: faiss IndexFlatIP; "
        f"{args.threads} thread(s); load average {load[0]:.1f} on {os.cpu_count()} cores"
    )
    (args.out / "scale.json").write_text(json.dumps({"rows": rows, "load_average": load}, indent=1))
    if rows:
        plot(rows, args.out / "scale.png")
        print(f"wrote {args.out / 'scale.json'} and {args.out / 'scale.png'}")


if __name__ == "__main__":
    main()
