"""Per-query AP of a run's shortlist and rankings on a folder dataset (group = the image's folder), and the
paired bootstrap 95% interval of each ranking's mAP delta over the shortlist (10,000 resamples, seed 0).

    PYTHONPATH=src python experiments/paired_map_ci.py runs/ot_vit_ukbench_test ot-cross ot-relevancy chamfer
"""

from __future__ import annotations

import sys

import numpy as np

from relook.eval.metrics import average_precision, positive_ranks


def per_query(path: str) -> np.ndarray:
    d = np.load(path, allow_pickle=False)
    q, g, idx = d["query_ids"], d["gallery_ids"], d["indices"]
    group = np.array([x.rsplit("/", 2)[-2] for x in g])
    out = []
    for i, qid in enumerate(q):
        self_i = int(np.flatnonzero(g == qid)[0])
        pos = np.flatnonzero((group == qid.rsplit("/", 2)[-2]) & (np.arange(len(g)) != self_i))
        out.append(average_precision(*positive_ranks(idx[i], pos, [self_i])))
    return np.array(out)


def main() -> None:
    run, names = sys.argv[1], sys.argv[2:]
    base = per_query(f"{run}/shortlist.npz")
    resample = np.random.default_rng(0).integers(0, len(base), (10000, len(base)))
    print(f"{run}: global only mAP {100 * base.mean():.2f} ({len(base)} queries)")
    for name in names:
        ap = per_query(f"{run}/rankings/{name}.npz")
        d = ap - base
        lo, hi = np.percentile(d[resample].mean(1), [2.5, 97.5])
        print(
            f"  {name:24s} mAP {100 * ap.mean():.2f}  delta {100 * d.mean():+.2f} [95% CI {100 * lo:+.2f}, {100 * hi:+.2f}]"
        )


if __name__ == "__main__":
    main()
