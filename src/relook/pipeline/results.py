"""The evaluate stage: metrics of the shortlist and of every ranking -> ``results.json`` (with what a reader
needs before the numbers: data, sizes, weights, provenance, timings, intervals) and the printed table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from relook.confidence import GLOBAL, calibrate_run, write_calibration
from relook.environment import environment, git_commit
from relook.errors import DataError
from relook.eval.evaluate import check_has_positives, format_table
from relook.eval.evaluate import evaluate as score
from relook.eval.intervals import delta_intervals
from relook.experiment import DEFAULTS as CONFIG_DEFAULTS
from relook.io import atomic_path, json_text
from relook.pipeline.reranking import stale_reason
from relook.pipeline.runs import _same_items, dataset_of, read_timings, store_paths
from relook.pipeline.shortlist import check_shortlist
from relook.types import Ranking, Shortlist


def evaluate(conf: dict) -> dict[str, Any]:
    """Metrics of the global shortlist and of every ranking -> ``results.json``; returns the results.

    A dataset where no query has a positive raises ``DataError`` (no metric is defined); a metric that is
    undefined for one protocol setting (e.g. no query has a Hard positive) is NaN in the returned dict,
    ``null`` in ``results.json`` and ``-`` in the table.
    """
    dataset, shortlist, rankings = evaluation_inputs(conf)
    rows = {"global only": score(shortlist, dataset)}
    rows.update({label: score(ranking, dataset) for label, ranking in rankings.items()})
    return write_results(conf, dataset, shortlist, rankings, rows)


def evaluation_inputs(conf: dict) -> tuple[Any, Shortlist, dict[str, Ranking]]:
    """(dataset, shortlist, {label: ranking}) that ``evaluate`` scores, after its checks: a dataset with
    positives, a shortlist and rankings made from the stores and settings as they are now."""
    dataset = dataset_of(conf)
    check_has_positives(dataset)
    out_dir = Path(conf["out"])
    sl_path = out_dir / "shortlist.npz"
    if not sl_path.exists():
        raise DataError(f"{sl_path}: no shortlist; run `relook search` first")
    shortlist = Shortlist.load(sl_path)
    check_shortlist(conf, dataset, shortlist, sl_path)
    rankings, stale = {}, []
    for item in conf["rerankers"]:
        path = out_dir / "rankings" / f"{item['label']}.npz"
        if path.exists():
            rankings[item["label"]] = ranking = Ranking.load(path)
            why = stale_reason(conf, item, ranking.meta, shortlist)
            if why:
                stale.append((item["label"], path, why))
    if stale:
        labels = ",".join(s[0] for s in stale)
        raise DataError(
            f"{stale[0][1]}: {stale[0][2]}"
            + (f" (also {', '.join(str(s[1]) for s in stale[1:])})" if len(stale) > 1 else "")
            + f"; run `relook rerank --methods {labels}` to redo "
            f"{'them' if len(stale) > 1 else 'it'} (or delete the file)"
        )
    return dataset, shortlist, rankings


def write_results(
    conf: dict, dataset, shortlist: Shortlist, rankings: dict[str, Ranking], rows: dict[str, dict]
) -> dict[str, Any]:
    """``results.json`` from the metric ``rows`` ("global only" and one per ranking label); returns it."""

    out_dir = Path(conf["out"])
    timing = {label: _seconds(r.meta.get("seconds_per_query")) for label, r in rankings.items()}
    meta = {"global only": shortlist.meta, **{label: r.meta for label, r in rankings.items()}}
    results = {
        "dataset": f"{dataset.name} ({dataset.root})",
        "git": git_commit(),
        "metrics": rows,
        "seconds_per_query": timing,
        "provenance": provenance(meta),
        "data_note": " ".join(x for x in (conf.get("note", ""), dataset.info.get("note", "")) if x),
        "run": run_summary(conf, dataset, shortlist, meta),
        "timings": read_timings(out_dir),
        "environment": environment(),  # date, relook version, commit, hardware of this evaluation
        "intervals": delta_intervals({"global only": shortlist, **rankings}, dataset),  # mAP change, 95 % CI
    }

    with atomic_path(out_dir / "results.json") as tmp:
        tmp.write_text(json_text(results, indent=2))

    write_calibration(out_dir, calibrate_run(dataset, {GLOBAL: shortlist, **rankings}))
    return results


def _seconds(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def is_random_weights(record: str) -> bool:
    """Whether a store's one-line weights record names a random initialisation (no trained weights)."""
    return "random init" in record.lower()


