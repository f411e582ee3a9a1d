""" "No confident match": each method's score threshold, calibrated on a finished run's own labelled data.

After ``evaluate``, every method of a run (the global order and each reranker) has ranked every query's
shortlist, and the dataset's groups say which candidates are the same object. Those are the labelled
scores ``relook.eval.calibration.calibrate`` needs:

* positive: the method's score of a candidate of the query's own group;
* negative: the score of a candidate of another group (ignored / junk candidates are neither);
* only the candidates the method rescored (a reranker's first ``reranked_top_k``; the whole shortlist
  for the global order), since the scores past them are shifted global scores, not the method's own.

The thresholds go to ``<run>/calibration.json`` beside ``results.json``, each with its rates on the
scores it came from, the share of queries whose best wrong candidate still passes (``query_fpr``: how
often an unrelated picture would get a "match"), and the fingerprint of the ranking it came from, so a
reranked run is recalibrated, never judged by an old threshold. The rates are in-sample (the threshold
was chosen on the same scores): optimistic on a small run.

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
from relook.io import atomic_path, json_text
from relook.types import Ranking, Shortlist

FILE = "calibration.json"
GLOBAL = "global only"  # the global order's name in results.json (``relook query`` calls it "global")
RULE = "balanced_accuracy"


def method_key(method: str | None) -> str:
    """The calibration entry of a query method: None / "global" -> "global only", a label -> itself."""
    return GLOBAL if method in (None, "global", GLOBAL) else str(method)


def method_scores(ranking: Shortlist, dataset, top_k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positive scores, negative scores, best negative score per query (NaN: none)) of ``ranking``'s
    first ``top_k`` candidates per query (all when None), labelled by ``dataset``'s ground truth."""
    from relook.eval.evaluate import align

    idx = align(ranking, dataset)
    qpos = {q: i for i, q in enumerate(ranking.query_ids)}
    scores = ranking.scores[[qpos[q] for q in dataset.query_ids]].astype(np.float64)
    positives, ignore = dataset.ground_truth("medium" if dataset.protocol == "revisitop" else None)
    n = idx.shape[1] if top_k is None else min(int(top_k), idx.shape[1])
    pos, neg, best = [], [], np.full(len(idx), np.nan)
    for q in range(len(idx)):
        row, s = idx[q, :n], scores[q, :n]
        keep = (row >= 0) & ~np.isin(row, np.asarray(ignore[q], np.int64)) & np.isfinite(s)
        is_pos = np.isin(row, np.asarray(positives[q], np.int64))
        pos.append(s[keep & is_pos])
        wrong = s[keep & ~is_pos]
        neg.append(wrong)
        if wrong.size:
            best[q] = wrong.max()
    return np.concatenate(pos or [np.zeros(0)]), np.concatenate(neg or [np.zeros(0)]), best


def calibrate_run(dataset, rankings: Mapping[str, Shortlist]) -> dict[str, Any]:
    """The calibration record of every method in ``rankings`` (``{"global only": shortlist, label:
    ranking}``); a method without positive or negative scores gets ``threshold: None`` and the reason."""
    methods = {}
    for name, ranking in rankings.items():
        top_k = None if name == GLOBAL else int(ranking.meta.get("reranked_top_k") or ranking.k)
        pos, neg, best = method_scores(ranking, dataset, top_k)
        entry: dict[str, Any] = {"top_k": top_k or ranking.k, "made_from": str(ranking.meta.get("fingerprint", ""))}
        try:
            cal = calibrate(pos, neg, RULE)
        except ValueError:
            entry.update(
                threshold=None,
                error=f"no {'positive' if not np.isfinite(pos).any() else 'negative'} candidates in the "
                f"first {entry['top_k']} of any query's list: nothing to calibrate against",
            )
        else:
            answered = best[np.isfinite(best)]
            entry.update(cal.as_dict())
            entry["query_fpr"] = float(np.mean(answered >= cal.threshold)) if answered.size else float("nan")
        methods[name] = entry
    return {
        "rule": RULE,
        "about": "confident when score >= threshold; threshold maximises balanced accuracy (TPR + TNR) / 2 "
        "over the run's shortlist candidates (positive: same group as the query; negative: another group); "
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
    where = f"{record['dataset']}, {entry['positives']} same-group and {entry['negatives']} other-group scores"
    if t is None:
        return f"no threshold separates same-group from other-group scores ({where}): never confident"
    return (
        f"threshold {t:.4g} (max balanced accuracy {entry['balanced_accuracy']:.2f}: TPR {entry['tpr']:.2f}, "
        f"FPR {entry['fpr']:.2f}; best wrong candidate passes for {_pct(entry.get('query_fpr'))} of queries; "
        f"on {where})"
    )


def _pct(x) -> str:
    return "-" if x is None or not np.isfinite(x) else f"{100 * x:.0f}%"
