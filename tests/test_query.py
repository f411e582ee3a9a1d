"""``relook query`` / ``relook.query`` on a real run: Kodak photos (read in place) warped into 4 views each,
one view held back from the run; EfficientNet-Lite0 ImageNet globals, ALIKED locals, gv and aqe rerankers."""

import csv
import json
import shutil

import numpy as np
import pytest

import relook
from relook.cli import main
from relook.datasets.warp import generate_warp
from relook.errors import ConfigError, DataError
from relook.store import FeatureStore
from relook.types import Ranking, Shortlist
from tests.shared_data import shared

PHOTOS = ("kodim01", "kodim03", "kodim05", "kodim07", "kodim13", "kodim15", "kodim19", "kodim23")
HELD_GROUP, HELD_VIEW = "kodim05", "2"


# The warped benchmark and its run are built once per session: tests/test_confidence.py imports these fixtures,
# and a module-scoped fixture imported into a second module would be built again there (the same run, twice).
_BUILT: dict = {}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """The warped benchmark and the held-back view's path (not in the run's CSV)."""
    if "bench" not in _BUILT:
        _BUILT["bench"] = _make_bench(tmp_path_factory)
    return _BUILT["bench"]


@pytest.fixture(scope="module")
def run(bench, tmp_path_factory):
    """`relook run` over every view but the held-back one; gv rescoring the whole (31-image) gallery."""
    if "run" not in _BUILT:
        _BUILT["run"] = _make_run(bench, tmp_path_factory)
    return _BUILT["run"]


def _make_bench(tmp_path_factory):
    photos = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        (photos / f"{name}.jpg").symlink_to(shared("photos", "Kodak24", f"{name}.jpg"))
    out = generate_warp(photos, tmp_path_factory.mktemp("warp"), views=4, seed=0, size=200)
    with open(out / "groups.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    held = next(r["image"] for r in rows if r["group"] == HELD_GROUP and r["image"].endswith(f"/{HELD_VIEW}.jpg"))
    with open(out / "run.csv", "w", newline="") as f:
        f.write("image,group\n" + "".join(f"{r['image']},{r['group']}\n" for r in rows if r["image"] != held))
    return out, out / held


def _make_run(bench, tmp_path_factory):
    root, _ = bench
    out = tmp_path_factory.mktemp("run")
    config = out / "experiment.yaml"
    config.write_text(f"""
dataset: {{name: folder, root: {root}, csv: run.csv}}
extractors:
  - {{name: cnn_local, image_size: 224}}
  - {{name: aliked, max_keypoints: 512, resize: 320}}
global: cnn_local
shortlist: {{k: 40}}
rerankers:
  - {{name: gv, features: aliked, threshold: 8, top_k: 40}}
  - {{name: aqe}}
out: {out}
""")
    assert main(["run", "-c", str(config), "--quiet"]) == 0
    return out


def _one_line_error(capsys, argv, *words):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for w in words:
        assert w in err, (w, err)
    return err


def test_smoke(bench, run, tmp_path, capsys):
    """The held-back view finds its photo's other three views first; the page embeds every thumbnail."""
    root, held = bench
    page = tmp_path / "page.html"
    assert main(["query", str(held), "--run", str(run), "--method", "gv", "-k", "5", "--html", str(page)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"query {held} (gv):" and out[1].split()[:4] == ["rank", "gallery", "id", "gv"]
    rows = [line.split() for line in out[2:7]]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5]
    assert all(r[1].split("/")[-2] == HELD_GROUP for r in rows[:3]), rows
    assert all(float(r[2]) >= 10 for r in rows[:3]), rows  # gv's inlier counts, not cosine scores
    assert out[-1] == f"wrote {page}"
    text = page.read_text()
    assert text.count("data:image/jpeg;base64,") == 6 and all(r[1] in text for r in rows)


def test_matches_reference(bench, run):
    """A gallery image queried like a new one: itself first, then exactly the run's own gv ranking and
    global shortlist of that image (the run left it out of its own list), same inlier counts."""
    root, held = bench
    shortlist, ranking = Shortlist.load(run / "shortlist.npz"), Ranking.load(run / "rankings" / "gv.npz")
    q = next(
        i
        for i in range(shortlist.num_queries)  # an image whose gv order differs from the global one
        if not np.array_equal(shortlist.indices[i], ranking.indices[i])
    )
    qid = shortlist.query_ids[q]
    gv = relook.query([root / qid, held], run, method="gv", k=40)
    plain = relook.query([root / qid], run, k=40)
    assert [r.method for r in gv + plain] == ["gv", "gv", "global"]
    for res, expected, scores in (
        (gv[0], ranking.indices[q], ranking.scores[q]),
        (plain[0], shortlist.indices[q], shortlist.scores[q]),
    ):
        assert res.hits[0].gallery_id == qid and res.hits[0].global_score == pytest.approx(1.0, abs=1e-5)
        assert res.gallery_ids[1:] == [ranking.gallery_ids[g] for g in expected]
        got = np.array([h.score for h in res.hits[1:]])
        if res.method == "gv":  # integer inliers + a tie-break below 1 that depends on the list length
            np.testing.assert_array_equal(np.floor(got), np.floor(scores))
        else:
            np.testing.assert_allclose(got, scores, atol=1e-5)
    hits = gv[1].hits
    assert [h.rank for h in hits] == list(range(1, 32)) and all(h.rank_change is not None for h in hits)
    assert sum(h.rank_change for h in hits) == 0 and any(h.rank_change for h in hits)
    assert {h.global_rank for h in hits} == set(range(1, 32))
    assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))


