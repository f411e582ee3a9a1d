"""Revisited Oxford / Paris reader on a fixture in the official layout (gnd_<name>.pkl + jpg/)."""

import os
import pickle

import numpy as np
import pytest
from layout_fixtures import corrupt, write_jpg

from relook.datasets import load_dataset
from relook.datasets.verify import verify_images
from relook.errors import DataError
from relook.images import load_image


def _fixture(root, name="roxford5k", gnd=None):
    imlist = ["a_000001", "a_000002", "b_000003", "c_000004"]
    qimlist = ["a_000001", "b_000003"]
    gnd = (
        gnd
        if gnd is not None
        else [
            {"bbx": [2.0, 3.0, 20.0, 15.0], "easy": np.array([0, 1]), "hard": [], "junk": [3]},
            {"bbx": [0, 0, 10.5, 12.5], "easy": [], "hard": [2], "junk": np.array([], dtype=np.int64)},
        ]
    )
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"gnd_{name}.pkl", "wb") as f:
        pickle.dump({"imlist": imlist, "qimlist": qimlist, "gnd": gnd}, f, protocol=2)
    for i, n in enumerate(imlist):
        write_jpg(root / "jpg" / f"{n}.jpg", seed=i)
    return root


@pytest.mark.parametrize("name", ["roxford5k", "rparis6k"])
def test_smoke(tmp_path, name):
    ds = load_dataset(name, _fixture(tmp_path, name))
    assert ds.query_ids == ["q/a_000001", "q/b_000003"] and len(ds.gallery) == 4
    assert ds.queries[0][2] == (2.0, 3.0, 20.0, 15.0)
    assert load_image(ds.queries[0][1], ds.queries[0][2]).shape == (12, 18, 3)  # cropped to bbx
    pos, ign = ds.ground_truth("medium")
    assert pos[0].tolist() == [0, 1] and ign[0].tolist() == [3]
    pos, ign = ds.ground_truth("hard")
    assert pos[1].tolist() == [2] and pos[0].tolist() == []
    assert verify_images(ds) == 6


def test_distractors(tmp_path):
    root = _fixture(tmp_path / "ox")
    (tmp_path / "r1m").mkdir()
    (tmp_path / "r1m" / "list.txt").write_text("00/x1.jpg\n00/x2.jpg\n")
    ds = load_dataset("roxford5k", root, distractors=tmp_path / "r1m" / "list.txt")
    assert len(ds.gallery) == 6 and ds.gallery[4][1] == tmp_path / "r1m" / "jpg" / "00" / "x1.jpg"
    assert ds.ground_truth()[0][0].tolist() == [0, 1]  # indices unchanged


def test_bad_input(tmp_path):
    with pytest.raises(DataError, match="gnd_roxford5k.pkl"):
        load_dataset("roxford5k", tmp_path)  # missing file
    root = _fixture(tmp_path / "t")
    corrupt(root / "gnd_roxford5k.pkl")
    with pytest.raises(DataError, match="gnd_roxford5k.pkl"):
        load_dataset("roxford5k", root)  # truncated pickle
    bad = [
        {"bbx": [0, 0, 5, 5], "easy": [9], "hard": [], "junk": []},
        {"bbx": [0, 0, 5, 5], "easy": [], "hard": [], "junk": []},
    ]
    with pytest.raises(DataError, match="outside imlist"):
        load_dataset("roxford5k", _fixture(tmp_path / "u", gnd=bad))
    with pytest.raises(DataError, match="bbx"):
        load_dataset(
            "roxford5k", _fixture(tmp_path / "v", gnd=[{"bbx": [5, 5, 1, 1], "easy": [], "hard": [], "junk": []}] * 2)
        )
    root = _fixture(tmp_path / "w")
    corrupt(root / "jpg" / "c_000004.jpg")
    with pytest.raises(DataError, match="c_000004.jpg"):
        verify_images(load_dataset("roxford5k", root))  # corrupt JPEG


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_refuses_code_in_pickle(tmp_path):
    with open(tmp_path / "gnd_roxford5k.pkl", "wb") as f:
        pickle.dump({"imlist": [], "qimlist": [], "gnd": [_Evil()]}, f)
    with pytest.raises(DataError, match="refusing"):
        load_dataset("roxford5k", tmp_path)


@pytest.mark.parametrize("name", ["oxford5k", "paris6k"])
def test_classic_protocol_matches_hand_computed(tmp_path, name):
    """Original protocol on a fixture in cirtorch's gnd_<name>.pkl layout (ok / junk lists): the mAP of a
    fixed ranking against the value worked out by hand with the benchmark's compute_ap rule."""
    from relook.eval.evaluate import evaluate
    from relook.types import Shortlist

    imlist = [f"{name}_{i}" for i in range(5)]
    gnd = [{"bbx": [0, 0, 10, 10], "ok": [1, 3], "junk": [2]}, {"bbx": [1, 1, 9, 9], "ok": [4], "junk": []}]
    root = tmp_path / name
    root.mkdir()
    with open(root / f"gnd_{name}.pkl", "wb") as f:
        pickle.dump({"imlist": imlist, "qimlist": imlist[:2], "gnd": gnd}, f, protocol=2)
    for i, n in enumerate(imlist):
        write_jpg(root / "jpg" / f"{n}.jpg", seed=i)
    ds = load_dataset(name, root)
    assert ds.protocol == "classic" and ds.query_ids == [f"q/{name}_0", f"q/{name}_1"]
    order = np.array([[2, 1, 0, 3, 4], [0, 1, 2, 3, 4]])
    ranking = Shortlist(ds.query_ids, ds.gallery_ids, order, -np.arange(5.0)[None].repeat(2, 0))
    # query 0, junk 2 removed -> [1, 0, 3, 4]: positives at ranks 1 and 3 (1-based)
    #   AP = 1/2 * [(1 + 1)/2 + (1/2 + 2/3)/2] = 19/24;  query 1: positive 4 at rank 5: 1/1 * (0 + 1/5)/2 = 1/10
    assert evaluate(ranking, ds) == {"mAP": pytest.approx((19 / 24 + 1 / 10) / 2)}
    pos, ign = ds.ground_truth()
    assert pos[0].tolist() == [1, 3] and ign[0].tolist() == [2]
    with pytest.raises(DataError, match="'ok'"):  # a revisited file is not a classic one
        _fixture(tmp_path / "rev", name)
        (tmp_path / "rev" / f"gnd_{name}.pkl").replace(root / f"gnd_{name}.pkl")
        load_dataset(name, root)
