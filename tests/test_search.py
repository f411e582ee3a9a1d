import numpy as np
import pytest

from relook.errors import ConfigError, DataError, ShapeError
from relook.search import build_index, exact_search, read_index, search, write_index


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_matches_reference(rng, tmp_path):
    g, q = unit(rng.normal(size=(300, 32))), unit(rng.normal(size=(7, 32)))
    s = exact_search(q, g, 10, [f"q{i}" for i in range(7)], [f"g{i}" for i in range(300)], {"data": "random"})
    ref = np.argsort(-(q @ g.T), axis=1)[:, :10]
    np.testing.assert_array_equal(s.indices, ref)
    np.testing.assert_allclose(s.scores, np.take_along_axis(q @ g.T, ref, 1), atol=1e-5)
    assert s.meta == {"data": "random"}
    idx = read_index(write_index(build_index(g), tmp_path / "g.faiss"))
    np.testing.assert_array_equal(search(idx, q, 10, s.query_ids, s.gallery_ids).indices, ref)


def test_ivfpq_finds_near_duplicates(rng):
    g = unit(rng.normal(size=(2000, 64)))
    q = unit(g[:20] + 0.05 * rng.normal(size=(20, 64)))
    idx = build_index(g, kind="ivfpq", nlist=32, m=16, nprobe=8)
    s = search(idx, q, 5, [str(i) for i in range(20)], [str(i) for i in range(2000)])
    assert (s.indices[:, 0] == np.arange(20)).mean() >= 0.9


def test_k_capped_and_empty(rng):
    g = unit(rng.normal(size=(3, 4)))
    assert exact_search(g, g, 10, ["a", "b", "c"], ["a", "b", "c"]).k == 3
    s = exact_search(np.zeros((0, 4)), g, 5, [], ["a", "b", "c"])
    assert s.indices.shape == (0, 0)


def test_bad_input(rng, tmp_path):
    g = unit(rng.normal(size=(10, 8)))
    with pytest.raises(ShapeError, match="query descriptors have dim 4 but the index has dim 8"):
        search(build_index(g), unit(rng.normal(size=(2, 4))), 3, ["a", "b"], [str(i) for i in range(10)])
    with pytest.raises(ShapeError, match="dim 4 but gallery descriptors have dim 8"):
        exact_search(unit(rng.normal(size=(2, 4))), g, 3, ["a", "b"], [str(i) for i in range(10)])
    with pytest.raises(ConfigError, match="unknown index kind"):
        build_index(g, kind="hnswx")
    with pytest.raises(ConfigError, match="at least"):
        build_index(g, kind="ivfpq", m=4)
    with pytest.raises(DataError, match="no such index"):
        read_index(tmp_path / "nope.faiss")
    with pytest.raises(ShapeError, match="non-finite"):
        build_index(np.full((2, 8), np.nan))