def run_summary(conf: dict, dataset, shortlist: Shortlist, meta: dict[str, dict]) -> dict[str, Any]:
    """What a reader needs before the numbers: data, sizes, shortlist and reranked lengths (and whether
    they were clamped to the gallery), each extractor's weights record and seed, and caveats.

    ``meta``: each method's ranking metadata (``top_k`` as the reranker used it). Extractor records come
    from the gallery stores' provenance, so they describe the features actually scored.
    """
    from relook.rerank.base import DEFAULTS as RERANK_DEFAULTS  # lazy (start-up): loads every reranker
    from relook.rerank.base import RERANKERS

    # lazy (start-up): loads h5py; relook's entry points import this module
    from relook.store import FeatureStore

    requested = int(conf["shortlist"].get("k", CONFIG_DEFAULTS["shortlist"]["k"]))
    extractors, notes = {}, []
    for item in conf["extractors"]:
        _, gpath = store_paths(conf, item["label"], dataset)
        store_meta = {}
        if gpath.exists():
            with FeatureStore(gpath, "r") as gs:
                store_meta = gs.meta
        weights = store_meta.get("weights", "")
        seed = store_meta.get("extractor.seed", item.get("seed", ""))
        head = f" + {store_meta['head']}" if store_meta.get("head") else ""  # `relook train global`'s head
        extractors[item["label"]] = {
            "name": item["name"],
            "weights": (weights or "no learned weights") + head,
            "seed": str(seed),
        }
        if weights and is_random_weights(weights):
            notes.append(
                f"extractor {item['label']} has random weights ({weights}): its numbers say nothing "
                "about a trained model"
            )
    rerankers = {}
    for item in conf["rerankers"]:
        m = meta.get(item["label"], {})
        default = getattr(RERANKERS.get(item["name"]), "default_conf", {}) if item["name"] in RERANKERS else {}
        top_k = int(m.get("top_k") or item.get("top_k", default.get("top_k", RERANK_DEFAULTS["top_k"])))
        rerankers[item["label"]] = {
            "name": item["name"],
            "top_k": top_k,
            "top_k_used": min(top_k, shortlist.k),
            **({"seed": str(item["seed"])} if "seed" in item else {}),
        }
    info = dataset.info
    synthetic = (
        bool(info.get("synthetic"))
        or "synthetic" in " ".join(str(x) for x in (conf.get("note", ""), info.get("note", ""))).lower()
    )
    if synthetic:
        notes.append("synthetic data: these numbers are not a benchmark on real photos")
    return {
        "dataset": dataset.name,
        "root": str(dataset.root),
        "split": split_name(conf, dataset),
        "queries": len(dataset.query_ids),
        "gallery": len(dataset.gallery_ids),
        "shortlist_k": requested,
        "shortlist_k_used": int(shortlist.k),
        "clamped": int(shortlist.k) < requested,
        "extractors": extractors,
        "rerankers": rerankers,
        "synthetic": synthetic,
        "notes": notes,
    }


def split_name(conf: dict, dataset) -> str:
    """The split the numbers are on: the configured one, else the reader's, else what the protocol makes
    of the whole dataset (never "None")."""
    split = conf["dataset"].get("split", dataset.info.get("split"))
    if split not in (None, "", "None"):
        return str(split)
    if _same_items(dataset):
        return "all images (no split: each image queries all the others)"
    return "the dataset's own query and gallery sets (no split)"


def _describe(meta: dict, prefix: str) -> str:
    """``cnn_local(arch=resnet50, pretrained=False)`` from a store's provenance keys under ``prefix``."""
    name = meta.get(f"{prefix}.extractor")
    if not name:
        return ""
    keys = ("arch", "backbone", "model", "pretrained", "weights", "checkpoint")
    if meta.get(f"{prefix}.weights"):  # the resolved weights record says more than the option that named it
        keys = tuple(k for k in keys if k not in ("weights", "pretrained"))
    opts = [
        f"{k}={meta[f'{prefix}.extractor.{k}']}"
        for k in keys
        if meta.get(f"{prefix}.extractor.{k}") not in (None, "None", "")
    ]
    if meta.get(f"{prefix}.weights"):
        opts.append(f"weights={meta[f'{prefix}.weights']}")
    if meta.get(f"{prefix}.head"):  # a learned head of `relook train global` (projection: PATH)
        opts.append(f"head={meta[f'{prefix}.head']}")
    return f"{name}({', '.join(opts)})" if opts else name


def provenance(meta: dict[str, dict]) -> dict[str, str]:
    """Per method: which features, weights and checkpoint produced it (from the files' metadata)."""
    # lazy (start-up): loads cv2, faiss, torch; relook's entry points import this module
    from relook.rerank.provenance import describe_reranker

    out = {}
    for method, m in meta.items():
        parts = [f"shortlist from {_describe(m, 'global')}"]
        if _describe(m, "features"):
            parts.append(f"reranker reads {_describe(m, 'features')}")
        if m.get("reranker"):  # a ranking: its matcher, weights, thresholds, top-k, checkpoint with sha256
            parts.append(describe_reranker(m) or f"reranker {m['reranker']} (settings not recorded)")
        if m.get("checkpoint") and not m.get("reranker.checkpoint"):
            parts.append(f"checkpoint {m['checkpoint']}")
        out[method] = "; ".join(p for p in parts if p)
    return out


def results_table(results: dict) -> str:
    extra = {
        m: {"s/query": "-" if t is None or t != t else f"{t:.3f}"} for m, t in results["seconds_per_query"].items()
    }
    lines = [
        f"data: {results['dataset']}" + (f" [{results['data_note']}]" if results.get("data_note") else ""),
        format_table(results["metrics"], extra),
        f"git commit: {results['git']}",
    ]
    lines += [f"  {m}: {p}" for m, p in results["provenance"].items() if p]
    for m, ci in (results.get("intervals") or {}).items():  # paired bootstrap over queries (eval.intervals)
        if ci.get("delta") is not None and ci["delta"] == ci["delta"]:
            lines.append(
                f"  {m}: {ci['metric']} change vs global {100 * ci['delta']:+.2f} points, 95% CI "
                f"[{100 * ci['lo']:+.2f}, {100 * ci['hi']:+.2f}] (paired bootstrap over {ci['queries']} queries)"
            )
    return "\n".join(lines)
