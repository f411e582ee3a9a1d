import numpy as np
import pytest

from relook.errors import ShapeError
from relook.viz.epipolar import grid_of_patches, plot_epipolar_attention


def test_grid_of_patches_matches_reference():
    s = 3
    M = np.arange(81, dtype=float).reshape(9, 9)
    G = grid_of_patches(M, s, gap=1)
    assert G.shape == (11, 11)
    # patch of cell (r, c) = (1, 2) -> row i = 5 reshaped to 3x3 at rows 4..6, cols 8..10
    assert np.array_equal(G[4:7, 8:11], M[5].reshape(3, 3))
    assert np.isnan(G[3]).all() and np.isnan(G[:, 7]).all()
    with pytest.raises(ShapeError):
        grid_of_patches(M[:5], s)


def test_smoke(tmp_path):
    from relook.geometry.epipolar import epipolar_indicator, random_fundamental

    F = random_fundamental(seed=0).numpy()
    I12, _ = epipolar_indicator(F, (64, 64), (64, 64), 4)
    img = np.zeros((64, 64, 3), np.uint8)
    out = plot_epipolar_attention(
        img, img, F, I12.numpy(), np.random.default_rng(0).random((16, 16)), tmp_path / "a.png", s=4, title="synthetic"
    )
    assert out.exists() and out.stat().st_size > 1000
