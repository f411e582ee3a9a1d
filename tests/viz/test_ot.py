"""viz.ot and `relook visualize ot`: top pairs, PNG written, CLI end to end on a tiny random-init model."""

import cv2
import numpy as np
import pytest

from relook.cli import main
from relook.errors import ShapeError
from relook.features import create_extractor, extract_to_store
from relook.viz.ot import _cell_box, draw_ot_pair, top_pairs


def test_top_pairs_matches_reference():
    plan = np.random.default_rng(0).random((4, 6))
    got = top_pairs(plan, 3)
    ref = sorted(((i, j, plan[i, j]) for i in range(4) for j in range(6)), key=lambda t: -t[2])[:3]
    assert [(i, j) for i, j, _ in got] == [(i, j) for i, j, _ in ref]


def test_top_pairs_weighted_by_similarity():
    """Fig. 1 / 4 boxes: the pairs of largest T_ij * S_ij (Eq. 3's terms), from a loop over all pairs."""
    rng = np.random.default_rng(2)
    plan, sim = rng.random((5, 4)), rng.uniform(-1, 1, (5, 4))
    got = top_pairs(plan, 4, sim)
    ref = sorted(((i, j, plan[i, j] * sim[i, j]) for i in range(5) for j in range(4)), key=lambda t: -t[2])[:4]
    assert [(i, j) for i, j, _ in got] == [(i, j) for i, j, _ in ref]
    assert [(i, j) for i, j, _ in got] != [(i, j) for i, j, _ in top_pairs(plan, 4)]  # mass alone differs here
    np.testing.assert_allclose([w for _, _, w in got], [w for _, _, w in ref])


def test_cell_box():
    assert _cell_box(5, (2, 3), (100, 300)) == (200.0, 50.0, 100.0, 50.0)  # row 1, col 2


def test_smoke(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    out = draw_ot_pair(
        img,
        img,
        np.full(4, 0.25),
        np.full(9, 1 / 9),
        rng.random((4, 9)),
        (2, 2),
        (3, 3),
        tmp_path / "pair.png",
        top=3,
        title="test",
    )
    assert cv2.imread(str(out)) is not None


def test_bad_input(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ShapeError):
        draw_ot_pair(img, img, np.ones(4), np.ones(4), np.ones((4, 5)), (2, 2), (2, 2), tmp_path / "x.png")


def test_cli(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    ext = create_extractor(
        "vit_tokens", backbone="resnet50", pretrained=False, image_size=64, model_kwargs={"layers": (1, 1, 1, 1)}
    )
    items = [(n, tmp_path / n, None) for n in ("a.png", "b.png")]
    extract_to_store(ext, items, tmp_path / "f.h5", progress=False)
    out = tmp_path / "vis.png"
    code = main(
        [
            "visualize",
            "ot",
            "a.png",
            "b.png",
            "--query-store",
            str(tmp_path / "f.h5"),
            "--image-root",
            str(tmp_path),
            "-o",
            str(out),
            "--marginal",
            "cross",
        ]
    )
    assert code == 0 and cv2.imread(str(out)) is not None
    assert main(["visualize", "ot", "a.png", "zzz", "--query-store", str(tmp_path / "f.h5"), "-o", str(out)]) == 2
    # the title names the backbone and the store's weights record, never a bare "?"
    from relook.viz.ot import store_backbone_and_weights

    assert (
        store_backbone_and_weights(tmp_path / "f.h5") == "vit_tokens backbone resnet50, weights: random init (seed 0)"
    )


@pytest.mark.slow  # ~12 s: the OT reranker over a sweep of masses (make test-fast leaves it out)
def test_mass_sweep(tmp_path):
    """`relook visualize ot-sweep` (Fig. 3): one ranking per a, each scored exactly as a reranker configured
    with that a in the experiment itself, and a PNG."""
    import json

    import yaml

    rng = np.random.default_rng(3)
    root = tmp_path / "data"
    root.mkdir()
    for c in range(3):
        base = rng.integers(0, 255, 3)
        for v in range(3):
            img = np.clip(base + rng.normal(0, 40, (48, 48, 3)), 0, 255).astype(np.uint8)
            cv2.imwrite(str(root / f"{c}_{v}.png"), img)
    from relook.datasets.base import DATASETS, labelled_split

    if "toy_sweep" not in DATASETS.names():

        @DATASETS.register("toy_sweep")
        def toy_sweep(root):
            paths = sorted(root.glob("*.png"))
            return labelled_split(
                "toy_sweep", root, [(p.stem, p, None) for p in paths], [int(p.stem[0]) for p in paths]
            )

    ext = {
        "name": "vit_tokens",
        "backbone": "resnet50",
        "pretrained": False,
        "image_size": 64,
        "model_kwargs": {"layers": [1, 1, 1, 1]},
        "grid": 2,
    }
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "dataset": {"name": "toy_sweep", "root": str(root)},
                "extractors": [ext],
                "shortlist": {"k": 8},
                "rerankers": [
                    {"name": "ot", "label": "ot", "marginal": "uniform"},
                    {"name": "ot", "label": "ot-half", "marginal": "uniform", "partial": 0.5},
                ],
                "out": str(tmp_path / "run"),
            }
        )
    )
    assert main(["run", "-c", str(cfg), "--quiet"]) == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())["metrics"]
    png = tmp_path / "sweep.png"
    assert (
        main(
            [
                "visualize",
                "ot-sweep",
                "-c",
                str(cfg),
                "--reranker",
                "ot",
                "--masses",
                "0.5,1.0",
                "-o",
                str(png),
                "--quiet",
            ]
        )
        == 0
    )
    assert cv2.imread(str(png)) is not None
    from relook.experiment import load_config
    from relook.viz.ot import sweep_mass

    _, table = sweep_mass(load_config([cfg], []), [0.5, 1.0], "ot", tmp_path / "again.png")
    for a, label in ((1.0, "ot"), (0.5, "ot-half")):
        for m in ("P@1", "RP", "MAP@R"):
            assert table[a][m] == pytest.approx(res[label][m])
