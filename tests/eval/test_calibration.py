"""``calibrate`` against a hand-computed case and a slow loop over every threshold."""

import numpy as np
import pytest

from relook.eval.calibration import calibrate, is_confident


def slow_best(pos, neg, rule, max_fpr=0.01):
    """Try every candidate threshold (each score, and +inf); confident iff score >= t. Keep the best by
    the rule (balanced accuracy, ties: the higher t; max_fpr: the lowest t with fpr <= bound)."""
    best = None
    for t in sorted({*pos, *neg, np.inf}):
        tpr = sum(p >= t for p in pos) / len(pos)
        fpr = sum(n >= t for n in neg) / len(neg)
        ba = (tpr + 1 - fpr) / 2
        if rule == "balanced_accuracy":
            if best is None or ba >= best[0] - 1e-12:
                best = (ba, t, tpr, fpr)
        elif fpr <= max_fpr and best is None:
            best = (ba, t, tpr, fpr)
    return best


def test_matches_reference():
    """By hand: pos 5 7 9, neg 1 2 6. Cuts (confident iff >=): 1: BA .5; 2: (1 + 1/3)/2; 5: (1 + 2/3)/2;
    6: (2/3 + 2/3)/2; 7: (2/3 + 1)/2; 9: (1/3 + 1)/2; never: .5. Best 5/6 at cuts 5 and 7: the higher,
    7, placed midway between 6 and 7 = 6.5, with TPR 2/3 and FPR 0. A false-positive bound of 0.34
    allows the cut at 5: threshold (2 + 5) / 2 = 3.5, TPR 1, FPR 1/3."""
    c = calibrate([5, 7, 9], [1, 2, 6])
    assert (c.threshold, c.tpr, c.fpr) == (6.5, pytest.approx(2 / 3), 0.0)
    assert c.balanced_accuracy == pytest.approx(5 / 6) and (c.positives, c.negatives) == (3, 3)
    f = calibrate([5, 7, 9], [1, 2, 6], rule="max_fpr", max_fpr=0.34)
    assert (f.threshold, f.tpr, f.fpr, f.max_fpr) == (3.5, 1.0, pytest.approx(1 / 3), 0.34)
    assert calibrate([5, 7, 9], [1, 2, 6], rule="max_fpr", max_fpr=0.0).threshold == 6.5


@pytest.mark.parametrize("rule", ["balanced_accuracy", "max_fpr"])
def test_random_against_loop(rule):
    rng = np.random.default_rng(0)
    for _ in range(30):
        pos = rng.integers(0, 30, rng.integers(1, 12)).astype(float) + 5
        neg = rng.integers(0, 30, rng.integers(1, 40)).astype(float)
        c = calibrate(pos, neg, rule, max_fpr=0.1)
        ba, t, tpr, fpr = slow_best(list(pos), list(neg), rule, 0.1)
        # the same cut: the same rates, and the threshold lies between the scores around the cut
        assert (c.tpr, c.fpr) == (pytest.approx(tpr), pytest.approx(fpr))
        below = max([s for s in [*pos, *neg] if s < t], default=-np.inf)
        assert below < c.threshold <= t or (c.threshold == t == min([*pos, *neg]))


def test_imbalanced_is_not_plain_accuracy():
    """3 positives among 97 negatives: plain accuracy would call nothing a match (97 %); balanced
    accuracy keeps the cut that finds the positives."""
    neg = np.r_[np.arange(95.0), 60.5, 61.5]
    c = calibrate([60, 61, 99.5], neg)
    assert c.tpr == 1.0 and c.threshold == pytest.approx(59.5)


def test_empty():
    """No separation: never confident (+inf); padding (-inf, NaN) is dropped; no positives: an error."""
    c = calibrate([1, 2, 3], [1, 2, 3])
    assert c.threshold == np.inf and not is_confident(1e9, c.threshold)
    assert calibrate([5, -np.inf], [1, np.nan]).positives == 1
    with pytest.raises(ValueError, match="0 positive"):
        calibrate([-np.inf], [1])
    assert is_confident(3.0, 3.0) and not is_confident(2.9, 3.0) and not is_confident(3.0, None)


def test_bad_input():
    with pytest.raises(ValueError, match="unknown rule"):
        calibrate([1], [0], rule="accuracy")
    with pytest.raises(ValueError, match="max_fpr"):
        calibrate([1], [0], rule="max_fpr", max_fpr=2)
