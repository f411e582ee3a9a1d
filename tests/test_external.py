"""``relook rerank --shortlist FILE`` / ``relook.rerank_external``: another system's shortlist (CSV or NPZ)
reranked from images found by id; on real UKBench photos it equals relook's own shortlist reranked."""

import csv

import numpy as np
import pytest

from relook.errors import DataError
from relook.external import image_paths, read_external, rerank_external, write_external
from relook.store import FeatureStore
from relook.types import Ranking
from tests.shared_data import shared


def test_read_csv(tmp_path):
    path = tmp_path / "sl.csv"
    path.write_text("query,gallery,score,extra\nq1,a,0.5,x\nq1,b,0.9,x\nq2,b,0.1,x\nq1,c,0.5,x\nq2,d,0.3,x\n")
    sl = read_external(path).shortlist
    assert sl.query_ids == ["q1", "q2"] and sl.gallery_ids == ["a", "b", "c", "d"]
    assert [sl.candidate_ids(0), sl.candidate_ids(1)] == [["b", "a", "c"], ["d", "b"]]  # score first, then file order
    assert np.allclose(sl.scores[0], [0.9, 0.5, 0.5]) and sl.indices[1, 2] == -1 and sl.scores[1, 2] == -np.inf


def test_roundtrip(tmp_path):
    """A ranking written in the form it came in reads back the same (CSV, NPZ with indices, NPZ with ids)."""
    rng = np.random.default_rng(0)
    idx = np.array([[2, 0, 1], [1, 3, -1]])
    scores = np.array([[3.0, 2.0, 1.0], [0.5, 0.25, -np.inf]], np.float32)
    ranking = Ranking(["q0", "q1"], ["g0", "g1", "g2", "g3"], idx, scores)
    for kind, layout in (("csv", "indices"), ("npz", "indices"), ("npz", "ids")):
        src = tmp_path / f"in.{kind}"
        if kind == "csv":
            src.write_text("query,gallery,score\nq0,g0,1\n")
        elif layout == "ids":
            np.savez(src, query_ids=np.array(["q0"]), ids=np.array([["g0"]]), scores=np.array([[1.0]]))
        else:
            ranking.save(src)
        like = read_external(src)
        assert (like.kind, like.npz_layout) == (kind, layout)
        out = write_external(ranking, like, tmp_path / f"out-{layout}.{kind}")
        back = read_external(out).shortlist
        assert back.query_ids == ranking.query_ids
        for q in range(2):
            assert back.candidate_ids(q) == ranking.candidate_ids(q)
            n = len(ranking.candidate_ids(q))
            assert np.array_equal(back.scores[q, :n], ranking.scores[q, :n])
    del rng


def test_bad_input(tmp_path):
    bad = {
        "cols.csv": ("query,gallery\nq,a\n", "query,gallery,score"),
        "num.csv": ("query,gallery,score\nq,a,high\n", "line 2: score 'high'"),
        "dup.csv": ("query,gallery,score\nq,a,1\nq,a,2\n", "twice"),
        "empty.csv": ("query,gallery,score\n", "no rows"),
        "list.txt.json": ("{}", ".csv"),
    }
    for name, (text, msg) in bad.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=msg):
            read_external(tmp_path / name)
    np.savez(tmp_path / "keys.npz", query_ids=np.array(["q"]), scores=np.zeros((1, 1)))
    with pytest.raises(DataError, match="gallery_ids"):
        read_external(tmp_path / "keys.npz")
    np.savez(
        tmp_path / "obj.npz",
        query_ids=np.array([{"a": 1}], dtype=object),
        scores=np.zeros((1, 1)),
        ids=np.array([["a"]]),
    )
    with pytest.raises(DataError, match="obj.npz"):  # no pickle: an object array is refused, not run
        read_external(tmp_path / "obj.npz")
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "a.png").write_bytes(b"")
    assert image_paths(["a"], tmp_path / "root") == {"a": tmp_path / "root" / "a.png"}  # id without extension
    with pytest.raises(DataError, match="2 of 3 images not found under"):
        image_paths(["a", "b", "c.jpg"], tmp_path / "root")


CONFIG = """\
dataset: {{name: folder, root: {root}, csv: {csv}}}
extractors:
  - {{name: cnn_local, image_size: 224}}
  - {{name: aliked, max_keypoints: 256, resize: 320}}
global: cnn_local
shortlist: {{k: 20, index: flat}}
rerankers:
  - {{name: gv, features: aliked, threshold: 6.0, top_k: 6}}
out: {out}
"""


