"""Marginals: uniform, DIML cross-correlation (hand-computed), relevancy; each a probability vector."""

import numpy as np
import pytest
import torch

from relook.errors import ShapeError
from relook.rerank.marginals import cross_correlation, relevancy, uniform


def test_uniform():
    torch.testing.assert_close(uniform(2, 4), torch.full((2, 4), 0.25))
    assert uniform(0, 4).shape == (0, 4)


def test_cross_matches_hand_computed():
    tok = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]]])  # 3 patches
    glob = torch.tensor([[3.0, 4.0]])  # other image's global, unit after /5
    w = np.array([0.6, 0.8, 0.0])  # relu(cos) of each patch with (0.6, 0.8)
    np.testing.assert_allclose(cross_correlation(tok, glob)[0].numpy(), w / w.sum(), atol=1e-6)


def test_all_negative_falls_back_to_uniform():
    tok = -torch.ones(1, 4, 3)
    torch.testing.assert_close(cross_correlation(tok, torch.ones(1, 3)), torch.full((1, 4), 0.25))
    torch.testing.assert_close(relevancy(torch.zeros(1, 4)), torch.full((1, 4), 0.25))


def test_relevancy_normalised():
    r = relevancy(torch.tensor([[1.0, 3.0], [2.0, 2.0]]))
    torch.testing.assert_close(r, torch.tensor([[0.25, 0.75], [0.5, 0.5]]))


def test_bad_input():
    with pytest.raises(ShapeError):
        cross_correlation(torch.ones(2, 3, 4), torch.ones(2, 5))
    with pytest.raises(ShapeError):
        relevancy(torch.ones(3))
