import numpy as np
import pytest

from relook.cli import main
from relook.features.delg_reader import write_delg_files
from relook.search import exact_search
from relook.store import FeatureStore
from relook.types import Ranking


@pytest.fixture()
def delg_release(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(6):
        n = 40
        g = rng.normal(size=32).astype(np.float32)
        write_delg_files(
            tmp_path / "data" / "delg_r50",
            f"im{i}",
            g,
            rng.uniform(0, 300, (n, 2)),
            np.ones(n),
            rng.normal(size=(n, 16)),
            np.sort(rng.uniform(size=n))[::-1],
        )
        lines.append(f"jpg/im{i}.jpg,{i},320,240")
    (tmp_path / "data" / "test_gallery.txt").write_text("\n".join(lines))
    return tmp_path


def test_import_stats_rerank(delg_release, tmp_path, capsys):
    store = tmp_path / "db.h5"
    assert (
        main(
            [
                "classic",
                "import-delg",
                str(tmp_path / "data"),
                "r50",
                "test_gallery.txt",
                "-o",
                str(store),
                "--max-local",
                "30",
            ]
        )
        == 0
    )
    assert main(["classic", "local-stats", str(store), "--top-n", "20"]) == 0
    out = capsys.readouterr().out
    assert "6 images, 20.0 local features" in out
    with FeatureStore(store) as st:
        g = st.stack("global_desc")
        exact_search(g, g, 6, st.ids(), st.ids()).save(tmp_path / "sl.npz")
    for method, sets in (("gv", ["model=homography", "threshold=3"]), ("aqe", ["n=1"]), ("asmk", ["codebook_size=8"])):
        out_path = tmp_path / f"{method}.npz"
        args = [
            "classic",
            "rerank",
            str(tmp_path / "sl.npz"),
            str(store),
            str(store),
            "-o",
            str(out_path),
            "--method",
            method,
        ]
        for s in sets:
            args += ["--set", s]
        assert main(args) == 0
        assert Ranking.load(out_path).indices.shape == (6, 6)
    assert main(["classic", "codebook", str(store), "-o", str(tmp_path / "cb.npy"), "--size", "8"]) == 0
    assert np.load(tmp_path / "cb.npy").shape == (8, 16)
    assert (
        main(
            [
                "classic",
                "asmk-search",
                str(store),
                str(store),
                "-o",
                str(tmp_path / "a.npz"),
                "--k",
                "3",
                "--set",
                f"codebook_path={tmp_path / 'cb.npy'}",
            ]
        )
        == 0
    )
    assert Ranking.load(tmp_path / "a.npz").indices.shape == (6, 3)


def test_bad_input(tmp_path, capsys):
    assert main(["classic", "rerank", "x.npz", "q.h5", "g.h5", "-o", "o.npz", "--method", "sift"]) == 2
    assert main(["classic", "extract-sift", str(tmp_path), "-o", str(tmp_path / "s.h5")]) == 2
    assert "no images" in capsys.readouterr().err


def test_extract_sift(tmp_path):
    import cv2

    from tests.synthetic_images import textured_image

    (tmp_path / "imgs" / "sub").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "imgs" / "a.png"), textured_image(128, 0))
    cv2.imwrite(str(tmp_path / "imgs" / "sub" / "b.jpg"), textured_image(128, 1))
    assert (
        main(
            [
                "classic",
                "extract-sift",
                str(tmp_path / "imgs"),
                "-o",
                str(tmp_path / "s.h5"),
                "--num-features",
                "50",
                "--scales",
                "1,0.5",
            ]
        )
        == 0
    )
    with FeatureStore(tmp_path / "s.h5") as st:
        assert st.ids() == ["a", "sub/b"]
        assert 0 < st.read("a").num_local <= 50
