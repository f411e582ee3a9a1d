"""The local-feature table of ``relook benchmark`` from two run folders over the same test splits.

The benchmark's rows are computed per run folder; on a shared 2-core machine the ALIKED rows (``gv``,
``gv-lightglue``) of the standard run and the DISK / XFeat rows of configs/benchmark.yaml were computed in
two runs (each resumable, neither redoing the other). A ranking is tied to the shortlist it reranked, and
two runs' shortlists carry different fingerprints (the global stores' bytes differ across processes), so
this script does not move rankings between folders: it checks that both runs have the same test queries,
in the same order, with the same global per-query AP (the same shortlist ranking, up to float noise of the
descriptors), then puts every row's per-query scores and timings into one table with the benchmark's own
``summarise`` / ``markdown`` (paired bootstrap to the global order, pooled over the room sets).

    PYTHONPATH=src python scripts/local_features_table.py --runs /work/bench_cache/base runs/bench_local \
        --sets geometry paris6k_subset --out results/benchmark_local
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from relook.benchmark import _run_meta, load_benchmark_config, scores_of
from relook.benchmark_report import write_outputs
from relook.benchmark_sets import describe_split
from relook.experiment import load_config

LABELS = ["gv", "gv-lightglue", "gv-disk-lightglue", "gv-xfeat-lighterglue", "gv-xfeat"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/benchmark.yaml")
    ap.add_argument("--runs", nargs="+", type=Path, required=True, help="benchmark out folders, first wins a row")
    ap.add_argument("--sets", nargs="+", default=["geometry", "paris6k_subset"])
    ap.add_argument("--out", type=Path, default=Path("runs/local_features"))
    args = ap.parse_args()
    from relook.benchmark_report import summarise

    bench = load_benchmark_config([args.config])
    bench["rows"] = [r for r in bench["rows"] if r["label"] in LABELS]
    per_set, splits, meta, settings = {}, {}, {}, {}
    for name in args.sets:
        merged: dict = {}
        meta[name] = {}
        for run in args.runs:
            folder = run / name / "test"
            conf = load_config([folder / "config.yaml"])  # the last run's config: its rerankers may be fewer
            conf["rerankers"] = [  # every benchmark row whose ranking this folder holds, with its settings
                {"label": r["label"], **r["reranker"]}
                for r in bench["rows"]
                if (folder / "rankings" / f"{r['label']}.npz").is_file()
            ]
            have = [r["label"] for r in conf["rerankers"]]
            res = scores_of(conf, [lab for lab in have if lab in LABELS and lab not in merged])
            info = res.pop("_info")
            if "global" in merged:
                same = np.allclose(merged["global"]["AP"], res["global"]["AP"], atol=1e-9)
                if not same or merged["_info"] != info:
                    raise SystemExit(f"{folder}: other queries or another global order than {args.runs[0]}")
            merged = {**res, **merged, "_info": info}
            meta[name][str(run)] = _run_meta(conf)
            settings.update({r["label"]: r for r in conf["rerankers"] if r["label"] in res})
        info = merged.pop("_info")
        spec = bench["sets"][name]
        splits[(name, "test")] = describe_split(spec, "test", bench["seed"]), info
        per_set[name] = {"role": spec.get("role", "ceiling"), "split": "test", "scores": merged}
    labels = [lab for lab in LABELS if all(lab in s["scores"] for s in per_set.values())]
    chosen = {lab: {k: v for k, v in settings[lab].items() if k != "label"} for lab in labels}
    absent = {lab: "not computed in the given runs" for lab in LABELS if lab not in labels}
    results = summarise(bench, per_set, labels, absent, chosen, {}, splits, meta)
    results["runs"] = [str(r) for r in args.runs]
    for path in write_outputs(results, args.out):
        print(f"wrote {path}")
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
