"""The ``folder`` reader: sub-folders or a CSV as groups, odd inputs, and real photos through the pipeline."""

import logging

import numpy as np
import pytest
from layout_fixtures import corrupt, write_jpg
from tests.shared_data import SHARED_DATA, shared

from relook.datasets import load_dataset
from relook.errors import ConfigError, DataError
from relook.features.base import EXTRACTORS, Extractor
from relook.types import ImageFeatures

KODAK = SHARED_DATA / "photos" / "Kodak24"


@EXTRACTORS.register("folder_test_thumb")
class Thumb(Extractor):
    """8x8 colour thumbnail as a 192-d global descriptor (test only)."""

    name = "folder_test_thumb"
    default_conf = {}
    writes = frozenset({"global_desc"})

    def extract_one(self, image_id, image):
        from PIL import Image

        v = np.asarray(Image.fromarray(image).resize((8, 8)), np.float32).ravel() - 127.5
        return ImageFeatures(image_id, global_desc=v / (np.linalg.norm(v) + 1e-9), image_size=image.shape[:2])


def _tree(root, layout):
    """``layout``: {group folder: number of images}; images named <group>/<i>.jpg."""
    for k, (g, n) in enumerate(layout.items()):
        for i in range(n):
            write_jpg(root / g / f"{i}.jpg", seed=10 * k + i)
    return root


def test_smoke_subfolders(tmp_path):
    root = _tree(tmp_path / "photos", {"mug": 3, "bike": 2})
    (root / "mug" / "notes.txt").write_text("not an image")
    (root / "bike" / ".DS_Store").write_bytes(b"\0")
    ds = load_dataset("folder", root)
    ids = ["bike/0.jpg", "bike/1.jpg", "mug/0.jpg", "mug/1.jpg", "mug/2.jpg"]
    assert ds.query_ids == ids and ds.gallery_ids == ids and ds.protocol == "labels"
    assert ds.query_in_gallery.tolist() == [0, 1, 2, 3, 4] and ds.info["groups"] == ["bike", "mug"]
    pos, ign = ds.ground_truth()
    assert [p.tolist() for p in pos] == [[1], [0], [3, 4], [2, 4], [2, 3]]  # same group, itself left out
    assert [i.tolist() for i in ign] == [[0], [1], [2], [3], [4]]
    assert ds.info["ignored_files"] == 1 and ds.gallery[0][1] == root / "bike" / "0.jpg"


def test_csv_and_split(tmp_path):
    root = _tree(tmp_path / "imgs", {"a": 2, "b": 3})
    (root / "groups.csv").write_text(
        "image,group,split\na/0.jpg,x,test\na/1.jpg,x,test\nb/0.jpg,y,train\nb/1.jpg,y,train\nb/2.jpg,x,test\n"
    )
    ds = load_dataset("folder", root, csv="groups.csv", split="test", allow_one_group=True)
    assert ds.query_ids == ["a/0.jpg", "a/1.jpg", "b/2.jpg"]
    assert [p.tolist() for p in ds.ground_truth()[0]] == [[1, 2], [0, 2], [0, 1]]
    with pytest.raises(DataError, match=r"one group \('y'\) and no other image.*allow_one_group"):
        load_dataset("folder", root, csv=root / "groups.csv", split="train")  # one group: metrics all 100 %
    train = load_dataset("folder", root, csv=root / "groups.csv", split="train", allow_one_group=True)
    assert train.query_ids == ["b/0.jpg", "b/1.jpg"] and train.info["groups"] == ["y"]
    assert len(load_dataset("folder", root, csv="groups.csv").query_ids) == 5  # no split: every row
    # without a csv, split reads ROOT/<split>
    _tree(tmp_path / "sets" / "val", {"g": 2})
    val = load_dataset("folder", tmp_path / "sets", split="val", allow_one_group=True)
    assert val.query_ids == ["g/0.jpg", "g/1.jpg"]


def test_unreadable_skipped_with_count(tmp_path, caplog):
    root = _tree(tmp_path / "p", {"a": 3, "b": 2, "c": 2})
    corrupt(root / "a" / "1.jpg")
    (root / "b" / "0.jpg").write_bytes(b"garbage")
    (root / "c" / "1.png").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="relook.datasets.folder"):
        ds = load_dataset("folder", root)
    lines = [r.getMessage() for r in caplog.records]
    assert any("skipped 3 unreadable images: a/1.jpg (" in m and ", b/0.jpg (not an image" in m for m in lines), lines
    assert any(", c/1.png (not an image format Pillow reads)" in m for m in lines), lines
    assert "a/1.jpg" not in ds.gallery_ids and ds.info["unreadable"] == ["a/1.jpg", "b/0.jpg", "c/1.png"]
    # b lost one of its two images: a group of one, kept in the gallery as a distractor, not a query
    assert any("1 group of one image (no positive), kept as gallery distractors" in m and "b/1.jpg" in m for m in lines)
    assert ds.gallery_ids == ["a/0.jpg", "a/2.jpg", "b/1.jpg", "c/0.jpg", "c/1.jpg"]
    assert ds.query_ids == ["a/0.jpg", "a/2.jpg", "c/0.jpg", "c/1.jpg"]
    assert len(lines) == 2
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="relook.datasets.folder"):
        load_dataset("folder", root)  # read again by the next pipeline stage: no repeated warnings
    assert not caplog.records


