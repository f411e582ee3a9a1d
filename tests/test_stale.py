"""Stale results are never mixed: a stage whose inputs changed is redone, or a later stage refuses it."""

import json

import numpy as np
import pytest

from relook import pipeline
from relook.cli import main
from relook.errors import DataError
from relook.experiment import load_config
from relook.store import FeatureStore
from relook.types import ImageFeatures, Ranking, Shortlist
from tests.test_pipeline import toy  # noqa: F401  (fixture: toy colour dataset + config)


def _one_line_error(capsys, *words):
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.strip().count("\n") == 0, err
    for w in words:
        assert w in err, (w, err)
    return err


def _perturb_gallery(out):
    """Rewrite one gallery image with another descriptor: same ids, count and metadata, new content."""
    path = out / "features/toy_thumb/gallery.h5"
    with FeatureStore(path, "a") as gs:
        first = gs.ids()[0]
        feats = gs.read(first)
        v = np.roll(feats.global_desc, 5)
        gs.write(ImageFeatures(first, global_desc=v, image_size=feats.image_size), overwrite=True)
    return first


@pytest.mark.slow  # ~8 CPU-s: a pipeline run each
def test_evaluate_refuses_rankings_of_an_older_shortlist(toy, capsys):
    cfg, out = toy
    assert main(["run", "-c", str(cfg), "--quiet"]) == 0
    before = (out / "results.json").read_bytes()
    report = (out / "report.html").read_bytes()  # `run` writes the report of the first shortlist
    assert main(["search", "-c", str(cfg), "-s", "shortlist.k=5"]) == 0  # a re-search: new shortlist
    capsys.readouterr()
    assert main(["evaluate", "-c", str(cfg), "-s", "shortlist.k=5"]) == 2
    _one_line_error(capsys, "rankings/toy_reverse.npz", "another shortlist", "relook rerank --methods toy_reverse")
    assert (out / "results.json").read_bytes() == before  # the refused evaluate wrote nothing
    assert main(["report", "-c", str(cfg), "-s", "shortlist.k=5"]) == 2
    assert (out / "report.html").read_bytes() == report  # the refused report rewrote nothing
    # rerank redoes the ranking from the new shortlist; then every row agrees with it
    assert main(["rerank", "-c", str(cfg), "-s", "shortlist.k=5", "--quiet"]) == 0
    shortlist, ranking = Shortlist.load(out / "shortlist.npz"), Ranking.load(out / "rankings/toy_reverse.npz")
    assert shortlist.k == 5 and ranking.k == 5
    assert ranking.meta["made_from.shortlist"] == shortlist.meta["fingerprint"]
    for q in range(shortlist.num_queries):
        assert sorted(ranking.indices[q].tolist()) == sorted(shortlist.indices[q].tolist())


@pytest.mark.slow  # ~8 CPU-s
def test_evaluate_refuses_a_shortlist_older_than_its_config(toy, capsys):
    cfg, out = toy
    assert main(["run", "-c", str(cfg), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "-c", str(cfg), "-s", "shortlist.k=4"]) == 2
    _one_line_error(capsys, "shortlist.npz", "out of date", "relook search")


@pytest.mark.slow  # ~7 CPU-s
def test_evaluate_refuses_after_features_change(toy, capsys):
    """Re-extracted global features: the shortlist is stale; after a re-search the ranking is stale."""
    cfg, out = toy
    assert main(["run", "-c", str(cfg), "--quiet"]) == 0
    _perturb_gallery(out)
    capsys.readouterr()
    assert main(["evaluate", "-c", str(cfg)]) == 2
    _one_line_error(capsys, "shortlist.npz", "relook search")
    assert main(["search", "-c", str(cfg)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "-c", str(cfg)]) == 2
    _one_line_error(capsys, "rankings/toy_reverse.npz")


@pytest.mark.slow  # ~8 CPU-s
def test_evaluate_refuses_ranking_of_other_settings(toy, capsys):
    cfg, out = toy
    assert main(["run", "-c", str(cfg), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "-c", str(cfg), "-s", "rerankers.0.top_k=2"]) == 2
    _one_line_error(capsys, "rankings/toy_reverse.npz", "other settings", "toy_reverse")


def test_changed_gallery_store_rebuilds_index(toy):
    cfg, out = toy
    conf = load_config([cfg])
    pipeline.extract(conf, progress=False)
    idx = pipeline.index(conf)
    first = idx.read_bytes()
    stamp = json.loads((out / "index.json").read_text())["fingerprint"]
    mtime = idx.stat().st_mtime_ns
    assert pipeline.index(conf) == idx and idx.stat().st_mtime_ns == mtime  # unchanged store: reused
    _perturb_gallery(out)
    pipeline.index(conf)
    assert json.loads((out / "index.json").read_text())["fingerprint"] != stamp
    assert idx.read_bytes() != first  # the index holds the new descriptor
    # and the shortlist is searched again (its fingerprint covers the store's content)
    sl = pipeline.search(conf)
    old = Shortlist.load(sl).meta["fingerprint"]
    _perturb_gallery(out)
    assert Shortlist.load(pipeline.search(conf)).meta["fingerprint"] != old


def test_extract_refuses_to_mix_settings(toy, capsys):
    cfg, out = toy
    assert main(["extract", "-c", str(cfg), "--quiet"]) == 0
    path = out / "features/toy_thumb/gallery.h5"
    before = path.read_bytes()
    capsys.readouterr()
    assert main(["extract", "-c", str(cfg), "-s", "extractors.0.dim=24", "--quiet"]) == 2
    _one_line_error(capsys, str(path), "extractor.dim='48'", "'24'")
    assert path.read_bytes() == before


def test_store_digest_follows_content(tmp_path):
    path = tmp_path / "s.h5"
    with FeatureStore(path, "a", meta={"extractor": "x"}) as s:
        s.write(ImageFeatures("a", global_desc=np.ones(4, np.float32) / 2))
        s.write(ImageFeatures("b", global_desc=np.zeros(4, np.float32)))
        d = s.digest()
        assert s.digest(["a", "b"]) == d and s.digest(["b", "a"]) != d
        s.write(ImageFeatures("b", global_desc=np.full(4, 0.5, np.float32)), overwrite=True)
        assert s.digest() != d
    with FeatureStore(path) as s:
        d2 = s.digest()
    with FeatureStore(path, "a", meta={"extractor": "y"}) as s:
        assert s.digest() != d2
    with FeatureStore(path) as s:  # a store without the per-image attribute: digest computed from arrays
        pass
    import h5py

    with h5py.File(path, "a") as f:
        for g in f["images"].values():
            del g.attrs["digest"]
    with FeatureStore(path) as s:
        d3 = s.digest()
    with FeatureStore(path, "a", meta={"extractor": "y"}) as s:
        s.write(ImageFeatures("b", global_desc=np.full(4, 0.5, np.float32)), overwrite=True)
        assert s.digest() == d3  # same content, with or without the stored attribute
    with pytest.raises(DataError, match="not in"):
        FeatureStore(path).digest(["nope"])
