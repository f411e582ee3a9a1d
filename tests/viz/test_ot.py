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


def test_cell_box():
    assert _cell_box(5, (2, 3), (100, 300)) == (200.0, 50.0, 100.0, 50.0)  # row 1, col 2


def test_smoke(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    out = draw_ot_pair(img, img, np.full(4, 0.25), np.full(9, 1 / 9), rng.random((4, 9)), (2, 2), (3, 3),
                       tmp_path / "pair.png", top=3, title="test")
    assert cv2.imread(str(out)) is not None


def test_bad_input(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ShapeError):
        draw_ot_pair(img, img, np.ones(4), np.ones(4), np.ones((4, 5)), (2, 2), (2, 2), tmp_path / "x.png")


def test_cli(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    ext = create_extractor("vit_tokens", backbone="resnet50", pretrained=False, image_size=64,
                           model_kwargs={"layers": (1, 1, 1, 1)})
    items = [(n, tmp_path / n, None) for n in ("a.png", "b.png")]
    extract_to_store(ext, items, tmp_path / "f.h5", progress=False)
    out = tmp_path / "vis.png"
    code = main(["visualize", "ot", "a.png", "b.png", "--query-store", str(tmp_path / "f.h5"),
                 "--image-root", str(tmp_path), "-o", str(out), "--marginal", "cross"])
    assert code == 0 and cv2.imread(str(out)) is not None
    assert main(["visualize", "ot", "a.png", "zzz", "--query-store", str(tmp_path / "f.h5"), "-o", str(out)]) == 2
    # the title names the backbone and the store's weights record, never a bare "?"
    from relook.cli_ot import backbone_and_weights

    assert backbone_and_weights(tmp_path / "f.h5") == "vit_tokens backbone resnet50, weights: random init (seed 0)"