def test_bad_input(bench, run, tmp_path, capsys):
    """One line and exit 2: unreadable or missing image, a folder that is no run, no index, unknown method."""
    root, held = bench
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    base = ["--run", str(run), "--method", "gv"]
    _one_line_error(capsys, ["query", str(broken), *base], str(broken), "cannot decode")
    _one_line_error(capsys, ["query", str(tmp_path / "nope.jpg"), *base], "nope.jpg", "not found")
    _one_line_error(capsys, ["query", str(held), "--run", str(tmp_path)], "no config.yaml", "relook run")
    no_index = tmp_path / "no_index"
    no_index.mkdir()
    shutil.copy(run / "config.yaml", no_index / "config.yaml")
    _one_line_error(
        capsys, ["query", str(held), "--run", str(no_index)], "no index.faiss", "relook run", "relook index"
    )
    _one_line_error(capsys, ["query", str(held), "--run", str(run), "--method", "rrt"], "'rrt'", "gv, aqe")
    with pytest.raises(ConfigError, match="k must be >= 1"):
        relook.query([held], run, k=0)


def test_empty(run):
    assert relook.query([], run, method="gv") == []


def test_weights_mismatch(bench, run, tmp_path, capsys):
    """A store made with other weights than the config loads now is refused, naming the store and key; the
    same weights file installed elsewhere (same sha256, other path) is accepted."""
    _, held = bench
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    store = copy / "features" / "aliked" / "gallery.h5"
    with FeatureStore(store, "a") as s:
        meta = s.meta
        s.meta = {**meta, "weights.path": "/elsewhere/aliked-n16.pth"}
    assert relook.query([held], copy, method="gv", k=3)[0].gallery_ids[0].split("/")[-2] == HELD_GROUP
    with FeatureStore(store, "a") as s:
        s.meta = {**meta, "weights.sha256": "0" * 64}
    with pytest.raises(DataError, match="weights.sha256"):
        relook.query([held], copy, method="gv")
    _one_line_error(
        capsys, ["query", str(held), "--run", str(copy), "--method", "gv"], str(store), "weights.sha256", "store: 000"
    )
    config = copy / "config.yaml"
    config.write_text(config.read_text().replace("max_keypoints: 512", "max_keypoints: 256"))
    with FeatureStore(store, "a") as s:
        s.meta = meta
    with pytest.raises(DataError, match=r"extractor.max_keypoints \(store: 512, now: 256\)"):
        relook.query([held], copy, method="gv")
    assert relook.query([held], copy, k=3)[0].method == "global"  # the global store is still the run's
    stamp = copy / "index.json"
    stamp.write_text(json.dumps({"fingerprint": "stale"}))
    _one_line_error(capsys, ["query", str(held), "--run", str(copy)], "index.faiss", "relook index")
