"""``relook.score_pairs`` / ``relook pair``: two real UKBench photos of one object score above two of
different objects (gv on ALIKED, OT on the EfficientNet-Lite0 grid), the score is the reranker's own,
and bad input ends in one line."""

import numpy as np
import pytest

from relook.cli import main
from relook.errors import ConfigError, DataError
from relook.pairwise import score_pairs
from tests.shared_data import shared

#: small and fast: ALIKED-n16 256 keypoints at 320 px, EfficientNet-Lite0 ImageNet at 224 (PyPI wheels)
CONF = {
    "extractors": [
        {"name": "cnn_local", "image_size": 224},
        {"name": "aliked", "max_keypoints": 256, "resize": 320},
    ],
    "global": "cnn_local",
    "rerankers": [{"name": "gv", "features": "aliked", "threshold": 6.0}],
    "out": "runs/unused",
}


def _photo(group: int, view: int):
    return shared("multiview", "ukbench", "images", f"ukb{group:04d}", f"ukbench{4 * group + view:05d}.jpg")


@pytest.fixture(scope="module")
def pairs():
    """(same object, other object) for two query photos."""
    return [
        (_photo(14, 0), _photo(14, 2)),
        (_photo(14, 0), _photo(15, 1)),
        (_photo(20, 1), _photo(20, 3)),
        (_photo(20, 1), _photo(33, 0)),
    ]


def test_matches_reference(pairs, one_thread):
    """gv: same-object pairs above different-object pairs; the score is the inliers + gv's tie-break of a
    one-candidate list (0.25), the inliers are those ``verify`` marks, and the global cosine is the
    cosine of the descriptors the extractor gives when called directly."""
    from relook.methods import build_extractor
    from relook.rerank import create_reranker

    res = score_pairs(pairs, "gv", config=CONF)
    assert [r.method for r in res] == ["gv"] * 4
    for same, other in (res[:2], res[2:]):
        assert same.score > other.score and same.inliers > other.inliers
        assert same.inliers >= 15  # a real match, not noise
    for r in res:
        assert r.score == pytest.approx(r.inliers + 0.25)
        assert r.inlier_mask.shape == (len(r.kp_a),) and r.kp_a.shape == r.kp_b.shape
    # reference: the reranker and the extractors called directly on the same photos
    from relook.images import load_image

    gv = create_reranker("gv", threshold=6.0)
    aliked = build_extractor({"name": "aliked", "max_keypoints": 256, "resize": 320})
    cnn = build_extractor({"name": "cnn_local", "image_size": 224})
    a, b = (load_image(p) for p in pairs[0])
    fa, fb = aliked.extract([("a", a), ("b", b)])
    assert res[0].inliers == int(gv.inliers(fa, [fb])[0])
    ga, gb = (f.global_desc for f in cnn.extract([("a", a), ("b", b)]))
    assert res[0].global_cosine == pytest.approx(float(ga @ gb / np.linalg.norm(ga) / np.linalg.norm(gb)), abs=1e-5)
    assert "aliked-n16" in res[0].provenance["aliked"] and "EfficientNet-Lite0" in res[0].provenance["cnn_local"]


def test_ot_method(pairs, one_thread):
    """A second method, OT (registry name, options given): same-object pairs above different-object ones."""
    res = score_pairs(pairs, "ot", config=CONF, options={"marginal": "uniform"})
    for same, other in (res[:2], res[2:]):
        assert same.score > other.score and same.global_cosine > other.global_cosine
    assert all(r.inliers is None for r in res)  # not a matching method
    # reference: OT's rerank on the Lite0 features extracted directly: S_global + S_struct (Eq. 3-6)
    from relook.images import load_image
    from relook.methods import build_extractor
    from relook.rerank import create_reranker

    cnn = build_extractor({"name": "cnn_local", "image_size": 224})
    fa, fb = cnn.extract([("a", load_image(pairs[1][0])), ("b", load_image(pairs[1][1]))])
    ref = create_reranker("ot", marginal="uniform").rerank(fa, [fb], np.array([res[1].global_cosine]))
    assert res[1].score == pytest.approx(float(ref[0]), abs=1e-4)


def test_methods_come_from_the_registry(monkeypatch):
    """Every pairwise reranker of the registry is a method (a new one, e.g. chamfer, at once); gallery ones are not."""
    from relook.methods import default_config, methods
    from relook.rerank.base import RERANKERS, Reranker

    class Fake(Reranker):
        name = "fake"

        def rerank(self, query, candidates, global_scores):
            return np.zeros(len(candidates))

    conf = default_config()
    monkeypatch.setitem(RERANKERS._factories, "fake", Fake)
    names = methods(conf)
    assert names[:3] == ["gv", "gv-lightglue", "ot"] and {"rrt", "fake"} <= set(names)
    assert "aqe" not in names and "asmk" not in names