def test_singletons_distractor_or_drop(tmp_path, caplog):
    root = _tree(tmp_path / "p", {"a": 2, "lone": 1})
    write_jpg(root / "loose.jpg", seed=5)  # directly in ROOT: no group
    with caplog.at_level(logging.WARNING, logger="relook.datasets.folder"):
        ds = load_dataset("folder", root)
    assert ds.gallery_ids == ["a/0.jpg", "a/1.jpg", "lone/0.jpg", "loose.jpg"]
    assert ds.query_ids == ["a/0.jpg", "a/1.jpg"] and ds.query_in_gallery.tolist() == [0, 1]
    pos, ign = ds.ground_truth()
    assert [p.tolist() for p in pos] == [[1], [0]] and [i.tolist() for i in ign] == [[0], [1]]
    assert ds.gallery_labels[2] != ds.gallery_labels[3]  # distractors never count as positives
    assert "1 group of one image (no positive), kept as gallery distractors, not queries: lone/0.jpg" in caplog.text
    dropped = load_dataset("folder", root, singletons="drop")
    assert dropped.gallery_ids == ["a/0.jpg", "a/1.jpg", "loose.jpg"]


def test_symlinks_followed_once(tmp_path, caplog):
    """A loop (a folder linking to its parent), a linked folder and a linked file: every real file is read
    once, under its own name, and the loops and duplicates are counted in one warning line. Reference: the
    inodes of the files written here, one id each."""
    import os

    root = _tree(tmp_path / "p", {"a": 2, "b": 3})
    (root / "a" / "up").symlink_to("..")  # a/up/a/up/... : a loop
    (root / "c").symlink_to(root / "a")  # a second name of group a's folder (and of its loop)
    (root / "b" / "again.jpg").symlink_to(root / "b" / "0.jpg")
    outside = _tree(tmp_path / "elsewhere", {"x": 2})
    (root / "d").symlink_to(outside / "x")  # a linked folder outside ROOT: its files are new, kept
    (root / "e").mkdir()
    (root / "e" / "ext.jpg").symlink_to(outside / "x" / "1.jpg")  # ... read once: as d/1.jpg, first in order
    with caplog.at_level(logging.WARNING, logger="relook.datasets.folder"):
        ds = load_dataset("folder", root)
    real = {os.stat(p).st_ino for p in [*root.glob("[ab]/*.jpg"), *outside.glob("x/*.jpg")] if not p.is_symlink()}
    inodes = [os.stat(root / i).st_ino for i in ds.gallery_ids]
    assert sorted(inodes) == sorted(real) and len(set(inodes)) == len(inodes) == 7
    assert ds.gallery_ids == ["a/0.jpg", "a/1.jpg", "b/0.jpg", "b/1.jpg", "b/2.jpg", "d/0.jpg", "d/1.jpg"]
    assert ds.info["groups"] == ["a", "b", "d"]
    lines = [r.getMessage() for r in caplog.records if "symlinks" in r.getMessage()]
    assert len(lines) == 1 and "2 symlink loops not entered (a/up -> ., c/up -> .)" in lines[0], lines
    assert "4 duplicates of files already read skipped" in lines[0] and "b/again.jpg = b/0.jpg" in lines[0]
    assert "e/ext.jpg = d/1.jpg" in lines[0]


def test_one_group_refused_unless_allowed(tmp_path, caplog):
    """One group and nothing else: every metric would be 100 %, so it is refused (one line), or read with
    one warning when the user sets allow_one_group; a loose distractor image makes it a real benchmark."""
    root = _tree(tmp_path / "p", {"only": 3})
    with pytest.raises(DataError, match=r"p: one group \('only'\) and no other image.*100 %") as e:
        load_dataset("folder", root)
    assert "\n" not in str(e.value) and "dataset.allow_one_group=true" in str(e.value)
    with caplog.at_level(logging.WARNING, logger="relook.datasets.folder"):
        ds = load_dataset("folder", root, allow_one_group=True)
    assert ds.query_ids == ["only/0.jpg", "only/1.jpg", "only/2.jpg"] and "allow_one_group is set" in caplog.text
    write_jpg(root / "loose.jpg", seed=99)  # an image of no group: a negative for every query
    assert "loose.jpg" in load_dataset("folder", root).gallery_ids


