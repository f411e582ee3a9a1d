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
    g = unit(rng.normal(size=(1000, 32)))
    q = unit(g[:20] + 0.05 * rng.normal(size=(20, 32)))
    idx = build_index(g, kind="ivfpq", nlist=16, m=8, nbits=4, nprobe=8)  # small codebooks: fast to train
    s = search(idx, q, 5, [str(i) for i in range(20)], [str(i) for i in range(1000)])
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


def reference_topk(q, g, k, exclude=None):
    """Slow obvious top-k: every score, the excluded item removed, ordered by (score desc, index asc)."""
    rows, vals = [], []
    for i, s in enumerate(q.astype(np.float64) @ g.astype(np.float64).T):
        cand = np.array([j for j in range(len(g)) if exclude is None or j != exclude[i]])
        order = np.lexsort((cand, -s[cand]))[:k]
        rows.append(cand[order])
        vals.append(s[cand][order])
    return np.array(rows), np.array(vals)


def tied_set(rng, n=30):
    """Small-integer vectors: inner products are exact in float32 and many of them tie."""
    return rng.integers(0, 3, size=(n, 3)).astype(np.float32)


@pytest.mark.parametrize("k", [1, 4, 7, 29, 1000])
def test_exclude_self_and_ties_match_reference(rng, k):
    x = tied_set(rng)  # 30 queries: faiss takes its BLAS path (>= 20 queries)
    n = len(x)
    ids = [str(i) for i in range(n)]
    s = exact_search(x, x, k, ids, ids, exclude=np.arange(n))
    ref, ref_scores = reference_topk(x, x, min(k, n - 1), np.arange(n))
    assert s.k == min(k, n - 1)
    np.testing.assert_array_equal(s.indices, ref)
    np.testing.assert_array_equal(s.scores, ref_scores)
    assert s.meta["exclude"] == "self"
    if k < n - 1:  # ties across the cut really occur here, so the tie rule decides which items get in
        kth = ref_scores[:, k - 1]
        rest = [np.delete(row, i) for i, row in enumerate(x @ x.T)]
        assert sum(int((r == t).sum()) > int((ref_scores[i] == t).sum()) for i, (r, t) in enumerate(zip(rest, kth))) > 0


def test_k_is_n_minus_1_keeps_every_real_candidate(rng):
    x = unit(rng.normal(size=(9, 16)))
    ids = [f"im{i}" for i in range(9)]
    s = exact_search(x, x, 8, ids, ids, exclude=np.arange(9))
    assert s.indices.shape == (9, 8)
    for q, row in enumerate(s.indices):
        assert sorted(row.tolist()) == [j for j in range(9) if j != q]  # all 8 others, never the query


def test_ties_without_exclusion_and_partial_exclusion(rng):
    g = tied_set(rng, 40)
    q = tied_set(rng, 5)
    for k in (3, 10):
        s = exact_search(q, g, k, [str(i) for i in range(5)], [str(i) for i in range(40)])
        np.testing.assert_array_equal(s.indices, reference_topk(q, g, k)[0])
        assert "exclude" not in s.meta
        exclude = np.array([0, -1, 39, -1, 7])  # some queries are gallery images, some are not
        s = exact_search(q, g, k, [str(i) for i in range(5)], [str(i) for i in range(40)], exclude=exclude)
        np.testing.assert_array_equal(s.indices, reference_topk(q, g, k, exclude)[0])
    same = np.ones((6, 2), np.float32)  # all equal: ascending gallery index, the query left out
    s = exact_search(same, same, 5, list("abcdef"), list("abcdef"), exclude=np.arange(6))
    assert s.indices[0].tolist() == [1, 2, 3, 4, 5] and s.indices[3].tolist() == [0, 1, 2, 4, 5]


def test_exclude_empty_and_bad_input(rng):
    x = unit(rng.normal(size=(1, 4)))
    s = exact_search(x, x, 5, ["a"], ["a"], exclude=[0])  # the only gallery item is the query itself
    assert s.indices.shape == (1, 0)
    with pytest.raises(ShapeError, match="exclude has 2 entries"):
        exact_search(x, x, 1, ["a"], ["a"], exclude=[0, 0])
    with pytest.raises(ShapeError, match="exclude must hold gallery indices"):
        exact_search(x, x, 1, ["a"], ["a"], exclude=[3])
