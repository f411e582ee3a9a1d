""" "No confident match": each method's score threshold, calibrated on a finished run's own labelled data.

After ``evaluate``, every method of a run (the global order and each reranker) has ranked every query's
shortlist, and the dataset's groups say which candidates are the same object: the labelled scores
``relook.eval.calibration.calibrate`` needs. Only the candidates the method rescored count (a
reranker's first ``reranked_top_k``; the whole shortlist for the global order): past them the scores
are shifted global ones, not the method's own; ignored / junk candidates count as neither.

The verdict "no confident match" is taken on a query's *best* hit, so the threshold is calibrated on
per-query maxima, one pair per query (leave-group-out):

* positive: the query's best score among candidates of its own group (its top hit when its object is
  in the gallery);
* negative: its best score among candidates of other groups (its top hit if its object were not).

Calibrating on single candidates instead would judge the best of ~K wrong candidates by a threshold set
for a typical one: on the Kodak warped-views run (tests/test_confidence.py) that threshold let 38 % of
the queries' best wrong candidates pass for gv; the per-query one lets none pass (in-sample). The
single-candidate rates at the chosen threshold are kept too (``candidate_tpr``, ``candidate_fpr``).

The thresholds go to ``<run>/calibration.json`` beside ``results.json``, each with its rates and the
fingerprint of the ranking it came from, so a reranked run is recalibrated, never judged by an old
threshold. The rates are in-sample (the threshold was chosen on the same scores): optimistic on a
small run.

``confidence(run_dir, method, score) -> (threshold, confident)`` is what ``relook query`` (and a pair
command) asks.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from relook.errors import DataError
from relook.eval.calibration import calibrate, is_confident
from relook.eval.evaluate import align
from relook.io import atomic_path, json_text
from relook.types import Ranking, Shortlist

FILE = "calibration.json"
GLOBAL = "global only"  # the global order's name in results.json (``relook query`` calls it "global")
RULE = "balanced_accuracy"


def method_key(method: str | None) -> str:
    """The calibration entry of a query method: None / "global" -> "global only", a label -> itself."""
    return GLOBAL if method in (None, "global", GLOBAL) else str(method)


def method_scores(ranking: Shortlist, dataset, top_k: int | None = None) -> dict[str, np.ndarray]:
    """Labelled scores of ``ranking``'s first ``top_k`` candidates per query (all when None), by
    ``dataset``'s ground truth: ``positive`` / ``negative`` (every same-group / other-group candidate's
    score) and ``best_positive`` / ``best_negative`` ((Q,) per-query maxima, NaN where a query has none)."""

    idx = align(ranking, dataset)
    qpos = {q: i for i, q in enumerate(ranking.query_ids)}
    scores = ranking.scores[[qpos[q] for q in dataset.query_ids]].astype(np.float64)
    positives, ignore = dataset.ground_truth("medium" if dataset.protocol == "revisitop" else None)
    n = idx.shape[1] if top_k is None else min(int(top_k), idx.shape[1])
    pos, neg = [np.zeros(0)], [np.zeros(0)]
    best = {"best_positive": np.full(len(idx), np.nan), "best_negative": np.full(len(idx), np.nan)}
    for q in range(len(idx)):
        row, s = idx[q, :n], scores[q, :n]
        keep = (row >= 0) & ~np.isin(row, np.asarray(ignore[q], np.int64)) & np.isfinite(s)
        is_pos = np.isin(row, np.asarray(positives[q], np.int64))
        for values, kind, out in ((s[keep & is_pos], "best_positive", pos), (s[keep & ~is_pos], "best_negative", neg)):
            out.append(values)
            if values.size:
                best[kind][q] = values.max()
    return {"positive": np.concatenate(pos), "negative": np.concatenate(neg), **best}


def calibrate_run(dataset, rankings: Mapping[str, Shortlist]) -> dict[str, Any]:
    """The calibration record of every method in ``rankings`` (``{"global only": shortlist, label:
    ranking}``): the threshold on per-query best scores (module docstring); a method without a query
    that has both a positive and a negative candidate gets ``threshold: None`` and the reason."""
    methods = {}
    for name, ranking in rankings.items():
        top_k = ranking.k if name == GLOBAL else min(int(ranking.meta.get("reranked_top_k") or ranking.k), ranking.k)
        sc = method_scores(ranking, dataset, top_k)
        entry: dict[str, Any] = {"top_k": top_k, "made_from": str(ranking.meta.get("fingerprint", ""))}
        try:
            cal = calibrate(sc["best_positive"], sc["best_negative"], RULE)
        except ValueError:
            missing = "same-group" if not np.isfinite(sc["best_positive"]).any() else "other-group"
            entry.update(
                threshold=None,
                error=f"no query has a {missing} candidate in its first {top_k}: nothing to calibrate against",
            )
        else:
            entry.update(cal.as_dict())
            for kind, values in (("candidate_tpr", sc["positive"]), ("candidate_fpr", sc["negative"])):
                entry[kind] = float(np.mean(values >= cal.threshold)) if values.size else float("nan")
        methods[name] = entry
    return {
        "rule": RULE,
        "about": "confident when score >= threshold; the threshold maximises balanced accuracy (TPR + TNR) / 2 "
        "between each query's best same-group score (positive) and its best other-group score (negative: "
        "its top hit were its object not in the gallery), over the candidates the method rescored; "
        "rates are in-sample",
        "dataset": f"{dataset.name} ({dataset.root})",
        "queries": len(dataset.query_ids),
        "gallery": len(dataset.gallery_ids),
        "methods": methods,
    }


def write_calibration(out_dir: str | Path, record: dict) -> Path:
    path = Path(out_dir) / FILE
    with atomic_path(path) as tmp:
        tmp.write_text(json_text(record, indent=2))
    return path


def read_calibration(run_dir: str | Path) -> dict | None:
    """``<run>/calibration.json``, or None when absent or unreadable (then it is made again)."""
    path = Path(run_dir) / FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("methods"), dict) else None


def run_rankings(run_dir: str | Path, labels) -> dict[str, Shortlist]:
    """The run's shortlist and the rankings of ``labels`` found on disk, by calibration name."""
    run = Path(run_dir)
    out: dict[str, Shortlist] = {}
    if (run / "shortlist.npz").is_file():
        out[GLOBAL] = Shortlist.load(run / "shortlist.npz")
    for label in labels:
        path = run / "rankings" / f"{label}.npz"
        if path.is_file():
            out[label] = Ranking.load(path)
    return out


