"""Stages end to end on a toy dataset (test-only reader, extractor and reranker registered here)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from relook.cli import main
from relook.datasets.base import DATASETS, labelled_split
from relook.errors import ConfigError
from relook.experiment import load_config
from relook.features.base import EXTRACTORS, Extractor
from relook.rerank.base import RERANKERS, Reranker
from relook.types import ImageFeatures


@DATASETS.register("toy_colors")
def toy_colors(root: Path):
    items, labels = [], []
    for path in sorted(Path(root).glob("*.png")):
        items.append((path.stem, path, None))
        labels.append(int(path.stem.split("_")[0]))
    return labelled_split("toy_colors", Path(root), items, labels, info={"note": "toy test data"})


@EXTRACTORS.register("toy_thumb")
class ToyThumb(Extractor):
    """4x4 colour thumbnail as a 48-d global descriptor (test only)."""

    name = "toy_thumb"
    default_conf = {"dim": 48}  # output dimension (<= 48)
    writes = frozenset({"global_desc"})

    calls = 0

    def extract_one(self, image_id, image):
        ToyThumb.calls += 1
        v = np.asarray(Image.fromarray(image).resize((4, 4)), np.float32).ravel()[: self.conf["dim"]] - 127.5
        return ImageFeatures(image_id, global_desc=v / (np.linalg.norm(v) + 1e-9), image_size=image.shape[:2])


@RERANKERS.register("toy_reverse")
class ToyReverse(Reranker):
    name = "toy_reverse"
    default_conf = {"top_k": 4}  # 2 positives + 2 negatives (the query is never its own candidate)
    requires = frozenset({"global_desc"})

    def rerank(self, query, candidates, global_scores):
        return -np.asarray(global_scores, np.float64)


@pytest.fixture
def toy(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    root.mkdir()
    for c in range(4):
        colour = rng.integers(0, 255, size=3)
        for v in range(3):
            img = np.clip(colour + rng.normal(0, 20, size=(32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"{c}_{v}.png")
    cfg = tmp_path / "exp.yaml"
    cfg.write_text(f"""
