"""The on-disk IVF-PQ index (``relook.ondisk``) against faiss's own in-memory index of the same data, and the
pipeline's ``shortlist.index: ivfpq`` through ``relook run`` / ``relook query``."""

import shutil

import faiss
import numpy as np
import pytest

from relook.errors import ConfigError, DataError
from relook.ondisk import (
    build_on_disk,
    build_part,
    ivfpq_conf,
    read_on_disk,
    sample_rows,
    shard_indexes,
    train_ivfpq,
)
from tests.test_pipeline import toy  # noqa: F401  (fixture: toy colour dataset + config)


def _clustered(n: int, d: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((32, d))
    x = centres[rng.integers(32, size=n)] + 0.3 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.slow  # ~13 CPU-s: IVF-PQ built on disk vs in memory; test_pipeline_ivfpq_on_disk stays fast
def test_matches_reference(tmp_path):
    """Parts merged on disk search exactly like faiss's in-memory index filled at once (same quantisers),
    also after the folder was moved (the lists are found beside the index)."""
    x, q = _clustered(3000, 32, 0), _clustered(20, 32, 1)
    trained = train_ivfpq(x[:1000], nlist=16, m=8, seed=0)
    reference = faiss.clone_index(trained)
    reference.add(x)
    faiss.extract_index_ivf(reference).nprobe = 4
    build_on_disk((x[i : i + 700] for i in range(0, 3000, 700)), tmp_path / "a", trained, nprobe=4)
    assert not list((tmp_path / "a" / "parts").iterdir())  # parts removed after the merge
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    index = read_on_disk(tmp_path / "b" / "index.faiss")
    assert index.ntotal == 3000
    d_ref, i_ref = reference.search(q, 10)
    d_got, i_got = index.search(q, 10)
    np.testing.assert_array_equal(i_got, i_ref)
    np.testing.assert_allclose(d_got, d_ref, rtol=1e-6)


@pytest.mark.slow  # ~6 CPU-s
def test_resume_keeps_parts(tmp_path):
    x = _clustered(600, 16, 2)
    trained = train_ivfpq(x, nlist=4, m=4)
    part = build_part(trained, x[:300], 0, tmp_path / "p.index")
    before = part.read_bytes()
    build_part(trained, x[300:], 300, part)  # already there: kept as it is
    assert part.read_bytes() == before


def test_sample_rows():
    chunks = [np.arange(i, i + 7 * 3, dtype=np.float32).reshape(7, 3) for i in range(0, 5 * 21, 21)]
    full = np.concatenate(chunks)
    pick = np.sort(np.random.default_rng(5).choice(35, size=9, replace=False))
    np.testing.assert_array_equal(sample_rows(iter(chunks), 9, 35, seed=5), full[pick])
    np.testing.assert_array_equal(sample_rows(iter(chunks), 99, 35), full)


def test_shards_equal_one_index():
    """Two shards holding global ids search like one exact index over everything."""
    x, q = _clustered(500, 16, 3), _clustered(5, 16, 4)
    parts = []
    for lo, hi in ((0, 230), (230, 500)):
        part = faiss.IndexIDMap(faiss.IndexFlatIP(16))
        part.add_with_ids(x[lo:hi], np.arange(lo, hi))
        parts.append(part)
    d, i = shard_indexes(parts).search(q, 7)
    exact = faiss.IndexFlatIP(16)
    exact.add(x)
    d_ref, i_ref = exact.search(q, 7)
    np.testing.assert_array_equal(i, i_ref)
    np.testing.assert_allclose(d, d_ref, rtol=1e-6)


def test_bad_input(tmp_path):
    with pytest.raises(ConfigError, match="divisible"):
        train_ivfpq(_clustered(300, 30, 0), nlist=4, m=8)
    with pytest.raises(ConfigError, match="training vectors"):
        train_ivfpq(_clustered(100, 16, 0), nlist=4, m=4)
    with pytest.raises(ConfigError, match="shortlist.ivfpq: unknown key 'nprob'"):
        ivfpq_conf({"nprob": 3}, 1000)
    with pytest.raises(ConfigError, match="chunk"):
        ivfpq_conf({"chunk": 0}, 1000)
    with pytest.raises(DataError, match="no such index"):
        read_on_disk(tmp_path / "none.faiss")
    (tmp_path / "bad.faiss").write_bytes(b"not an index")
    with pytest.raises(DataError, match="not an on-disk faiss index"):
        read_on_disk(tmp_path / "bad.faiss")


def test_pipeline_ivfpq_on_disk(toy, tmp_path):
    """``shortlist.index: ivfpq`` builds ``index/index.faiss`` in parts and the shortlist equals faiss's
    in-memory IVF-PQ over the same descriptors; ``relook query`` reads the on-disk index of the run."""
    from relook.cli import main
    from relook.query import query
    from relook.store import FeatureStore
    from relook.types import Shortlist

    cfg, out = toy
    ivf = "{index: ivfpq, k: 11, ivfpq: {nlist: 2, m: 12, nbits: 2, nprobe: 2, chunk: 5}}"
    assert main(["run", "-c", str(cfg), "-s", f"shortlist={ivf}", "--quiet", "--no-report"]) == 0
    assert (out / "index/index.faiss").exists() and (out / "index/lists.ivfdata").exists()
    assert not (out / "index.faiss").exists()
    with FeatureStore(out / "features/toy_thumb/gallery.h5") as gs:
        ids = gs.ids()
        x = gs.stack("global_desc", ids)
    reference = faiss.clone_index(train_ivfpq(x, nlist=2, m=12, nbits=2, seed=0))
    reference.add(x)
    faiss.extract_index_ivf(reference).nprobe = 2
    shortlist = Shortlist.load(out / "shortlist.npz")
    _, want = reference.search(x[[ids.index(q) for q in shortlist.query_ids]], 12)
    for row, q, w in zip(shortlist.indices, shortlist.query_ids, want):
        w = [g for g in w if g != ids.index(q)][:11]  # the query is never its own candidate
        assert sorted(ids[g] for g in row) == sorted(ids[g] for g in w)
    (result,) = query([tmp_path / "data" / "0_0.png"], out, k=3)
    assert result.hits[0].gallery_id in {"0_0", "0_1", "0_2"}
