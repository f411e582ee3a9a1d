"""The sharded evaluate stage and ``relook merge``: a run's parts (``--shard i/N``) into its outputs.

``evaluate_part(conf, shard)`` scores only the shard's queries (``relook.sharding.shard_ids`` of the sorted
query ids), each alone (``eval.evaluate.per_query``), for the global shortlist and every ranking, into
``results.json.partI-of-N`` (JSON: query ids, per-query values, and the fingerprints of the shortlist and
rankings it scored). Every metric is a mean over queries of a per-query value, so ``merge_run`` recovers
``evaluate``'s numbers from the parts (the mean over all queries of the same values, in the dataset's
query order) and writes ``results.json`` through the same ``pipeline.write_results``.

``merge_run(conf)`` merges, in data-flow order, whatever parts lie in the run's folder: the feature
stores of every extractor (``merge.merge_store``), the rankings of every reranker (``merge.merge_ranking``)
and the evaluation parts; each after its partition check (every id once, none missing).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from relook import pipeline
from relook.errors import ConfigError, DataError
from relook.eval.evaluate import mean_of_queries, per_query
from relook.io import atomic_path, json_text
from relook.merge import merge_ranking, merge_store
from relook.sharding import Shard, check_partition, find_parts, part_path, shard_ids
from relook.types import Shortlist

GLOBAL_ROW = "global only"  # the row of the global shortlist in results.json
STAGES = ("extract", "rerank", "evaluate")


def _fingerprints(shortlist, rankings) -> dict[str, str]:
    return {
        GLOBAL_ROW: str(shortlist.meta.get("fingerprint")),
        **{label: str(r.meta.get("fingerprint")) for label, r in rankings.items()},
    }


def evaluate_part(conf: dict, shard: Shard) -> Path:
    """Per-query metrics of shard ``shard``'s queries -> ``<out>/results.json.partI-of-N`` (module docstring)."""

    dataset, shortlist, rankings = pipeline.evaluation_inputs(conf)
    qids = shard_ids(dataset.query_ids, shard)
    values = {GLOBAL_ROW: per_query(shortlist, dataset, qids)}
    values.update({label: per_query(r, dataset, qids) for label, r in rankings.items()})
    body = {
        "query_ids": qids,
        "fingerprints": _fingerprints(shortlist, rankings),
        "values": {m: {k: v.tolist() for k, v in vals.items()} for m, vals in values.items()},
    }
    out = part_path(Path(conf["out"]) / "results.json", shard)
    with atomic_path(out) as tmp:
        tmp.write_text(json_text(body))
    return out


def merge_evaluation(conf: dict) -> dict[str, Any] | None:
    """``results.json`` from the evaluation parts (module docstring); None when there are none."""

    path = Path(conf["out"]) / "results.json"
    parts = find_parts(path, "evaluate")
    if not parts:
        return None
    dataset, shortlist, rankings = pipeline.evaluation_inputs(conf)
    now = _fingerprints(shortlist, rankings)
    bodies = {}
    for part in parts:
        try:
            body = json.loads(part.read_text())
            bodies[part] = body if isinstance(body, dict) and isinstance(body.get("query_ids"), list) else None
        except (OSError, ValueError):
            bodies[part] = None
        if bodies[part] is None:
            raise DataError(f"{part}: not an evaluation part of relook; delete it and rerun its shard")
        if bodies[part].get("fingerprints") != now:
            raise DataError(
                f"{part}: scored another shortlist or other rankings than those in {conf['out']} now; "
                "rerun `relook evaluate --shard` for every shard"
            )
    check_partition({p: b["query_ids"] for p, b in bodies.items()}, dataset.query_ids)
    where = {q: (b, i) for b in bodies.values() for i, q in enumerate(b["query_ids"])}
    rows = {}
    for method in now:
        names = list(next(iter(bodies.values()))["values"][method])
        values = {
            name: [
                np.nan if (v := where[q][0]["values"][method][name][where[q][1]]) is None else v
                for q in dataset.query_ids
            ]
            for name in names
        }
        rows[method] = mean_of_queries(values)
    results = pipeline.write_results(conf, dataset, shortlist, rankings, rows)
    for part in parts:
        part.unlink()
    return results


def merge_run(conf: dict, stages: tuple[str, ...] = STAGES) -> list[str]:
    """Merge every part of the run ``conf`` in ``stages`` (module docstring); one line per merged output."""
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"merge: unknown stage {unknown[0]!r}; known: {', '.join(STAGES)}")
    done = []
    if "extract" in stages:
        dataset = pipeline.dataset_of(conf)
        for item in conf["extractors"]:
            qpath, gpath = pipeline.store_paths(conf, item["label"], dataset)
            jobs = [(gpath, dataset.gallery_ids)] + ([(qpath, dataset.query_ids)] if qpath != gpath else [])
            for path, ids in jobs:
                if find_parts(path, "extract") and merge_store(path, ids):
                    done.append(f"merged {path} ({len(ids)} images)")
    if "rerank" in stages:
        sl_path = Path(conf["out"]) / "shortlist.npz"
        for item in conf["rerankers"]:
            out = Path(conf["out"]) / "rankings" / f"{item['label']}.npz"
            if find_parts(out, "rerank"):
                qids = Shortlist.load(sl_path).query_ids
                if merge_ranking(out, qids):
                    done.append(f"merged {out} ({len(qids)} queries)")
    if "evaluate" in stages and merge_evaluation(conf) is not None:
        done.append(f"merged {Path(conf['out']) / 'results.json'}")
    return done