@pytest.mark.slow  # ~8 CPU-s: real UKBench photos through both paths
def test_matches_own_shortlist(tmp_path, one_thread):
    """3 UKBench objects x 4 views (real photos, ALIKED-n16 + EfficientNet-Lite0 ImageNet weights): relook's
    shortlist written as CSV (and its own .npz), reranked from the image files by id, equals relook's own
    ranking; the stores hold only what gv reads, and a second run extracts nothing."""
    from relook import pipeline
    from relook.cli import main
    from relook.experiment import load_config

    root = shared("multiview", "ukbench", "images")
    groups = ("ukb0014", "ukb0020", "ukb0033")
    rows = [f"{g}/ukbench{4 * int(g[3:]) + v:05d}.jpg,{g}" for g in groups for v in range(4)]
    (tmp_path / "three.csv").write_text("image,group\n" + "\n".join(rows) + "\n")
    config = tmp_path / "own.yaml"
    config.write_text(CONFIG.format(root=root, csv=tmp_path / "three.csv", out=tmp_path / "own"))
    conf = load_config([config])
    pipeline.extract(conf, progress=False)
    pipeline.search(conf)
    pipeline.rerank(conf, progress=False)
    own = Ranking.load(tmp_path / "own" / "rankings" / "gv.npz")
    shortlist = read_external(tmp_path / "own" / "shortlist.npz").shortlist
    with open(tmp_path / "top.csv", "w", newline="") as f:  # what another system would hand over
        w = csv.writer(f)
        w.writerow(["query", "gallery", "score"])
        for q, qid in enumerate(shortlist.query_ids):
            for g in shortlist.candidate_ids(q):
                w.writerow([qid, g, repr(float(shortlist.scores[q, shortlist.candidate_ids(q).index(g)]))])

    ext_conf = {**{k: conf[k] for k in ("extractors", "global", "rerankers")}, "out": str(tmp_path / "ext")}
    out = rerank_external(
        tmp_path / "top.csv", ["gv"], tmp_path / "reranked.csv", root, config=ext_conf, progress=False
    )
    got = read_external(out["gv"]).shortlist
    assert got.query_ids == own.query_ids
    for q in range(own.num_queries):
        assert got.candidate_ids(q) == own.candidate_ids(q), own.query_ids[q]
        n = len(own.candidate_ids(q))
        assert np.array_equal(got.scores[q, :n], own.scores[q, :n])
    same = [
        own.gallery_ids[g].split("/")[0] == own.query_ids[q].split("/")[0]
        for q in range(12)
        for g in own.indices[q, :3]
    ]
    assert np.mean(same) > 0.8  # gv ranks the 3 other views of the object first: a real comparison
    store = tmp_path / "ext" / "features" / "aliked" / "images.h5"
    with FeatureStore(store) as fs:
        assert len(fs) == 12 and not (tmp_path / "ext" / "features" / "cnn_local").exists()  # gv reads aliked only
        stamp = store.stat().st_mtime_ns

    # relook's own .npz as the external file, through the CLI: the same ranking, nothing extracted again
    import yaml

    (tmp_path / "ext.yaml").write_text(yaml.safe_dump(ext_conf))
    args = ["rerank", "-c", str(tmp_path / "ext.yaml"), "--shortlist", str(tmp_path / "own" / "shortlist.npz")]
    assert main([*args, "--image-root", str(root), "--methods", "gv", "--output", str(tmp_path / "r.npz"), "-q"]) == 0
    again = Ranking.load(tmp_path / "r.npz")
    assert np.array_equal(again.indices, own.indices) and np.array_equal(again.scores, own.scores)
    assert store.stat().st_mtime_ns == stamp

    # one query alone, gv on its top 2: only those 3 images are extracted
    first = shortlist.query_ids[0]
    (tmp_path / "one.csv").write_text(
        "query,gallery,score\n"
        + "".join(f"{first},{g},{1.0 - i / 10}\n" for i, g in enumerate(shortlist.candidate_ids(0)))
    )
    small = {**ext_conf, "out": str(tmp_path / "small"), "rerankers": [{**conf["rerankers"][0], "top_k": 2}]}
    rerank_external(tmp_path / "one.csv", ["gv"], None, root, config=small, progress=False)
    with FeatureStore(tmp_path / "small" / "features" / "aliked" / "images.h5") as fs:
        assert sorted(fs.ids()) == sorted([first, *shortlist.candidate_ids(0)[:2]])
    assert (tmp_path / "small" / "reranked" / "one.gv.csv").is_file()
    assert main([*args, "--image-root", str(tmp_path), "--methods", "gv"]) == 2  # images not under that root
