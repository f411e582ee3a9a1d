"""viz.rerankers: the report's RRT and OT pair figures on tiny stores (random-init RRT, tiny ResNet tokens)."""

import numpy as np
import torch

from relook.features import create_extractor, extract_to_store
from relook.models.rrt import RRT
from relook.models.rrt.checkpoint import save_rrt
from relook.store import FeatureStore
from relook.types import ImageFeatures
from relook.viz import rerankers


def test_rrt_strongest_only(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    with FeatureStore(tmp_path / "f.h5", "w") as st:
        for i in ("a", "b"):
            st.write(
                ImageFeatures(
                    i,
                    global_desc=rng.normal(size=8).astype(np.float32),
                    local_desc=rng.normal(size=(49, 128)).astype(np.float32),
                    keypoints=rng.uniform(0, 64, (49, 2)).astype(np.float32),
                    image_size=np.array([64, 64]),
                )
            )
    torch.manual_seed(0)
    save_rrt(tmp_path / "rrt.pt", RRT(variant="sop", num_layers=1))
    img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    out = rerankers.rrt_pair_figure(
        tmp_path / "rrt.pt", (tmp_path / "f.h5",) * 2, "a", "b", img, img, tmp_path / "m.png", strongest=5
    )
    assert out.exists() and out.stat().st_size > 1000
    seen = {}
    import relook.viz.correspondences as corr

    monkeypatch.setattr(corr, "draw_matches", lambda *a, **kw: seen.update(kw) or a[4])
    rerankers.rrt_pair_figure(tmp_path / "rrt.pt", (tmp_path / "f.h5",) * 2, "a", "b", img, img, tmp_path / "m.png", 5)
    assert seen["max_lines"] == 5 and seen["title"].startswith("a vs b: the 5 strongest of ")


def test_ot_names_backbone_and_weights(tmp_path, monkeypatch):
    import cv2

    rng = np.random.default_rng(1)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    ext = create_extractor(
        "vit_tokens", backbone="resnet50", pretrained=False, image_size=64, model_kwargs={"layers": (1, 1, 1, 1)}
    )
    extract_to_store(ext, [(n, tmp_path / n, None) for n in ("a.png", "b.png")], tmp_path / "f.h5", progress=False)
    img = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    out = rerankers.ot_pair_figure(
        {"marginal": "cross"}, (tmp_path / "f.h5",) * 2, "a.png", "b.png", img, img, tmp_path / "ot.png"
    )
    assert out.exists()
    seen = {}
    import relook.viz.ot as viz_ot

    monkeypatch.setattr(viz_ot, "draw_ot_pair", lambda *a, **kw: seen.update(kw) or a[7])
    rerankers.ot_pair_figure(
        {"marginal": "cross"}, (tmp_path / "f.h5",) * 2, "a.png", "b.png", img, img, tmp_path / "o.png"
    )
    assert seen["title"].endswith("vit_tokens backbone resnet50, weights: random init (seed 0)")
    assert "marginal=cross" in seen["title"] and "?" not in seen["title"]
