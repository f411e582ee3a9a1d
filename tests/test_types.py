import numpy as np
import pytest

from relook.errors import DataError, ShapeError
from relook.types import ImageFeatures, Ranking, Shortlist, ranked_indices


def test_shapes_validated(rng):
    f = ImageFeatures(
        "a",
        global_desc=rng.normal(size=8),
        local_desc=rng.normal(size=(5, 4)),
        keypoints=rng.uniform(size=(5, 2)),
        image_size=[10, 20],
    )
    f.validate()
    assert f.global_desc.dtype == np.float32 and f.image_size.dtype == np.int64
    assert f.fields() == ["global_desc", "local_desc", "keypoints", "image_size"]
    bad = ImageFeatures("b", local_desc=np.zeros((5, 4)), keypoints=np.zeros((4, 2)))
    with pytest.raises(ShapeError, match=r"image 'b'.*keypoints"):
        bad.validate()


def test_bad_input_nan_and_relevancy():
    with pytest.raises(ShapeError, match="non-finite"):
        ImageFeatures("c", global_desc=[1.0, np.nan]).validate()
    with pytest.raises(ShapeError, match="relevancy has 3 entries"):
        ImageFeatures("d", patch_tokens=np.zeros((2, 2, 3)), relevancy=np.ones(3) / 3).validate()


def test_missing_field_names_image():
    with pytest.raises(DataError, match="image 'x' has no field 'local_desc'"):
        ImageFeatures("x").get("local_desc")


def test_shortlist_roundtrip(tmp_path, rng):
    s = Shortlist(["q0", "q1"], ["g0", "g1", "g2"], [[2, 0], [1, -1]], [[0.9, 0.5], [0.7, -np.inf]], {"data": "x"})
    p = s.save(tmp_path / "s.npz")
    t = Shortlist.load(p)
    assert t.query_ids == s.query_ids and t.meta == {"data": "x"}
    np.testing.assert_array_equal(t.indices, s.indices)
    assert t.candidate_ids(1) == ["g1"]
    r = Ranking.load(p)
    assert isinstance(r, Ranking)


def test_shortlist_bad_input():
    with pytest.raises(ShapeError, match="indices must lie"):
        Shortlist(["q"], ["g"], [[3]], [[1.0]])
    with pytest.raises(ShapeError, match="1 rows but there are 2 query ids"):
        Shortlist(["q", "r"], ["g"], [[0]], [[1.0]])


def test_shortlist_load_bad_file(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="x.npz"):
        Shortlist.load(tmp_path / "x.npz")


def test_ranked_indices_ties_stable():
    scores = np.array([[0.5, 0.9, 0.5, 0.9]])
    np.testing.assert_array_equal(ranked_indices(scores), [[1, 3, 0, 2]])
    cand = np.array([[10, 11, 12, 13]])
    np.testing.assert_array_equal(ranked_indices(scores, cand), [[11, 13, 10, 12]])