dataset: {{name: toy_colors, root: {root}}}
extractors: [{{name: toy_thumb}}]
shortlist: {{k: 11}}
rerankers: [{{name: toy_reverse}}]
out: {tmp_path / 'run'}
""")
    return cfg, tmp_path / "run"


def test_stages_and_skip(toy, capsys):
    cfg, out = toy
    assert main(["run", "-c", str(cfg), "--quiet"]) == 0
    table = capsys.readouterr().out
    assert "global only" in table and "toy_reverse" in table and "toy test data" in table
    files = [out / "features/toy_thumb/gallery.h5", out / "shortlist.npz", out / "rankings/toy_reverse.npz"]
    stamps = [f.stat().st_mtime_ns for f in files]
    assert main(["run", "-c", str(cfg), "--quiet", "--no-report"]) == 0  # second run: nothing rewritten
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert (out / "config.yaml").exists() and (out / "results.json").exists() and (out / "report.html").exists()
    # colour clusters are easy: global R@1 is perfect, reversing the top 3 ruins it
    import json

    res = json.loads((out / "results.json").read_text())["metrics"]
    assert res["global only"]["R@1"] == 1.0 and res["toy_reverse"]["R@1"] < 1.0
    # an override changes the shortlist fingerprint: search redone
    assert main(["search", "-c", str(cfg), "-s", "shortlist.k=5"]) == 0
    assert (out / "shortlist.npz").stat().st_mtime_ns != stamps[1]


def test_search_stage_excludes_query_before_cut(toy):
    """Queries = gallery, k = N - 1: every query gets all N - 1 other images, itself never, in the order
    of a slow reference (score descending, ties by ascending gallery index)."""
    from relook import pipeline
    from relook.store import FeatureStore
    from relook.types import Shortlist

    cfg, out = toy
    conf = load_config([cfg], [])
    pipeline.extract(conf, progress=False)
    shortlist = Shortlist.load(pipeline.search(conf))
    dataset = pipeline.dataset_of(conf)
    n = len(dataset.gallery_ids)
    assert conf["shortlist"]["k"] == n - 1 == shortlist.k == 11
    with FeatureStore(out / "features/toy_thumb/gallery.h5") as gs:
        x = gs.stack("global_desc", dataset.gallery_ids).astype(np.float64)
    assert shortlist.query_ids == dataset.query_ids and shortlist.gallery_ids == dataset.gallery_ids
    compared = 0
    for q, row in enumerate(shortlist.indices):
        others = np.array([j for j in range(n) if j != q])
        s = x[q] @ x[others].T
        ref = others[np.lexsort((others, -s))]
        assert q not in row and sorted(row.tolist()) == others.tolist()
        # faiss scores in float32: compare the order where reference scores differ by more than rounding
        gaps = np.abs(np.diff(np.sort(s)))
        if gaps.min() > 1e-5:
            assert row.tolist() == ref.tolist()
            compared += 1
    assert compared >= n // 2 and shortlist.meta["exclude"] == "self"


def test_bad_input(toy, tmp_path, capsys):
    cfg, out = toy
    assert main(["rerank", "-c", str(cfg), "--methods", "nope"]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["run", "-c", str(cfg), "-s", "dataset.root=/no/such/dir"]) == 2
    assert "/no/such/dir" in capsys.readouterr().err
    bad = tmp_path / "typo.yaml"
    bad.write_text("rerankerz: []\n")
    proc = subprocess.run([sys.executable, "-m", "relook.cli", "run", "-c", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 2 and "typo.yaml: unknown config key 'rerankerz'" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0
    # mismatched descriptor dimensions between the query store and the index
    assert main(["run", "-c", str(cfg), "--quiet", "--no-report"]) == 0
    from relook.store import FeatureStore

    with FeatureStore(tmp_path / "q8.h5", "a") as s:
        s.write(ImageFeatures("x", global_desc=np.ones(8) / np.sqrt(8)))
    assert (
        main(
            [
                "store",
                "search",
                str(tmp_path / "q8.h5"),
                str(out / "features/toy_thumb/gallery.h5"),
                "-o",
                str(tmp_path / "s.npz"),
            ]
        )
        == 2
    )
    assert "dim 8 but the index has dim 48" in capsys.readouterr().err


def test_config_compose(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("shortlist: {k: 50, index: flat}\nrerankers: [gv]\n")
    b.write_text("shortlist: {k: 200}\n")
    conf = load_config([a, b], ["shortlist.index=ivfpq", "out=x"])
    assert conf["shortlist"] == {"k": 200, "index": "ivfpq", "ivfpq": {}} and conf["out"] == "x"
    assert conf["rerankers"] == [{"name": "gv", "label": "gv"}]
    with pytest.raises(ConfigError, match="used twice"):
        load_config([], ["rerankers=[gv, gv]"])
    with pytest.raises(ConfigError, match="not found"):
        load_config([tmp_path / "none.yaml"])


@pytest.mark.slow  # ~20 s: a whole run with its report (make test-fast leaves it out)
def test_report(toy, monkeypatch):
    """Header (sizes, clamped K, weights record with its random-init note, seed), commentary, stage times."""
    import json

    from PIL import Image

    cfg, out = toy
    base = Extractor.provenance.fget
    monkeypatch.setattr(ToyThumb, "provenance", property(lambda self: {**base(self), "weights": "random init, seed 3"}))
    assert main(["run", "-c", str(cfg), "--quiet", "-s", "shortlist.k=50", "--no-report"]) == 0
    assert not (out / "report.html").exists()
    times = json.loads((out / "timings.json").read_text())
    assert set(times) == {"extract:toy_thumb", "index", "search", "rerank:toy_reverse"}
    assert times["extract:toy_thumb"]["images"] == 12 and times["search"]["queries"] == 12
    assert main(["run", "-c", str(cfg), "--quiet", "-s", "shortlist.k=50"]) == 0  # all skipped: times kept
    assert json.loads((out / "timings.json").read_text()) == times
    assert main(["report", "-c", str(cfg), "-s", "shortlist.k=50", "--queries", "2", "--quiet"]) == 0
    page = (out / "report.html").read_text()
    assert "toy test data" in page and "figures/pr_curves.png" in page and "figures/topk_toy_reverse.png" in page
    assert "<b>12</b> queries, <b>12</b> gallery images; shortlist K = <b>11</b> (configured 50)" in page
    assert "shortlist K was clamped from 50 to 11" in page and "reranks the top 4" in page
    assert "toy_thumb</b> (toy_thumb): random init, seed 3" in page
    assert "extractor toy_thumb has random weights" in page  # the visible note
    assert "toy_reverse: below the global order on this data (mAP 41.7 vs 100.0)" in page
    assert "rerank:toy_reverse" in page and "ms per query" in page
    assert "cases_toy_reverse.png" in page and "first positive #1 -&gt; #3" in page
    assert Image.open(out / "figures/topk_global_only.png").size[0] > 100


def test_interrupted_extract_resumes(toy):
    from relook import pipeline
    from relook.features import extract_to_store

    cfg, out = toy
    conf = load_config([cfg])
    dataset = pipeline.dataset_of(conf)
    _, gpath = pipeline.store_paths(conf, "toy_thumb", dataset)
    extract_to_store(ToyThumb(), dataset.gallery[:5], gpath, progress=False)  # an interrupted first run
    ToyThumb.calls = 0
    pipeline.extract(conf, progress=False)
    assert ToyThumb.calls == len(dataset.gallery) - 5  # only the missing images are extracted
    pipeline.extract(conf, progress=False)
    assert ToyThumb.calls == len(dataset.gallery) - 5


def test_extract_model_option(toy, capsys):
    cfg, out = toy
    assert main(["extract", "-c", str(cfg), "--model", "toy_thumb", "-s", "extractors=[]", "--quiet"]) == 0
    assert (out / "features/toy_thumb/gallery.h5").exists()
    assert main(["extract", "-c", str(cfg), "--model", "nope", "--quiet"]) == 2
    assert "unknown extractor 'nope'" in capsys.readouterr().err


class BatchMixing(ToyThumb):
    """Output depends on the batch it shares (like a CNN's kernels can, bit-wise): batches of 3 (test only)."""

    name = "toy_batch_mixing"
    default_conf = {"dim": 48, "batch_size": 3}

    stop_after = None  # raise after this many images, as a killed run stops

    def extract(self, images):
        images, done = list(images), 0
        for s in range(0, len(images), self.conf["batch_size"]):
            batch = [ToyThumb.extract_one(self, i, im) for i, im in images[s : s + self.conf["batch_size"]]]
            mean = np.mean([f.global_desc for f in batch], 0)
            for f in batch:
                if done == self.stop_after:
                    raise KeyboardInterrupt
                done += 1
                yield ImageFeatures(f.image_id, global_desc=f.global_desc + 1e-3 * mean, image_size=f.image_size)


def test_resumed_extract_equals_uninterrupted(toy, tmp_path):
    """Batches are fixed slices of the item list, so a run stopped after 4 of 12 images (mid-batch) and
    resumed writes exactly the features of a straight run."""
    from relook import pipeline
    from relook.features import extract_to_store
    from relook.store import FeatureStore

    cfg, _ = toy
    dataset = pipeline.dataset_of(load_config([cfg]))
    extract_to_store(BatchMixing(), dataset.gallery, tmp_path / "straight.h5", progress=False)
    stopped = BatchMixing()
    stopped.stop_after = 4
    with pytest.raises(KeyboardInterrupt):
        extract_to_store(stopped, dataset.gallery, tmp_path / "resumed.h5", progress=False)
    extract_to_store(BatchMixing(), dataset.gallery, tmp_path / "resumed.h5", progress=False)
    with FeatureStore(tmp_path / "straight.h5") as a, FeatureStore(tmp_path / "resumed.h5") as b:
        assert a.ids() == b.ids() and all(a.read(i) == b.read(i) for i in a.ids())


@EXTRACTORS.register("toy_grid")
class ToyGrid(Extractor):
    """7x7 grid of 128-d locals (cell colours through a fixed random matrix) + a thumbnail global (test only)."""

    name = "toy_grid"
    default_conf = {"dim": 128}  # local width
    writes = frozenset({"global_desc", "local_desc", "keypoints", "image_size"})

    def extract_one(self, image_id, image):
        cells = np.asarray(Image.fromarray(image).resize((7, 7)), np.float32).reshape(49, 3) / 255 - 0.5
        local = cells @ np.random.default_rng(0).standard_normal((3, self.conf["dim"])).astype(np.float32)
        H, W = image.shape[:2]
        r, c = np.divmod(np.arange(49), 7)
        kps = np.stack([(c + 0.5) * W / 7 - 0.5, (r + 0.5) * H / 7 - 0.5], 1)
        g = cells.mean(0)
        return ImageFeatures(
            image_id,
            global_desc=g / (np.linalg.norm(g) + 1e-9),
            local_desc=local,
            keypoints=kps,
            image_size=np.array([H, W]),
        )


def test_rerank_epe_checkpoint_end_to_end(toy, tmp_path, capsys):
    """`relook rerank` with an EPE checkpoint: refused in one line without pseudo-GT F; with the file of
    `relook geometry pseudo-gt-shortlist` it reranks, and the pairs' F reach the scores."""
    import json

    import h5py
    import torch

    from relook.models.rrt import RRT
    from relook.models.rrt.checkpoint import save_rrt
    from relook.types import Ranking

    cfg, out = toy
    torch.manual_seed(0)
    ckpt = save_rrt(
        tmp_path / "epe.pt",
        RRT(num_layers=1, dim_feedforward=64),
        guidance_json=json.dumps(
            {"guidance": "epe", "grid": 7, "net_size": [224, 224], "dim": 128, "bands": 10, "seed": 0}
        ),
    )
    pgt = tmp_path / "pgt.h5"
    base = ["-c", str(cfg), "-s", "extractors=[{name: toy_grid}]", "-s", "global=toy_grid"]
    item = f"{{name: rrt, label: rrt-epe, checkpoint: {ckpt}, top_k: 5"
    assert main(["run", *base, "-s", f"rerankers=[{item}}}]", "--quiet", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "guidance 'epe'" in err and "pseudo-gt-shortlist" in err and err.strip().count("\n") == 0
    assert main(["geometry", "pseudo-gt-shortlist", *base, "-o", str(pgt), "--top-k", "5", "--no-progress"]) == 0
    assert "wrote" in capsys.readouterr().out
    with_f = [*base, "-s", f"rerankers=[{item}, pseudo_gt: {pgt}}}]"]
    assert main(["rerank", *with_f, "--quiet"]) == 0
    first = Ranking.load(out / "rankings" / "rrt-epe.npz")
    with h5py.File(pgt, "a") as f:  # give every pair a reliable, pair-specific F: the encodings change
        for i, k in enumerate(f):
            f[k]["F"][...] = np.array([[0, 0, 0.01 * i], [0, 0, -1], [0, 1, 0]], float)
            f[k].attrs["reliable"] = True
    assert main(["rerank", *with_f, "--quiet"]) == 0  # the file's content is part of the ranking's fingerprint
    second = Ranking.load(out / "rankings" / "rrt-epe.npz")
    assert not np.allclose(first.scores[:, :5], second.scores[:, :5], atol=1e-4)


def test_progress_names_the_configured_label(toy, capsys):
    """The rerank progress bar shows the config's label (``rerank:flipped``), not only the reranker's name,
    so two configurations of one reranker (gv and gv-lightglue) tell apart."""
    from relook import pipeline
    from relook.experiment import load_config

    cfg, _ = toy
    conf = load_config([cfg], ["rerankers=[{name: toy_reverse, label: flipped}]"])
    pipeline.extract(conf, progress=False)
    pipeline.search(conf)
    capsys.readouterr()
    pipeline.rerank(conf, progress=True)
    err = capsys.readouterr().err
    assert "rerank:flipped" in err and "rerank:toy_reverse" not in err
