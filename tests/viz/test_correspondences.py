"""draw_matches writes a PNG of both images with one line per match."""

import numpy as np
import pytest

from relook.errors import ShapeError
from relook.viz.correspondences import draw_matches


def test_smoke(tmp_path):
    from PIL import Image

    a = np.zeros((40, 60, 3), np.uint8)
    b = np.full((50, 30, 3), 255, np.uint8)
    kp = np.array([[5.0, 5.0], [20.0, 30.0]])
    path = draw_matches(a, b, kp, kp[::-1], tmp_path / "m.png", scores=np.array([0.1, 0.9]), title="t", max_lines=1)
    im = np.asarray(Image.open(path))
    assert im.ndim == 3 and im.shape[0] > 20 and im.shape[1] > 40


def test_empty(tmp_path):
    a = np.zeros((10, 10, 3), np.uint8)
    assert draw_matches(a, a, np.zeros((0, 2)), np.zeros((0, 2)), tmp_path / "e.png").exists()


def test_bad_input(tmp_path):
    a = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ShapeError):
        draw_matches(a, a, np.zeros((2, 2)), np.zeros((3, 2)), tmp_path / "x.png")
