"""Degenerate data: no positives, tiny galleries, empty shortlists, K beyond the gallery. A clear one-line
message or a documented result (undefined metric: null in results.json, ``-`` in the table), never NaN."""

import json
import re

import numpy as np
import pytest
from PIL import Image

import tests.test_pipeline  # noqa: F401  (registers toy_colors, toy_thumb, toy_reverse)
from relook import pipeline
from relook.cli import main
from relook.datasets.base import DATASETS, RetrievalDataset
from relook.eval.evaluate import evaluate, format_table
from relook.experiment import load_config
from relook.io import json_text
from relook.types import Shortlist


@DATASETS.register("toy_revisited")
def toy_revisited(root):
    """Four images, two queries with Easy positives and junk, none with a Hard positive (test only)."""
    items = [(p.stem, p, None) for p in sorted(root.glob("*.png"))]
    gnd = [{"easy": [0, 1], "hard": [], "junk": [2]}, {"easy": [2], "hard": [], "junk": []}]
    return RetrievalDataset("toy_revisited", root, items[:2], items, "revisitop", gnd=gnd)


def _strict_json(path):
    def refuse(name):
        raise ValueError(f"{path}: bare {name} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


def _setup(tmp_path, classes, dataset="toy_colors", k=1000, rerankers="[{name: toy_reverse}, {name: aqe}]"):
    root = tmp_path / "data"
    root.mkdir()
    rng = np.random.default_rng(0)
    for c, views in enumerate(classes):
        colour = rng.integers(0, 255, size=3)
        for v in range(views):
            img = np.clip(colour + rng.normal(0, 20, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"{c}_{v}.png")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(
        f"dataset: {{name: {dataset}, root: {root}}}\nextractors: [{{name: toy_thumb}}]\n"
        f"shortlist: {{k: {k}}}\nrerankers: {rerankers}\nout: {tmp_path / 'run'}\n"
    )
    return str(cfg), tmp_path / "run"


def _error(capsys, *words):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    for w in words:
        assert w in err, (w, err)


@pytest.mark.parametrize("classes", [[1, 1, 1, 1], [1], [1, 1]], ids=["singletons", "one image", "two singletons"])
def test_no_query_has_a_positive(tmp_path, capsys, classes):
    cfg, out = _setup(tmp_path, classes)
    assert main(["run", "-c", cfg, "--quiet"]) == 2
    _error(capsys, "toy_colors", "none of its", "positive")
    assert not out.exists()  # refused before any work, config.yaml included
    assert main(["extract", "-c", cfg, "--quiet"]) == 0 and main(["search", "-c", cfg]) == 0
    capsys.readouterr()
    assert main(["evaluate", "-c", cfg]) == 2
    _error(capsys, "none of its")
    assert not (out / "results.json").exists()


def test_empty_dataset(tmp_path, capsys):
    cfg, out = _setup(tmp_path, [])
    assert main(["extract", "-c", cfg, "--quiet"]) == 2
    _error(capsys, "toy_colors", "no gallery images", str(tmp_path / "data"))


def test_gallery_of_two(tmp_path, capsys):
    """Two views of one object: each query's shortlist is the other image (k=1000 capped at 1)."""
    cfg, out = _setup(tmp_path, [2])
    assert main(["run", "-c", cfg, "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "nan" not in table.lower()
    sl = Shortlist.load(out / "shortlist.npz")
    assert sl.k == 1 and sl.indices.tolist() == [[1], [0]]
    res = _strict_json(out / "results.json")["metrics"]
    assert set(res) == {"global only", "toy_reverse", "aqe"}
    assert all(v == 1.0 for row in res.values() for v in row.values())


@pytest.mark.slow  # ~6 CPU-s: a pipeline run
def test_k_beyond_gallery_and_top_k_beyond_shortlist(tmp_path, capsys):
    cfg, out = _setup(tmp_path, [3, 3], k=50, rerankers="[{name: toy_reverse, top_k: 40}]")
    assert main(["run", "-c", cfg, "--quiet"]) == 0
    sl = Shortlist.load(out / "shortlist.npz")
    assert sl.k == 5 and (sl.indices >= 0).all()
    res = _strict_json(out / "results.json")["metrics"]
    assert res["global only"]["R@1"] == 1.0 and 0 <= res["toy_reverse"]["mAP"] <= 1


@pytest.mark.slow  # ~5 CPU-s: a pipeline run
def test_undefined_setting_is_null_in_results_json(tmp_path, capsys):
    """No query has a Hard positive: H:* metrics are undefined -> null in results.json, '-' in the table."""
    cfg, out = _setup(tmp_path, [2, 2], dataset="toy_revisited", rerankers="[{name: toy_reverse}]")
    assert main(["run", "-c", cfg, "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "nan" not in table.lower() and " -" in table
    res = _strict_json(out / "results.json")["metrics"]
    assert res["global only"]["H:mAP"] is None and 0 < res["global only"]["E:mAP"] <= 1
    assert main(["report", "-c", cfg, "--queries", "1"]) == 0
    assert not re.search(r"\bnan\b", (out / "report.html").read_text().lower())  # ("provenance" has "nan")


def test_empty_shortlist_scores_zero(tmp_path):
    """A shortlist with no candidates retrieves nothing: recall and AP are 0 (defined), not NaN."""
    cfg, _ = _setup(tmp_path, [2, 2])
    dataset = pipeline.dataset_of(load_config([cfg]))
    q = len(dataset.query_ids)
    empty = Shortlist(dataset.query_ids, dataset.gallery_ids, np.zeros((q, 0), np.int64), np.zeros((q, 0)))
    res = evaluate(empty, dataset)
    assert res and all(v == 0.0 for v in res.values())


def test_json_text_and_table_never_nan():
    text = json_text({"a": float("nan"), "b": [np.float32("inf"), 1.5], "c": np.float64(2.0)})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"a": None, "b": [None, 1.5], "c": 2.0}
    table = format_table({"m": {"R@1": float("nan"), "mAP": 0.5}, "n": {"mAP": None}})
    assert "nan" not in table.lower() and "50.00" in table and table.count(" -") == 3
