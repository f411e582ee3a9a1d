"""The report as an appendix: provenance (environment, split name, reranker settings), per-method
paired-bootstrap intervals checked against per-query APs computed here by a slow loop, figures at
>= 200 dpi, thumbnails that keep their aspect ratio, labels wrapped (not cut) that do not overlap."""

import json

import numpy as np
import pytest
from PIL import Image

from relook.cli import main
from relook.eval.bootstrap import paired_bootstrap
from relook.report import _label
from relook.types import Ranking, Shortlist
from relook.viz.topk import _bordered, topk_figure, wrap_label
from tests.test_pipeline import toy  # noqa: F401  (fixture: tiny synthetic run; registers the toy parts)


def slow_ap(ranking, q):
    """AP of query ``q``: the other views of its colour are the positives (group = id before ``_``)."""
    qid = ranking.query_ids[q]
    group = qid.split("_")[0]
    ids = [ranking.gallery_ids[g] for g in ranking.indices[q] if g >= 0 and ranking.gallery_ids[g] != qid]
    n_pos = sum(1 for g in ranking.gallery_ids if g.split("_")[0] == group and g != qid)
    hits, ap = 0, 0.0
    for r, gid in enumerate(ids):
        if gid.split("_")[0] == group:
            hits += 1
            ap += hits / (r + 1)
    return ap / n_pos


def test_matches_reference(toy):
    cfg, out = toy
    assert main(["run", "-c", str(cfg), "--quiet"]) == 0
    results = json.loads((out / "results.json").read_text())
    glob, rev = Shortlist.load(out / "shortlist.npz"), Ranking.load(out / "rankings/toy_reverse.npz")
    ap_g = [slow_ap(glob, q) for q in range(glob.num_queries)]
    ap_r = [slow_ap(rev, q) for q in range(rev.num_queries)]
    ci = results["intervals"]["toy_reverse"]
    assert (ci["metric"], ci["queries"], ci["resamples"], ci["seed"]) == ("mAP", 12, 10000, 0)
    assert (ci["delta"], ci["lo"], ci["hi"]) == pytest.approx(paired_bootstrap(ap_r, ap_g, n=10000, seed=0))
    m = results["metrics"]
    assert ci["delta"] == pytest.approx(m["toy_reverse"]["mAP"] - m["global only"]["mAP"])
    assert ci["lo"] <= ci["delta"] <= ci["hi"] < 0  # reversing the top 4 hurts every query
    env = results["environment"]
    assert env["relook"] == "0.1.0" and env["cpu"] and "usable" in env["cores"] and env["gpu"] and env["date"]
    assert results["run"]["split"] == "all images (no split: each image queries all the others)"
    assert "top-k 4" in results["provenance"]["toy_reverse"]
    page = (out / "report.html").read_text()
    for words in (
        "split: <b>all images",
        "mAP change vs global [95% CI]",
        f"{100 * ci['delta']:+.2f} [{100 * ci['lo']:+.2f}, {100 * ci['hi']:+.2f}]",
        "Evaluated with",
        env["cpu"],
        "Match thresholds",
        "top-k 4",
    ):
        assert words in page, words
    assert "split None" not in page and "split <b>None" not in page
    for png in (out / "figures").glob("*.png"):
        assert min(Image.open(png).info["dpi"]) >= 199.5, png.name


def test_thumbnail_aspect():
    """A 40 x 80 picture in a 96 px cell: 48 x 96 inside a 6 px frame of the colour, white around it."""
    img = np.zeros((40, 80, 3), np.uint8)
    out = _bordered(img, (210, 40, 40), 96)
    framed = np.argwhere((out == [210, 40, 40]).all(-1) | (out == 0).all(-1))
    (top, left), (bottom, right) = framed.min(0), framed.max(0)
    assert (bottom - top + 1, right - left + 1) == (48 + 12, 96 + 12)
    inside = out[top + 6 : bottom - 5, left + 6 : right - 5]
    assert inside.shape[:2] == (48, 96) and (inside == 0).all()
    assert (out[:top] == 255).all() and (out[bottom + 1 :] == 255).all()


def test_wrapped_labels():
    """Every character kept, lines within the width, breaks after '/' when there is one."""
    gid = "roxford5k/all_souls_000013_with_a_long_tail.jpg"
    text = wrap_label(f"#1 {gid}", 22)
    assert text.replace("\n", "") == f"#1 {gid}" and max(map(len, text.split("\n"))) <= 22
    assert text.split("\n")[0] == "#1 roxford5k/all_"  # greedy: as much as fits, broken after "_"
    assert wrap_label("x" * 50, 20).split("\n") == ["x" * 20, "x" * 20, "x" * 10]


def test_group_visible(toy):
    """An id that does not show its group gets a ``group`` line (the toy ids are 'colour_view')."""
    from relook.experiment import load_config
    from relook.pipeline import dataset_of

    cfg, _ = toy
    dataset = dataset_of(load_config([cfg]))
    label = _label(3, dataset, 4, "gv", 12.5)
    assert label.split("\n") == ["#3 1_1", "group 1", "gv: 12.500"]


def test_labels_do_not_overlap():
    """A 2 x 6 grid of long wrapped labels: every title inside the figure, no two titles overlapping."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (60, 90, 3), dtype=np.uint8)
    ids = [f"category_{c}/instance_{c:04d}_photo_number_{c * 7}.jpg" for c in range(6)]
    labels = [[f"{wrap_label(f'#{c + 1} {g}')}\ngv: {c}.000" for c, g in enumerate(ids)] for _ in range(2)]
    fig = topk_figure([(img, [img] * 6, [True, False] * 3)] * 2, [wrap_label(f"query {ids[0]}")] * 2, labels=labels)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    boxes = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
    page = fig.bbox
    assert len(boxes) == 14
    for b in boxes:
        assert b.x0 >= page.x0 - 1 and b.x1 <= page.x1 + 1 and b.y0 >= page.y0 - 1 and b.y1 <= page.y1 + 1
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not a.overlaps(b), (a, b)
    import matplotlib.pyplot as plt

    plt.close(fig)
