import subprocess
import sys

import numpy as np

from relook.cli import main
from relook.store import FeatureStore
from relook.types import ImageFeatures, Shortlist


def write_store(path, n, d, rng):
    with FeatureStore(path, "a", meta={"extractor": "random", "weights": "none"}) as s:
        for i in range(n):
            v = rng.normal(size=d)
            s.write(ImageFeatures(f"img{i}", global_desc=v / np.linalg.norm(v)))


def test_search_and_info(tmp_path, rng, capsys):
    write_store(tmp_path / "q.h5", 3, 8, rng)
    write_store(tmp_path / "g.h5", 20, 8, rng)
    assert (
        main(
            [
                "store",
                "search",
                str(tmp_path / "q.h5"),
                str(tmp_path / "g.h5"),
                "-o",
                str(tmp_path / "s.npz"),
                "--k",
                "5",
            ]
        )
        == 0
    )
    s = Shortlist.load(tmp_path / "s.npz")
    assert s.indices.shape == (3, 5) and s.meta["gallery.extractor"] == "random"
    assert main(["store", "info", str(tmp_path / "g.h5")]) == 0
    assert "20 images" in capsys.readouterr().out


def test_search_same_store_excludes_self(tmp_path, rng):
    write_store(tmp_path / "g.h5", 6, 8, rng)
    g = str(tmp_path / "g.h5")
    assert main(["store", "search", g, g, "-o", str(tmp_path / "s.npz"), "--k", "5"]) == 0
    s = Shortlist.load(tmp_path / "s.npz")
    assert s.k == 5 and all(q not in row and len(set(row.tolist())) == 5 for q, row in enumerate(s.indices))
    assert main(["store", "search", g, g, "-o", str(tmp_path / "k.npz"), "--k", "5", "--keep-self"]) == 0
    assert (Shortlist.load(tmp_path / "k.npz").indices[:, 0] == np.arange(6)).all()  # itself first when kept


def test_bad_input_one_line_exit_2(tmp_path, rng):
    write_store(tmp_path / "q.h5", 2, 4, rng)
    write_store(tmp_path / "g.h5", 5, 8, rng)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "relook.cli",
            "store",
            "search",
            str(tmp_path / "q.h5"),
            str(tmp_path / "g.h5"),
            "-o",
            str(tmp_path / "s.npz"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "dim 4 but the index has dim 8" in out.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "relook.cli", "store", "info", str(tmp_path / "nope.h5")], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "nope.h5" in missing.stderr and "Traceback" not in missing.stderr