def test_bad_input(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty: no images found"):
        load_dataset("folder", tmp_path / "empty")
    root = _tree(tmp_path / "p", {"a": 2})
    (root / "g.csv").write_text("image,group\na/0.jpg,x\na/9.jpg,x\nb/1.jpg,y\n")
    with pytest.raises(DataError, match=r"g.csv: 2 listed image\(s\) not found under .*'a/9.jpg' \(row 3\)") as e:
        load_dataset("folder", root, csv="g.csv")
    assert "\n" not in str(e.value)
    (root / "h.csv").write_text("image,group\na/0.jpg,x\na/0.jpg,y\n")
    with pytest.raises(DataError, match="listed twice"):
        load_dataset("folder", root, csv="h.csv")
    (root / "n.csv").write_text("img,grp\na/0.jpg,x\n")
    with pytest.raises(DataError, match="lacks column"):
        load_dataset("folder", root, csv="n.csv")
    with pytest.raises(DataError, match="nope.csv: CSV not found"):
        load_dataset("folder", root, csv="nope.csv")
    (root / "s.csv").write_text("image,group\na/0.jpg,x\na/1.jpg,x\n")
    with pytest.raises(ConfigError, match="no 'split' column"):
        load_dataset("folder", root, csv="s.csv", split="test")
    (root / "one.csv").write_text("image,group\na/0.jpg,x\na/1.jpg,y\n")
    with pytest.raises(DataError, match="no group has two readable images"):
        load_dataset("folder", root, csv="one.csv")
    with pytest.raises(DataError, match="no such split folder"):
        load_dataset("folder", root, split="train")
    with pytest.raises(ConfigError, match="singletons"):
        load_dataset("folder", root, singletons="keep")
    with pytest.raises(DataError, match="not a folder"):
        load_dataset("folder", root / "a" / "0.jpg")


def test_cli_bad_input_exit_2(tmp_path, capsys):
    from relook.cli import main

    (tmp_path / "empty").mkdir()
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        f"dataset: {{name: folder, root: {tmp_path / 'empty'}}}\nextractors: [{{name: folder_test_thumb}}]\n"
        f"rerankers: []\nout: {tmp_path / 'run'}\n"
    )
    assert main(["run", "-c", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no images found" in err and err.count("\n") == 0


@pytest.mark.slow  # ~8 CPU-s: relook run on real photos
def test_real_photos_end_to_end(tmp_path, capsys):
    """12 Kodak photos, read in place, in 4 groups of 3: as symlinked sub-folders and as a CSV over the
    original folder; `relook run` goes end to end and every query gets all 11 other photos, never itself."""
    shared("photos", "Kodak24")
    from relook.cli import main
    from relook.types import Shortlist

    photos = sorted(KODAK.glob("*.jpg"))[:12]
    assert len(photos) == 12
    root = tmp_path / "mine"
    for i, p in enumerate(photos):  # sub-folder layout via symlinks: kodak_0 .. kodak_3, three photos each
        (root / f"kodak_{i // 3}").mkdir(parents=True, exist_ok=True)
        (root / f"kodak_{i // 3}" / p.name).symlink_to(p)
    ds = load_dataset("folder", root)
    assert len(ds.query_ids) == 12 and ds.info["groups"] == [f"kodak_{g}" for g in range(4)]
    csv = tmp_path / "groups.csv"  # the same grouping as a CSV over the original folder
    csv.write_text("image,group\n" + "".join(f"{p.name},g{i // 3}\n" for i, p in enumerate(photos)))
    by_csv = load_dataset("folder", KODAK, csv=csv)
    assert [p.tolist() for p in by_csv.ground_truth()[0]] == [p.tolist() for p in ds.ground_truth()[0]]
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        f"dataset: {{name: folder, root: {KODAK}, csv: {csv}}}\nextractors: [{{name: folder_test_thumb}}]\n"
        f"shortlist: {{k: 11}}\nrerankers: []\nout: {tmp_path / 'run'}\n"
    )
    assert main(["run", "-c", str(cfg), "--quiet"]) == 0
    assert "folder" in capsys.readouterr().out
    sl = Shortlist.load(tmp_path / "run" / "shortlist.npz")
    assert sl.k == 11
    for q, row in enumerate(sl.indices):
        assert sorted(row.tolist()) == [j for j in range(12) if j != q]
    assert not any((tmp_path / "run").rglob("*.jpg"))  # photos read in place, never copied


def test_distractor_through_pipeline(tmp_path):
    """A group of one: in the gallery (a candidate of every query), not a query; one feature store."""
    from relook import pipeline
    from relook.experiment import load_config
    from relook.types import Shortlist

    root = _tree(tmp_path / "p", {"a": 2, "b": 2, "lone": 1})
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        f"dataset: {{name: folder, root: {root}}}\nextractors: [{{name: folder_test_thumb}}]\n"
        f"shortlist: {{k: 10}}\nrerankers: []\nout: {tmp_path / 'run'}\n"
    )
    conf = load_config([cfg], [])
    pipeline.extract(conf, progress=False)
    assert sorted(p.name for p in (tmp_path / "run/features/folder_test_thumb").iterdir()) == ["gallery.h5"]
    sl = Shortlist.load(pipeline.search(conf))
    assert sl.query_ids == ["a/0.jpg", "a/1.jpg", "b/0.jpg", "b/1.jpg"] and sl.k == 4
    gid = {g: i for i, g in enumerate(sl.gallery_ids)}
    for q, row in zip(sl.query_ids, sl.indices):
        assert sorted(sl.gallery_ids[i] for i in row) == sorted(set(gid) - {q})  # the distractor is a candidate
    res = pipeline.evaluate(conf)["metrics"]["global only"]
    assert 0.0 <= res["mAP"] <= 1.0
