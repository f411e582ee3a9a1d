"""SfM-120k (pickle) and MSLS (city folders, CSVs, 25 m positives) on fixtures in their official layouts."""

import pickle

import pytest
from layout_fixtures import corrupt, write_jpg

from relook.datasets import load_dataset
from relook.datasets.verify import verify_images
from relook.errors import DataError


def _sfm(root, db=None):
    cids = ["0a1b2c3d4e5f", "112233445566", "aabbccddeeff", "998877665544"]
    db = db or {
        "train": {"cids": cids, "cluster": [0, 0, 1, 1], "qidxs": [0, 2], "pidxs": [1, 3], "bbxs": [None, None]},
        "val": {"cids": cids[:2], "cluster": [5, 5], "qidxs": [1], "pidxs": [0], "bbxs": [None]},
    }
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "retrieval-SfM-120k.pkl", "wb") as f:
        pickle.dump(db, f, protocol=2)
    for i, c in enumerate(cids):
        write_jpg(root / "ims" / c[-2:] / c[-4:-2] / c[-6:-4] / c, seed=i)
    return root


def test_sfm120k(tmp_path):
    ds = load_dataset("sfm120k", _sfm(tmp_path))
    assert ds.query_ids == ["0a1b2c3d4e5f", "aabbccddeeff"] and len(ds.gallery) == 4
    assert ds.gallery[0][1] == tmp_path / "ims" / "5f" / "4e" / "3d" / "0a1b2c3d4e5f"
    pos, ign = ds.ground_truth()
    assert pos[0].tolist() == [1] and pos[1].tolist() == [3] and ign[1].tolist() == [2]
    assert ds.info["pairs"].tolist() == [[0, 1], [2, 3]]
    assert verify_images(ds) == 4
    assert load_dataset("sfm120k", tmp_path, split="val").query_ids == ["112233445566"]


def test_sfm120k_bad_input(tmp_path):
    with pytest.raises(DataError, match="retrieval-SfM-120k.pkl"):
        load_dataset("sfm120k", tmp_path)
    root = _sfm(tmp_path / "a")
    corrupt(root / "retrieval-SfM-120k.pkl")
    with pytest.raises(DataError, match="retrieval-SfM-120k.pkl"):
        load_dataset("sfm120k", root)
    bad = {"train": {"cids": ["a1b2c3"], "cluster": [0], "qidxs": [0], "pidxs": [4]}}
    with pytest.raises(DataError, match="outside"):
        load_dataset("sfm120k", _sfm(tmp_path / "b", bad))
    with pytest.raises(DataError, match="lacks"):
        load_dataset("sfm120k", _sfm(tmp_path / "c", {"train": {"cids": []}}))


def _msls_side(folder, keys, utm, panos):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "postprocessed.csv").write_text(
        ",key,easting,northing,night,control_panel,view_direction,unique_cluster\n"
        + "".join(f"{i},{k},{e},{n},False,False,Forward,{i}\n" for i, (k, (e, n)) in enumerate(zip(keys, utm)))
    )
    (folder / "raw.csv").write_text(
        ",key,lon,lat,ca,captured_at,pano\n"
        + "".join(f"{i},{k},12.5,55.6,90.0,1500000000000,{p}\n" for i, (k, p) in enumerate(zip(keys, panos)))
    )
    for i, k in enumerate(keys):
        write_jpg(folder / "images" / f"{k}.jpg", seed=i)


def _msls(root):
    base = root / "train_val"
    _msls_side(base / "cph" / "query", ["q1", "q2", "q3"], [(0, 0), (1000, 0), (0, 5)], [False, False, True])
    _msls_side(
        base / "cph" / "database",
        ["d1", "d2", "d3", "d4"],
        [(10, 0), (0, 24.9), (0, 25.1), (30, 30)],
        [False, False, False, False],
    )
    _msls_side(base / "sf" / "query", ["s1"], [(0, 0)], [False])
    _msls_side(base / "sf" / "database", ["e1", "e2"], [(3, 4), (0, 0)], [False, True])
    return root


def test_msls(tmp_path):
    ds = load_dataset("msls", _msls(tmp_path))
    # q2 has nothing within 25 m, q3 is a panorama: both dropped (as the official loader does)
    assert ds.query_ids == ["cph/query/q1", "sf/query/s1"]
    assert ds.gallery_ids == [
        "cph/database/d1",
        "cph/database/d2",
        "cph/database/d3",
        "cph/database/d4",
        "sf/database/e1",
    ]
    pos, ign = ds.ground_truth()
    # brute-force reference: Euclidean UTM distance < 25 m within the city
    assert pos[0].tolist() == [0, 1] and pos[1].tolist() == [4] and ign[0].tolist() == []
    assert verify_images(ds) == 7


def test_msls_bad_input(tmp_path):
    with pytest.raises(DataError, match="train_val"):
        load_dataset("msls", tmp_path)
    root = _msls(tmp_path / "a")
    (root / "train_val" / "sf" / "database" / "raw.csv").unlink()
    with pytest.raises(DataError, match="raw.csv"):
        load_dataset("msls", root)
    p = root / "train_val" / "cph" / "query" / "postprocessed.csv"
    p.write_text(p.read_text() + "9,q9,1.0\n")
    with pytest.raises(DataError, match="postprocessed.csv:5: expected 8 columns"):
        load_dataset("msls", root, cities="cph")
