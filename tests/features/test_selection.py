import numpy as np
import pytest

from relook.errors import ConfigError
from relook.features.selection import distinct_grid_locations, grid_cells, keep_top_n, local_feature_stats
from relook.types import ImageFeatures


def _feats(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return ImageFeatures(
        "a",
        local_desc=rng.normal(size=(n, 8)),
        keypoints=rng.uniform(0, 100, (n, 2)),
        scales=rng.choice([0.5, 1.0, 2.0], n),
        attention=rng.uniform(size=n),
        global_desc=np.ones(4),
        extra={"kp_size": np.arange(n, dtype=np.float32), "other": np.ones(3)},
    )


def test_keep_top_n_matches_reference():
    f = _feats()
    out = keep_top_n(f, 10)
    ref = sorted(range(50), key=lambda i: -f.attention[i])[:10]
    np.testing.assert_array_equal(out.local_desc, f.local_desc[ref])
    np.testing.assert_array_equal(out.keypoints, f.keypoints[ref])
    np.testing.assert_array_equal(out.extra["kp_size"], f.extra["kp_size"][ref])
    np.testing.assert_array_equal(out.extra["other"], f.extra["other"])  # not per-feature: untouched
    np.testing.assert_array_equal(out.global_desc, f.global_desc)
    assert keep_top_n(f, 1000).num_local == 50


def test_distinct_grid_locations_hand_case():
    kp = np.array([[0, 0], [15.9, 15.9], [16, 0], [31, 2], [100, 100]])
    # cells: (0,0) (0,0) (1,0) (1,0) (6,6) -> 3 distinct
    assert distinct_grid_locations(kp, 16) == 3
    np.testing.assert_array_equal(grid_cells(kp, 16)[:, 0], [0, 0, 1, 1, 6])


def test_distinct_grid_locations_matches_reference():
    kp = np.random.default_rng(1).uniform(0, 300, (500, 2))
    assert distinct_grid_locations(kp) == len({(int(u // 16), int(v // 16)) for u, v in kp})


def test_empty():
    assert distinct_grid_locations(np.zeros((0, 2))) == 0
    f = ImageFeatures("e", local_desc=np.zeros((0, 8)), keypoints=np.zeros((0, 2)), attention=np.zeros(0))
    assert keep_top_n(f, 5).num_local == 0
    assert local_feature_stats([])["images"] == 0


def test_stats():
    s = local_feature_stats([_feats(50, 0), _feats(30, 1)], top_n=40)
    assert s["mean_local"] == 35.0 and 0 < s["mean_distinct"] <= 35


def test_bad_input():
    with pytest.raises(ConfigError):
        keep_top_n(_feats(), -1)
    with pytest.raises(ConfigError):
        grid_cells(np.ones((3, 2)), 0)
