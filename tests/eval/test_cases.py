"""Helped / hurt queries from first-positive ranks, on hand-made ranks."""

import numpy as np
import pytest

from relook.errors import ShapeError
from relook.eval.cases import helped_and_hurt


def test_hand_computed():
    before = np.array([5.0, 1.0, 3.0, np.inf, 2.0, np.nan, 4.0])
    after = np.array([1.0, 4.0, 3.0, 2.0, np.inf, 1.0, 2.0])
    # gains (lost = one past the deepest finite rank, 6): q0 +4, q1 -3, q2 0, q3 +4, q4 -4, q5 skipped, q6 +2
    helped, hurt = helped_and_hurt(before, after, n=2)
    assert helped == [0, 3]  # equal gains: lower query index first
    assert hurt == [4, 1]
    assert helped_and_hurt(before, after, n=5) == ([0, 3, 6], [4, 1])


def test_empty():
    assert helped_and_hurt(np.array([]), np.array([])) == ([], [])
    assert helped_and_hurt(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == ([], [])


def test_bad_input():
    with pytest.raises(ShapeError, match="3 ranks before but 2 after"):
        helped_and_hurt(np.ones(3), np.ones(2))