def test_bad_input(tmp_path, pairs):

    with pytest.raises(ConfigError, match="whole gallery"):
        score_pairs(pairs[:1], "aqe", config=CONF)
    with pytest.raises(ConfigError, match="unknown method 'nope'.*gv"):
        score_pairs(pairs[:1], "nope", config=CONF)
    with pytest.raises(ConfigError, match="not both"):
        score_pairs(pairs[:1], "gv", run=tmp_path, config=CONF)
    with pytest.raises(DataError, match="no config.yaml"):
        score_pairs(pairs[:1], "gv", run=tmp_path)
    with pytest.raises(ConfigError, match="checkpoint"):
        score_pairs(pairs[:1], "rrt", config=CONF)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match="broken.jpg"):
        score_pairs([(pairs[0][0], tmp_path / "broken.jpg")], "gv", config=CONF)
    assert score_pairs([], "gv", config=CONF) == []


def test_cli(tmp_path, pairs, capsys, one_thread):
    import yaml

    from relook.cli import main

    config = tmp_path / "pair.yaml"
    config.write_text(yaml.safe_dump(CONF))
    fig = tmp_path / "pair.png"
    a, b = pairs[0]
    assert main(["pair", str(a), str(b), "--method", "gv", "-c", str(config), "--figure", str(fig)]) == 0
    out = capsys.readouterr().out
    assert "gv score" in out and "global cosine" in out and "inliers" in out and "aliked-n16" in out
    assert fig.is_file() and fig.stat().st_size > 10_000
    assert main(["pair", str(a), str(tmp_path / "missing.jpg"), "-c", str(config)]) == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.slow  # ~5 CPU-s: a pipeline run, then pairs
def test_run_weights_and_scores(tmp_path, one_thread, capsys):
    """With ``run=``: the run's extractors and gv settings, the same inliers as the run's own ranking gave
    the pair, and ``query``'s refusal when the run's store was made with other weights."""
    import json

    import h5py

    from relook import pipeline
    from relook.experiment import load_config, save_config
    from relook.types import Ranking

    root = shared("multiview", "ukbench", "images")
    rows = [f"ukb{g:04d}/ukbench{4 * g + v:05d}.jpg,ukb{g:04d}" for g in (14, 20) for v in range(4)]
    (tmp_path / "two.csv").write_text("image,group\n" + "\n".join(rows) + "\n")
    config = tmp_path / "run.yaml"
    config.write_text(
        f"dataset: {{name: folder, root: {root}, csv: {tmp_path / 'two.csv'}}}\n"
        + "\n".join(f"{k}: {json.dumps(v)}" for k, v in CONF.items() if k != "out")
        + f"\nshortlist: {{k: 7}}\nout: {tmp_path / 'run'}\n"
    )
    conf = load_config([config])
    pipeline.extract(conf, progress=False)
    pipeline.search(conf)
    pipeline.rerank(conf, progress=False)
    save_config(conf, conf["out"])
    ranking = Ranking.load(tmp_path / "run" / "rankings" / "gv.npz")
    q, g = ranking.query_ids[0], ranking.gallery_ids[ranking.indices[0, 0]]
    (res,) = score_pairs([(root / q, root / g)], "gv", run=tmp_path / "run")
    assert res.inliers == int(np.floor(ranking.scores[0, 0])) >= 15  # gv's score: inliers + a tie-break < 0.5
    pipeline.evaluate(conf)  # calibrates the "no confident match" thresholds of the run
    threshold = json.loads((tmp_path / "run" / "calibration.json").read_text())["methods"]["gv"]["threshold"]
    verdicts = []
    for other in (g, ranking.gallery_ids[ranking.indices[0, -1]]):  # gv's best and worst candidate of q
        assert main(["pair", str(root / q), str(root / other), "--method", "gv", "--run", str(tmp_path / "run")]) == 0
        out = capsys.readouterr().out
        score = float(out.split("gv score ")[1].split()[0])
        verdicts.append("confident match" if score >= threshold else "no confident match")
        assert f"\n{verdicts[-1]}: gv score" in "\n" + out and f"threshold {threshold:.4g}" in out
    assert verdicts == ["confident match", "no confident match"]
    with h5py.File(tmp_path / "run" / "features" / "aliked" / "gallery.h5", "a") as f:
        meta = json.loads(f.attrs["meta"])
        f.attrs["meta"] = json.dumps({**meta, "weights.sha256": "0" * 64})
    with pytest.raises(DataError, match=r"gallery.h5: made by another 'aliked' extractor.*weights.sha256"):
        score_pairs([(root / q, root / g)], "gv", run=tmp_path / "run")
