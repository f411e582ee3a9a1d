"""When is a score a match? A threshold per method, chosen from labelled positive and negative scores.

A retrieval score (GV inliers, cosine similarity, RRT logit) ranks a gallery but says nothing by itself
about whether the best hit is the same object: each method has its own scale. Given scores of pairs known
to match (``positive``: same group) and known not to (``negative``: other groups), ``calibrate`` picks the
cut ``t`` and calls a score confident when ``score >= t``.

Rule (default ``"balanced_accuracy"``): maximise balanced accuracy, (TPR + TNR) / 2, i.e. Youden's J =
TPR - FPR (Youden 1950). Why this and not plain accuracy or a fixed false-positive rate:

* in a shortlist the negatives outnumber the positives (a group of 4 views in a top-40 list: 3 positives,
  37 negatives), so plain accuracy is maximised by calling nothing a match; balanced accuracy weighs a
  missed match and a false match equally whatever the ratio;
* a fixed false-positive rate (``rule="max_fpr"``, kept as an option) needs at least 1 / rate negatives
  to be estimated at all, and on a small run it degenerates to "above the highest negative score"; it is
  the rule to use on a large labelled set when a false "match" costs more than a missed one.

Cut points: every score seen; the threshold is the midpoint between the highest score below the cut and
the lowest at or above it (at the bottom end: the lowest score itself; above every score: +inf, nothing
confident). Among equally good cuts the highest threshold wins (fewer false matches at the same balanced
accuracy). Scores that do not separate at all (best balanced accuracy 0.5) give +inf: no score is
confident, which is the truth about such a method on this data. Non-finite scores (padding) are dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

RULES = ("balanced_accuracy", "max_fpr")


@dataclass(frozen=True)
class Calibration:
    """A chosen threshold and how it does on the scores it was chosen from."""

    threshold: float  # confident when score >= threshold; +inf: never
    rule: str  # "balanced_accuracy" or "max_fpr"
    tpr: float  # share of positive scores >= threshold (recall of true matches)
    fpr: float  # share of negative scores >= threshold (false matches)
    balanced_accuracy: float  # (tpr + 1 - fpr) / 2
    positives: int  # positive scores used
    negatives: int  # negative scores used
    max_fpr: float | None = None  # the bound of rule "max_fpr"

    def as_dict(self) -> dict:
        return asdict(self)


def _finite(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    return np.sort(x[np.isfinite(x)])


def calibrate(positive, negative, rule: str = "balanced_accuracy", max_fpr: float = 0.01) -> Calibration:
    """The threshold of ``rule`` (module docstring) from ``positive`` (P,) and ``negative`` (N,) scores.

    ``rule="max_fpr"``: the lowest threshold whose false-positive rate is at most ``max_fpr`` (the
    highest recall under that bound). Raises ``ValueError`` for an unknown rule, ``max_fpr`` outside
    [0, 1], or no finite positive or no finite negative score (nothing to calibrate against).
    """
    if rule not in RULES:
        raise ValueError(f"calibrate: unknown rule {rule!r}; known: {', '.join(RULES)}")
    if not 0.0 <= max_fpr <= 1.0:
        raise ValueError(f"calibrate: max_fpr must be in [0, 1], got {max_fpr}")
    pos, neg = _finite(positive), _finite(negative)
    if pos.size == 0 or neg.size == 0:
        raise ValueError(
            f"calibrate: needs positive and negative scores, got {pos.size} positive and {neg.size} negative"
        )
    cuts = np.unique(np.concatenate([pos, neg]))  # cut j: confident iff score >= cuts[j]; j = len: never
    tpr = np.append((pos.size - np.searchsorted(pos, cuts, "left")) / pos.size, 0.0)
    fpr = np.append((neg.size - np.searchsorted(neg, cuts, "left")) / neg.size, 0.0)
    thresholds = np.append(np.concatenate([cuts[:1], (cuts[:-1] + cuts[1:]) / 2]), np.inf)
    ba = (tpr + 1.0 - fpr) / 2.0
    if rule == "balanced_accuracy":
        # ties: the highest threshold, so no separation at all (0.5 everywhere) ends at +inf, never confident
        best = np.flatnonzero(np.isclose(ba, ba.max(), rtol=0, atol=1e-12))[-1]
    else:
        best = np.flatnonzero(fpr <= max_fpr + 1e-12)[0]  # fpr falls with the cut: the lowest that holds
    return Calibration(
        threshold=float(thresholds[best]),
        rule=rule,
        tpr=float(tpr[best]),
        fpr=float(fpr[best]),
        balanced_accuracy=float(ba[best]),
        positives=int(pos.size),
        negatives=int(neg.size),
        max_fpr=float(max_fpr) if rule == "max_fpr" else None,
    )


def is_confident(score: float, threshold: float | None) -> bool:
    """``score >= threshold`` (a missing or infinite threshold: never confident)."""
    return threshold is not None and np.isfinite(threshold) and float(score) >= float(threshold)
