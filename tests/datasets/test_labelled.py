"""SOP, CUB, Cars196 and GLDv2 readers on fixtures in their official layouts."""

import numpy as np
import pytest
import scipy.io
from layout_fixtures import corrupt, write_jpg

from relook.datasets import load_dataset
from relook.datasets.verify import verify_images
from relook.errors import ConfigError, DataError


# ---------------------------------------------------------------- SOP
def _sop(root, rows=None):
    rows = rows or ["1 1 1 bicycle_final/1_0.JPG", "2 1 1 bicycle_final/1_1.JPG", "3 2 3 chair_final/2_0.JPG"]
    root.mkdir(parents=True, exist_ok=True)
    (root / "Ebay_test.txt").write_text("image_id class_id super_class_id path\n" + "\n".join(rows) + "\n")
    for i, r in enumerate(rows):
        write_jpg(root / r.split()[-1], seed=i)
    return root


def test_sop(tmp_path):
    ds = load_dataset("sop", _sop(tmp_path))
    assert ds.query_ids == ["bicycle_final/1_0.JPG", "bicycle_final/1_1.JPG", "chair_final/2_0.JPG"]
    pos, ign = ds.ground_truth()
    assert pos[0].tolist() == [1] and pos[2].tolist() == [] and ign[1].tolist() == [1]
    assert ds.info["super_labels"] == [1, 1, 3]
    assert verify_images(ds) == 3


def test_sop_bad_input(tmp_path):
    with pytest.raises(DataError, match="Ebay_train.txt"):
        load_dataset("sop", tmp_path, split="train")
    with pytest.raises(DataError, match=r"Ebay_test.txt:3: expected 4 columns"):
        load_dataset("sop", _sop(tmp_path / "a", ["1 1 1 x/1.JPG", "2 1 x/2.JPG"]))
    with pytest.raises(ConfigError):
        load_dataset("sop", tmp_path, split="val")
    root = _sop(tmp_path / "b")
    corrupt(root / "chair_final" / "2_0.JPG")
    with pytest.raises(DataError, match="2_0.JPG"):
        verify_images(load_dataset("sop", root))


# ---------------------------------------------------------------- CUB
def _cub(root, labels=((1, 1), (2, 1), (3, 101), (4, 150)), extra_images=""):
    root.mkdir(parents=True, exist_ok=True)
    names = {i: f"{c:03d}.Bird_{c}/Bird_{i}.jpg" for i, c in labels}
    (root / "images.txt").write_text("".join(f"{i} {n}\n" for i, n in names.items()) + extra_images)
    (root / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, c in labels))
    for i, n in names.items():
        write_jpg(root / "images" / n, seed=i)
    return root


def test_cub(tmp_path):
    root = _cub(tmp_path)
    train, test = load_dataset("cub", root, split="train"), load_dataset("cub", root, split="test")
    assert train.query_ids == ["001.Bird_1/Bird_1.jpg", "001.Bird_1/Bird_2.jpg"]
    assert test.query_labels.tolist() == [101, 150] and test.gallery[0][1].exists()
    assert train.ground_truth()[0][0].tolist() == [1]


def test_cub_bad_input(tmp_path):
    with pytest.raises(DataError, match="images.txt"):
        load_dataset("cub", tmp_path)
    with pytest.raises(DataError, match="unknown class id 201"):
        load_dataset("cub", _cub(tmp_path / "a", labels=((1, 1), (2, 201))))
    with pytest.raises(DataError, match=r"images.txt:3: expected 2 columns"):
        load_dataset("cub", _cub(tmp_path / "b", labels=((1, 1), (2, 3)), extra_images="3 a b\n"))


# ---------------------------------------------------------------- Cars196
def _cars(root, classes=(1, 1, 98, 99, 196)):
    root.mkdir(parents=True, exist_ok=True)
    dt = [
        ("bbox_x1", "O"),
        ("bbox_y1", "O"),
        ("bbox_x2", "O"),
        ("bbox_y2", "O"),
        ("class", "O"),
        ("test", "O"),
        ("relative_im_path", "O"),
    ]
    ann = np.zeros((1, len(classes)), dtype=dt)
    for i, c in enumerate(classes):
        ann[0, i] = (
            np.array([[1]]),
            np.array([[1]]),
            np.array([[20]]),
            np.array([[20]]),
            np.array([[c]], np.uint8),
            np.array([[i % 2]], np.uint8),
            np.array([f"car_ims/{i + 1:06d}.jpg"]),
        )
        write_jpg(root / "car_ims" / f"{i + 1:06d}.jpg", seed=i)
    class_names = np.array([[f"car {k}" for k in range(1, 197)]], dtype=object)
    scipy.io.savemat(root / "cars_annos.mat", {"annotations": ann, "class_names": class_names})
    return root


def test_cars(tmp_path):
    root = _cars(tmp_path)
    train, test = load_dataset("cars", root, split="train"), load_dataset("cars", root, split="test")
    assert train.query_ids == ["car_ims/000001.jpg", "car_ims/000002.jpg", "car_ims/000003.jpg"]
    assert train.query_labels.tolist() == [1, 1, 98] and test.query_labels.tolist() == [99, 196]
    assert verify_images(test) == 2


def test_cars_bad_input(tmp_path):
    with pytest.raises(DataError, match="cars_annos.mat"):
        load_dataset("cars", tmp_path)
    with pytest.raises(DataError, match="unknown class id 197"):
        load_dataset("cars", _cars(tmp_path / "a", classes=(1, 197)))
    root = _cars(tmp_path / "b")
    corrupt(root / "cars_annos.mat")
    with pytest.raises(DataError, match="cars_annos.mat"):
        load_dataset("cars", root)


# ---------------------------------------------------------------- GLDv2
def _gld(root):
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.csv").write_text(
        "id,url,landmark_id\nabc123,http://x/a,7\nabd999,\"http://x/b,c\",7\nff0011,http://x/c,12\n"
    )
    (root / "train_clean.csv").write_text("landmark_id,images\n7,abc123 abd999\n12,ff0011\n")
    for i, image_id in enumerate(["abc123", "abd999", "ff0011"]):
        write_jpg(root / "train" / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg", seed=i)
    return root


@pytest.mark.parametrize("clean", [True, False])
def test_gldv2(tmp_path, clean):
    ds = load_dataset("gldv2", _gld(tmp_path), clean=clean)
    assert ds.query_ids == ["abc123", "abd999", "ff0011"] and ds.query_labels.tolist() == [7, 7, 12]
    assert ds.gallery[2][1] == tmp_path / "train" / "f" / "f" / "0" / "ff0011.jpg"
    assert verify_images(ds) == 3


def test_gldv2_bad_input(tmp_path):
    with pytest.raises(DataError, match="train_clean.csv"):
        load_dataset("gldv2", tmp_path)
    root = _gld(tmp_path / "a")
    (root / "train.csv").write_text("id,url,landmark_id\nabc123,http://x/a\n")
    with pytest.raises(DataError, match=r"train.csv:2: expected 3 columns"):
        load_dataset("gldv2", root, clean=False)
    (root / "train_clean.csv").write_text("landmark_id,images\nseven,abc123\n")
    with pytest.raises(DataError, match="train_clean.csv"):
        load_dataset("gldv2", root)
