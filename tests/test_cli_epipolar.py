import cv2
from benchmarks.two_view_scene import render_two_views

from relook.cli import main
from relook.geometry.robust import read_pseudo_gt


def test_pseudo_gt_cli(tmp_path, capsys):
    a, b, _, _ = render_two_views(seed=2, delta_deg=20)
    (tmp_path / "im").mkdir()
    cv2.imwrite(str(tmp_path / "im" / "a.png"), a[..., ::-1])
    cv2.imwrite(str(tmp_path / "im" / "b.png"), b[..., ::-1])
    (tmp_path / "pairs.txt").write_text("a.png b.png\nb.png a.png\n")
    out = tmp_path / "pgt.h5"
    args = [
        "geometry",
        "pseudo-gt",
        str(tmp_path / "pairs.txt"),
        "--image-dir",
        str(tmp_path / "im"),
        "-o",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    assert "2 pairs, 2 reliable" in capsys.readouterr().out
    assert len(read_pseudo_gt(out)) == 2
    assert main(args) == 0  # resume: nothing to do
    assert main(["geometry", "pseudo-gt", str(tmp_path / "nope.txt"), "--image-dir", ".", "-o", str(out)]) == 2


def test_visualize_epipolar_attention_cli(tmp_path, capsys):
    import numpy as np
    import torch

    from relook.datasets.base import load_dataset
    from relook.datasets.co3d_retrieve import build_co3d_retrieve
    from relook.datasets.synthetic import generate_synthetic
    from relook.models.rrt import RRT
    from relook.models.rrt.checkpoint import save_rrt
    from relook.store import FeatureStore
    from relook.types import ImageFeatures

    generate_synthetic(tmp_path / "syn", num_instances=2, num_views=5, image_size=64, seed=0)
    build_co3d_retrieve(tmp_path / "syn", tmp_path / "ret", seed=0, progress=False)
    ds = load_dataset("co3d_retrieve", tmp_path / "ret", split="test", variant="full")
    ids = [i for i, _, _ in ds.gallery][:2]
    rng = np.random.default_rng(0)
    with FeatureStore(tmp_path / "f.h5", "w") as st:
        for i in ids:
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
    out = tmp_path / "epi.png"
    assert (
        main(
            [
                "visualize",
                "epipolar-attention",
                str(tmp_path / "rrt.pt"),
                str(tmp_path / "f.h5"),
                *ids,
                "--root",
                str(tmp_path / "ret"),
                "-o",
                str(out),
            ]
        )
        == 0
    )
    assert out.exists() and "epipolar attention share" in capsys.readouterr().out
    assert (
        main(
            [
                "visualize",
                "epipolar-attention",
                str(tmp_path / "rrt.pt"),
                str(tmp_path / "f.h5"),
                ids[0],
                "nope",
                "--root",
                str(tmp_path / "ret"),
                "-o",
                str(out),
            ]
        )
        == 2
    )