def ensure_calibration(run_dir: str | Path, dataset, labels) -> dict:
    """The run's calibration, made again (and saved when the folder is writable) when it is missing or
    was made from other rankings than those on disk now."""
    rankings = run_rankings(run_dir, labels)
    record = read_calibration(run_dir)
    if record is not None and all(
        record["methods"].get(name, {}).get("made_from") == str(r.meta.get("fingerprint", ""))
        for name, r in rankings.items()
    ):
        return record
    record = calibrate_run(dataset, rankings)
    with contextlib.suppress(OSError):  # a read-only run still answers; the calibration is just not kept
        write_calibration(run_dir, record)
    return record


def threshold_of(record: dict | None, method: str | None) -> float | None:
    """The threshold of ``method`` in a calibration record (None: not calibrated); +inf comes back from
    JSON as None too, and both mean "never confident"."""
    entry = (record or {}).get("methods", {}).get(method_key(method)) or {}
    value = entry.get("threshold")
    return None if value is None or not np.isfinite(float(value)) else float(value)


def confidence(run_dir: str | Path, method: str | None, score: float) -> tuple[float, bool]:
    """(threshold, confident) of ``score`` by ``method`` (a reranker label, or "global") of the finished
    run ``run_dir``, from its ``calibration.json``; a method that no threshold separates gives (inf, False).

    Raises ``DataError`` when the run has no calibration for ``method`` (made by ``relook evaluate``)."""
    record = read_calibration(run_dir)
    key = method_key(method)
    if record is None or key not in record["methods"]:
        raise DataError(
            f"{Path(run_dir) / FILE}: no calibration for method {key!r}; run `relook evaluate -c "
            f"{Path(run_dir) / 'config.yaml'}` to make it"
        )
    threshold = threshold_of(record, method)
    if threshold is None:
        return float("inf"), False
    return threshold, is_confident(score, threshold)


def describe(record: dict | None, method: str | None) -> str:
    """One line on a method's threshold: value, rates and the data it was calibrated on."""
    entry = (record or {}).get("methods", {}).get(method_key(method))
    if not entry:
        return "not calibrated"
    if entry.get("error"):
        return f"not calibrated: {entry['error']}"
    t = threshold_of(record, method)
    where = f"{record['dataset']}, {entry['positives']} queries with a same-group candidate"
    if t is None:
        return f"no threshold separates a query's best same-group score from its best other-group one ({where}): never confident"
    return (
        f"threshold {t:.4g} (max balanced accuracy {entry['balanced_accuracy']:.2f} on {where}: a query's "
        f"best same-group score passes for {_pct(entry['tpr'])}, its best other-group score for "
        f"{_pct(entry['fpr'])}; single candidates passing: {_pct(entry.get('candidate_tpr'))} of same-group, "
        f"{_pct(entry.get('candidate_fpr'))} of other-group)"
    )


def _pct(x) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.0f}%"
