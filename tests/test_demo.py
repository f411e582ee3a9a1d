"""`relook demo` end to end in a subprocess on a tiny config (small backbones, 6 objects at 96 px)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tiny_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "relook.cli", "demo", "--out", str(out), "--num-instances", "6", "--image-size", "96",
           "--rrt-epochs", "1", "--config", str(ROOT / "configs/demo_tiny.yaml"), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SYNTHETIC data" in proc.stdout and "global only" in proc.stdout
    results = json.loads((out / "test/results.json").read_text())
    assert set(results["metrics"]) == {"global only", "gv", "aqe", "asmk", "rrt", "ot-relevancy"}
    for row in results["metrics"].values():
        assert 0.0 <= row["mAP"] <= 1.0 and 0.0 <= row["R@1"] <= 1.0
    page = (out / "test/report.html").read_text()
    for fig in ("pr_curves.png", "topk_rrt.png", "rrt_matches_rrt.png"):
        assert f"figures/{fig}" in page and (out / "test/figures" / fig).stat().st_size > 1000
    # second run: every stage skips its finished work (no file rewritten)
    stamps = {p: p.stat().st_mtime_ns for p in (out / "test").rglob("*.h5")}
    stamps.update({p: p.stat().st_mtime_ns for p in (out / "test/rankings").glob("*.npz")})
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[4/6] training" not in proc.stdout
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
