"""`relook train rrt` and `relook visualize rrt-matches` end to end on a tiny synthetic dataset."""

import json
from pathlib import Path

import numpy as np
import pytest

from relook.cli import main
from relook.train.config import load_train_config

RECIPES = Path(__file__).resolve().parents[1] / "configs" / "train"


def _data(work):
    """The `-s` overrides naming the tiny co3d_retrieve training split."""
    return ["-s", "dataset.name=co3d_retrieve", "-s", f"dataset.root={work / 'ret'}", "-s", "dataset.split=train"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from relook.datasets.base import load_dataset
    from relook.datasets.co3d_retrieve import build_co3d_retrieve
    from relook.datasets.synthetic import generate_synthetic
    from relook.features.cnn_local import grid_keypoints
    from relook.store import FeatureStore
    from relook.types import ImageFeatures

    work = tmp_path_factory.mktemp("syn")
    generate_synthetic(work / "co3d", num_instances=6, num_views=5, image_size=64, seed=0)
    build_co3d_retrieve(work / "co3d", work / "ret", seed=0, masked=False, progress=False)
    ds = load_dataset("co3d_retrieve", work / "ret", split="train")
    rng = np.random.default_rng(0)
    with FeatureStore(work / "train.h5", "w") as st:  # random features: the CLI plumbing is under test
        for i in ds.gallery_ids:
            g = rng.standard_normal(32)
            st.write(
                ImageFeatures(
                    i,
                    global_desc=g / np.linalg.norm(g),
                    local_desc=rng.standard_normal((4, 128)),
                    keypoints=grid_keypoints(2, 2, 64, 64),
                    image_size=np.array([64, 64]),
                )
            )
    return work, ds


def test_train_and_visualize(tiny, tmp_path):
    work, ds = tiny
    out = tmp_path / "rrt"
    args = [
        "train",
        "rrt",
        str(work / "train.h5"),
        *_data(work),
        "-o",
        str(out),
        "-s",
        "train.epochs=1",
        "-s",
        "model.num_layers=1",
        "--no-progress",
    ]
    assert main(args) == 0
    assert (out / "checkpoint.pt").exists()
    conf = json.loads((out / "train_conf.json").read_text())
    assert conf["model"]["num_layers"] == 1 and conf["train"]["epochs"] == 1
    saved = load_train_config("rrt", [out / "train.yaml"])  # the resolved config, read back with -c
    assert (saved["store"], saved["out"], saved["model"], saved["train"]["epochs"]) == (
        str(work / "train.h5"),
        str(out),
        {"num_layers": 1},
        1,
    )
    (q, qp, _), (c, cp, _) = ds.gallery[0], ds.gallery[1]
    png = tmp_path / "m.png"
    assert (
        main(
            [
                "visualize",
                "rrt-matches",
                str(out / "checkpoint.pt"),
                str(work / "train.h5"),
                q,
                c,
                "--query-image",
                str(qp),
                "--candidate-image",
                str(cp),
                "-o",
                str(png),
            ]
        )
        == 0
    )
    assert png.exists() and png.stat().st_size > 1000


def test_bad_input(tiny, tmp_path, capsys):
    work, _ = tiny
    args = ["train", "rrt", str(work / "train.h5"), *_data(work), "-s", "dataset.split", "-o", str(tmp_path)]
    assert main(args) == 2
    assert "override 'dataset.split' must look like key.sub=value" in capsys.readouterr().err


def test_train_from_pseudo_gt(tmp_path):
    """`relook train rrt -s guidance.kind=epi -s guidance.pseudo_gt=FILE` on a dataset with no cameras (seed 002, Table 2 SOP)."""
    import cv2
    import h5py

    from relook.datasets.base import load_dataset
    from relook.features.cnn_local import grid_keypoints
    from relook.geometry.epipolar import random_fundamental
    from relook.geometry.robust import pair_key, positive_pairs
    from relook.store import FeatureStore
    from relook.types import ImageFeatures

    rng = np.random.default_rng(0)
    for g in range(4):
        (tmp_path / "data" / f"g{g}").mkdir(parents=True)
        for v in range(3):
            cv2.imwrite(str(tmp_path / "data" / f"g{g}" / f"{v}.png"), rng.integers(0, 255, (32, 48, 3), np.uint8))
    ds = load_dataset("folder", tmp_path / "data")
    assert not ds.info.get("cameras")
    with FeatureStore(tmp_path / "s.h5", "w") as st:
        for i in ds.gallery_ids:
            g = rng.standard_normal(16)
            st.write(
                ImageFeatures(
                    i,
                    global_desc=g / np.linalg.norm(g),
                    local_desc=rng.standard_normal((4, 128)),
                    keypoints=grid_keypoints(2, 2, 32, 48),
                    image_size=np.array([32, 48]),
                )
            )
    with h5py.File(tmp_path / "pgt.h5", "w") as f:
        for k, (a, b) in enumerate(positive_pairs(ds.gallery_labels, ds.gallery_ids)):
            gr = f.create_group(pair_key(a, b))
            gr.create_dataset("F", data=random_fundamental(seed=k).numpy())
            gr.attrs.update({"id1": a, "id2": b, "num_matches": 50, "num_inliers": 40, "reliable": True, "done": True})
    out = tmp_path / "rrt"
    args = [
        "train",
        "rrt",
        str(tmp_path / "s.h5"),
        "-s",
        "dataset.name=folder",
        "-s",
        f"dataset.root={tmp_path / 'data'}",
        "-o",
        str(out),
        "-s",
        "train.epochs=1",
        "-s",
        "model.num_layers=1",
        "--no-progress",
        "-s",
        "guidance.kind=epi",
        "-s",
        "guidance.weight=1.0",
        "-s",
        f"guidance.pseudo_gt={tmp_path / 'pgt.h5'}",
    ]
    assert main(args) == 0
    log = json.loads((out / "log.jsonl").read_text())
    assert log["loss"] > log["bce"] + 1e-3  # the epipolar loss of the pseudo-GT pairs was added


def test_train_recipe_and_flags(tiny, tmp_path, capsys):
    work, _ = tiny
    out = tmp_path / "rrt"
    args = [
        "train",
        "rrt",
        str(work / "train.h5"),
        *_data(work),
        "-o",
        str(out),
        "-c",
        str(RECIPES / "rrt-epipolar-sop.yaml"),
        "-s",
        "train.epochs=1",
        "-s",
        "train.weight_decay=1e-3",
        "-s",
        "train.milestones=[5,7]",
        "-s",
        "train.top_k=6",
        "-s",
        "train.triplets_per_batch=4",
        "-s",
        "model.num_layers=1",
        "--no-progress",
    ]
    assert main(args) == 0
    tc = json.loads((out / "train_conf.json").read_text())["train"]
    assert (tc["epochs"], tc["weight_decay"], tc["milestones"], tc["top_k"], tc["positives"], tc["lr"]) == (
        1,
        1e-3,
        [5, 7],
        6,
        "label",
        1e-4,
    )
    assert main(args + ["-s", "train.milestones=x"]) == 2
    assert "train.milestones" in capsys.readouterr().err


def test_train_distill_then_bce(tiny, tmp_path, capsys):
    """train.loss=distill (needs a global token), then a train.init_checkpoint warm start; bad values exit 2."""
    work, _ = tiny
    base = [
        "train", "rrt", str(work / "train.h5"), *_data(work), "-s", "train.epochs=1", "-s", "train.top_k=6",
        "-s", "model.num_layers=1", "--no-progress",
    ]  # fmt: skip
    d = tmp_path / "distill"
    args = base + [
        "-o",
        str(d),
        "-s",
        "train.loss=distill",
        "-s",
        "train.distill_pairs=3",
        "-s",
        "train.pairs_per_batch=8",
    ]
    assert main(args + ["-s", "model.d_global=32"]) == 0
    log = json.loads((d / "log.jsonl").read_text())
    assert "mse" in log and "teacher_std" in log
    f = tmp_path / "bce"
    warm = ["-s", "model.d_global=32", "-s", f"train.init_checkpoint={d / 'checkpoint.pt'}"]
    assert main(base + ["-o", str(f), *warm]) == 0
    assert json.loads((f / "train_conf.json").read_text())["train"]["init_checkpoint"] == str(d / "checkpoint.pt")
    capsys.readouterr()
    assert main(args + ["-s", "model.d_global=0"]) == 2  # no global token: the teacher cannot be read
    assert "error:" in capsys.readouterr().err
    assert main(base + ["-o", str(tmp_path / "x"), "-s", "train.loss=nope"]) == 2
    missing = base + ["-o", str(tmp_path / "y"), "-s", f"train.init_checkpoint={tmp_path / 'none.pt'}"]
    assert main(missing) == 2
