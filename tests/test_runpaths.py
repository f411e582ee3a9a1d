"""Runs that move (``relook.runpaths``): paths stored relative to the run or absolute as given, a finished
run moved together with its photos and queried from another working directory, a dataset moved alone and
found again with ``--data-root``."""

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from relook.cli import main
from relook.runpaths import from_file, stored_form
from tests.test_bad_inputs import _photos

CONFIG = """dataset: {{name: folder, root: {root}}}
extractors: [{{name: cnn_local, pretrained: false, image_size: 32, batch_size: 2}}]
shortlist: {{k: 5}}
rerankers: [aqe]
out: {out}
"""


def _query_rows(capsys, image, run, *extra) -> list[str]:
    """`relook query` of one image: the printed table without its first line (it names the image path)."""
    assert main(["query", str(image), "--run", str(run), "--method", "aqe", "-k", "5", *extra]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("query ") and out[-1].startswith("wrote ")
    return out[1:-1]


def _mtimes(run) -> dict[str, int]:
    keep = ("shortlist.npz", "index.faiss", "index.json", "rankings/aqe.npz", "features/cnn_local/gallery.h5")
    return {name: (run / name).stat().st_mtime_ns for name in keep}


def test_stored_form_round_trip(tmp_path, monkeypatch):
    """Hand-worked paths: relative ones relative to the run folder, absolute ones as given, names untouched,
    a CSV under the root left to the reader; reading the file back from elsewhere gives working paths."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "photos").mkdir(parents=True)
    (tmp_path / "data" / "photos" / "groups.csv").write_text("image,group\n")
    (tmp_path / "ckpt.pt").write_bytes(b"x")
    conf = {
        "dataset": {"name": "folder", "root": "data/photos", "csv": "groups.csv"},
        "extractors": [{"name": "aliked", "label": "aliked", "weights": "aliked-n16"}],
        "rerankers": [{"name": "rrt", "label": "rrt", "checkpoint": "ckpt.pt"}, {"name": "gv", "label": "gv"}],
        "out": "runs/a",
        "data_root": None,
    }
    stored = stored_form(conf)
    assert stored["dataset"] == {"name": "folder", "root": "../../data/photos", "csv": "groups.csv"}
    assert stored["rerankers"][0]["checkpoint"] == "../../ckpt.pt" and stored["out"] == "."
    assert stored["extractors"][0]["weights"] == "aliked-n16"  # a name, not a file
    assert conf["dataset"]["root"] == "data/photos"  # the config itself is not changed
    absolute = {**conf, "dataset": {"name": "folder", "root": str(tmp_path / "data" / "photos")}}
    assert stored_form(absolute)["dataset"]["root"] == str(tmp_path / "data" / "photos")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    back = from_file({"relative_paths": "config", **stored}, Path("../runs/a"))
    assert back["dataset"]["root"] == os.path.normpath("../data/photos")
    assert back["rerankers"][0]["checkpoint"] == os.path.normpath("../ckpt.pt") and back["out"] == "../runs/a"
    assert back["dataset"]["csv"] == "groups.csv" and "relative_paths" not in back


@pytest.mark.slow  # ~4 CPU-s: a pipeline run, moved
def test_moved_run_with_its_photos(tmp_path, monkeypatch, capsys):
    """A run made with relative paths, moved together with its photos, answers `relook query` from another
    working directory exactly as before, and no stage finds anything to redo there."""
    work = tmp_path / "work"
    _photos(work / "photos", {"a": 2, "b": 2, "c": 2})
    (work / "exp.yaml").write_text(CONFIG.format(root="photos", out="runs/mine"))
    monkeypatch.chdir(work)
    assert main(["run", "-c", "exp.yaml", "-q"]) == 0
    capsys.readouterr()
    saved = yaml.safe_load((work / "runs/mine/config.yaml").read_text())
    assert saved["relative_paths"] == "config" and saved["out"] == "."
    assert saved["dataset"]["root"] == "../../photos"
    before = _query_rows(capsys, "photos/a/0.png", "runs/mine")
    metrics = json.loads((work / "runs/mine/results.json").read_text())["metrics"]

    shutil.move(work, tmp_path / "elsewhere")
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    run = "../elsewhere/runs/mine"
    stamps = _mtimes(tmp_path / "elsewhere/runs/mine")
    assert _query_rows(capsys, "../elsewhere/photos/a/0.png", run) == before
    assert main(["run", "-c", f"{run}/config.yaml", "-q", "--no-report"]) == 0  # nothing stale, nothing redone
    assert _mtimes(tmp_path / "elsewhere/runs/mine") == stamps
    assert json.loads((tmp_path / "elsewhere/runs/mine/results.json").read_text())["metrics"] == metrics


def test_moved_dataset_found_with_data_root(tmp_path, capsys):
    """A run with an absolute dataset root whose photos moved: one line naming the old root and --data-root;
    with --data-root the query answers as before, and the run's files are not rewritten."""
    photos = _photos(tmp_path / "photos", {"a": 2, "b": 2, "c": 2})
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(CONFIG.format(root=photos, out=tmp_path / "run"))
    assert main(["run", "-c", str(cfg), "-q", "--no-report"]) == 0
    capsys.readouterr()
    before = _query_rows(capsys, photos / "a/0.png", tmp_path / "run")
    moved = tmp_path / "new" / "place"
    shutil.move(photos, moved)
    stamps = _mtimes(tmp_path / "run")
    assert main(["query", str(moved / "a/0.png"), "--run", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(photos) in err and "does not exist" in err and "--data-root" in err
    assert _query_rows(capsys, moved / "a/0.png", tmp_path / "run", "--data-root", str(moved)) == before
    assert _mtimes(tmp_path / "run") == stamps
