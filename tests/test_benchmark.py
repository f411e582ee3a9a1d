"""relook benchmark end to end on tiny folder sets (pretrained Lite0 at 64 px, no ALIKED): the numbers it
writes against relook's own evaluate and an independent bootstrap, val selection, absent rows, --extra-test."""

import csv
import json

import cv2
import numpy as np
import pytest
import yaml

from relook.benchmark import load_benchmark_config, run_benchmark, variants
from relook.benchmark_sets import half_split
from relook.cli import main
from relook.errors import ConfigError
from relook.eval.bootstrap import paired_bootstrap
from tests.synthetic_images import known_homography, textured_image


def _views(root, groups, views, seed, csv_name=None):
    """``groups`` textured scenes x ``views`` warped views; sub-folders, or a groups.csv with group_id."""
    rows = []
    for g in range(groups):
        base = textured_image(96, seed * 100 + g, shapes=40)
        for v in range(views):
            img = base if v == 0 else cv2.warpPerspective(base, known_homography(96, 1000 * g + v, 0.1), (96, 96))
            path = root / f"g{g:02d}" / f"v{v}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), img)
            rows.append((f"g{g:02d}/v{v}.png", f"obj{g}"))
    if csv_name:
        with open(root / csv_name, "w", newline="") as f:
            csv.writer(f).writerows([("image", "group_id"), *rows])
    return root


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    data = tmp / "data"
    _views(data / "objects", 10, 3, 1, "groups.csv")
    _views(data / "geo" / "a", 4, 2, 2, "groups.csv")  # merged: two sub-sets with a groups.csv each
    _views(data / "geo" / "b", 4, 2, 3, "groups.csv")
    _views(data / "places", 2, 8, 4, "groups.csv")
    conf = {
        "data_root": str(data),
        "out": str(tmp / "out"),
        "sets": {
            "objects": {"root": "objects", "split_by_group": True, "role": "ceiling"},
            "geo": {"root": "geo", "merge": True, "half": "group", "role": "room"},
            "places": {"root": "places", "half": "image", "role": "room"},
        },
        "train_set": "objects",
        "experiment": {
            "extractors": [
                {"name": "cnn_local", "image_size": 64, "batch_size": 8},
                {"name": "cnn_local", "label": "grid", "image_size": 96, "batch_size": 8},  # asmk's, not the global
            ],
            "global": "cnn_local",
            "shortlist": {"k": 20},
        },
        "rows": [
            {"label": "aqe", "reranker": {"name": "aqe"}},
            {"label": "asmk", "reranker": {"name": "asmk", "features": "grid", "codebook_size": 4}, "codebook": str(tmp / "none.npy")},
            {"label": "chamfer", "reranker": {"name": "chamfer", "features": "cnn_local"}, "tune": {"weight": [0.0, 1.0, 4.0]}},
            {"label": "rrt", "reranker": {"name": "rrt", "features": "cnn_local"}, "checkpoint": str(tmp / "no_rrt.pt")},
        ],
        "bootstrap": {"n": 300, "seed": 0},
    }  # fmt: skip
    path = tmp / "bench.yaml"
    path.write_text(yaml.safe_dump(conf))
    return tmp, path, data


def test_half_split():
    rows = [(f"{g}/{i}", g) for g in "abcdef" for i in range(5)]
    by_group = half_split(rows, "group", 0)
    for g in "abcdef":
        assert len({by_group[f"{g}/{i}"] for i in range(5)}) == 1  # whole groups
    assert sorted(by_group.values()).count("val") == 15
    by_image = half_split(rows, "image", 0)
    for g in "abcdef":
        assert [by_image[f"{g}/{i}"] for i in range(5)].count("val") == 2  # floor(5 / 2) of each group
    assert half_split(rows, "image", 0) == by_image and half_split(rows, "image", 1) != by_image


def test_smoke_end_to_end(bench, capsys):
    tmp, path, data = bench
    extra = _views(tmp / "extra", 3, 3, 9)
    assert main(["benchmark", "-c", str(path), "--extra-test", str(extra), "-q"]) == 0
    out = tmp / "out"
    res = json.loads((out / "results.json").read_text())
    md = (out / "results.md").read_text()
    assert (out / "deltas.png").stat().st_size > 1000
    assert "not trained: no checkpoint at" in md and "rrt" in res["absent"]
    assert "## geo (room): test half by group, seed 0" in md and "## objects (ceiling): test objects" in md
    assert set(res["tables"]) == {"objects", "geo", "places", "extra:extra", "pooled (room)"}
    # the global row equals relook's own evaluate() on the same test run
    from relook import pipeline
    from relook.experiment import load_config

    run = load_config([out / "geo" / "test" / "config.yaml"])
    ref = pipeline.evaluate(run)
    geo = res["tables"]["geo"]
    assert geo["global"]["mAP"] == pytest.approx(ref["metrics"]["global only"]["mAP"])
    assert geo["chamfer"]["R@1"] == pytest.approx(ref["metrics"]["chamfer"]["R@1"])
    # the pooled delta of chamfer is the paired bootstrap over the concatenated queries of geo and places
    from relook.benchmark import scores_of

    per = [scores_of(load_config([out / s / "test" / "config.yaml"]), ["chamfer"]) for s in ("geo", "places")]
    a = np.concatenate([p["global"]["AP"] for p in per])
    b = np.concatenate([p["chamfer"]["AP"] for p in per])
    d, lo, hi = paired_bootstrap(b, a, n=300, seed=0)  # method first, baseline second
    pooled = res["tables"]["pooled (room)"]["chamfer"]
    assert (pooled["delta_mAP"], pooled["delta_lo"], pooled["delta_hi"]) == pytest.approx((d, lo, hi))
    # s/image and s/pair: the stage timings of the run folders over the images and the scored pairs
    from relook.types import Shortlist

    ext_s = img = rr_s = pairs = 0
    for s in ("geo", "places"):
        t = json.loads((out / s / "test" / "timings.json").read_text())
        valid = (Shortlist.load(out / s / "test" / "shortlist.npz").indices >= 0).sum(1)
        set_pairs = int(np.minimum(valid, 100).sum())  # chamfer's top_k: the default 100
        row = res["tables"][s]["chamfer"]
        assert row["s/image"] == pytest.approx(t["extract:cnn_local"]["seconds"] / t["extract:cnn_local"]["images"])
        assert row["s/pair"] == pytest.approx(t["rerank:chamfer"]["seconds"] / set_pairs)
        assert res["tables"][s]["aqe"]["s/pair"] is None  # over the gallery, not pairwise (NaN -> null)
        ext_s, img = ext_s + t["extract:cnn_local"]["seconds"], img + t["extract:cnn_local"]["images"]
        rr_s, pairs = rr_s + t["rerank:chamfer"]["seconds"], pairs + set_pairs
    assert (pooled["s/image"], pooled["s/pair"]) == pytest.approx((ext_s / img, rr_s / pairs))
    assert "| s/image | s/pair |" in md
    # the chosen weight is the best mean val mAP over the three val splits
    val = res["val"]["chamfer"]["val_mAP_mean_over_sets"]
    best = max(val, key=val.get)
    assert res["chosen_on_val"]["chamfer"]["weight"] == float(best.split("=")[1].rstrip("]"))
    assert res["sets"]["extra:extra:all"]["queries"] == 9
    # test splits disjoint from val splits
    for s in ("objects", "geo", "places"):
        ids = [
            set(pipeline.dataset_of(load_config([out / s / sp / "config.yaml"])).gallery_ids) for sp in ("val", "test")
        ]
        assert ids[0] and ids[1] and not ids[0] & ids[1]
    # asmk trained its codebook on the objects' train split (its file is not shipped)
    assert list((out / "asmk").glob("objects_train_grid_4.npy"))


def test_eval_only_trains_nothing(bench, tmp_path):
    _, path, _ = bench
    conf = load_benchmark_config(
        [path],
        [
            f"out={tmp_path / 'o'}",
            "rows=[{label: asmk, reranker: {name: asmk, features: cnn_local, codebook_size: 4}, codebook: nowhere.npy}]",
        ],
    )
    res = run_benchmark(conf, eval_only=True, progress=False, log=lambda m: None)
    assert res["absent"]["asmk"].startswith("not trained: no codebook at nowhere.npy")
    assert not (tmp_path / "o" / "asmk").exists()


def test_bad_input(bench, tmp_path, capsys):
    _, path, _ = bench
    assert main(["benchmark", "-c", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert main(["benchmark", "-c", str(path), "--extra-test", str(tmp_path / "nope")]) == 2
    assert "--extra-test" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        load_benchmark_config([path], ["rows=[{label: global, reranker: {name: aqe}}]"])
    assert variants({"label": "c", "reranker": {"name": "chamfer"}, "tune": {"weight": [1, 2]}})[1] == (
        "c[weight=2]",
        {"name": "chamfer", "weight": 2},
    )


def test_rows_over_a_global_row(bench, tmp_path):
    """A reranker row ``over`` a global row reranks that row's shortlist with that row's features (checked
    against the OT reranker run here on those files), its "delta to own global" is the paired bootstrap against
    that row (per set and pooled), its delta to the Lite0 global stays, and the global row's ``tune`` picks the
    extractor setting with the best mean val mAP, with the rows over it tuned on that setting's val runs."""
    from relook import pipeline
    from relook.benchmark import scores_of
    from relook.benchmark_report import markdown
    from relook.experiment import load_config
    from relook.rerank import create_reranker
    from relook.store import FeatureStore
    from relook.types import Ranking, Shortlist

    _, path, _ = bench
    rows = (
        "rows=[{label: g, global: {name: cnn_local, batch_size: 8}, tune: {image_size: [80, 96]}},"
        " {label: ot-g, over: g, reranker: {name: ot, marginal: uniform, top_k: 20}, tune: {struct_weight: [0.5, 2.0]}}]"
    )
    sets = (
        "sets={geo: {root: geo, merge: true, half: group, role: room}, places: {root: places, half: image, role: room}}"
    )
    conf = load_benchmark_config([path], [f"out={tmp_path / 'o'}", rows, sets, "train_set=null"])
    res = run_benchmark(conf, progress=False, log=lambda m: None)
    out = tmp_path / "o"
    val = res["val"]
    best = max(val["g"]["val_mAP_mean_over_sets"], key=val["g"]["val_mAP_mean_over_sets"].get)
    assert best == f"g[image_size={val['g']['chosen']['image_size']}]"
    assert val["ot-g"]["baseline"] == "g"
    assert val["ot-g"]["val_mAP_global"] == {
        s: float(np.nanmean(scores_of(load_config([out / s / "val" / best / "config.yaml"]), [])["global"]["AP"]))
        for s in ("geo", "places")
    }
    per = {}
    for s in ("geo", "places"):
        run = load_config([out / s / "test" / "g" / "config.yaml"])
        assert run["extractors"][0]["image_size"] == val["g"]["chosen"]["image_size"]
        dataset = pipeline.dataset_of(run)
        qpath, gpath = pipeline.store_paths(run, "g", dataset)
        rr = create_reranker(**res["settings"]["ot-g"])
        with FeatureStore(qpath, "r") as qs, FeatureStore(gpath, "r") as gs:
            ref = rr.rerank_shortlist(Shortlist.load(out / s / "test" / "g" / "shortlist.npz"), qs, gs, progress=False)
        got = Ranking.load(out / s / "test" / "g" / "rankings" / "ot-g.npz")
        np.testing.assert_array_equal(got.indices, ref.indices)
        np.testing.assert_allclose(got.scores, ref.scores, atol=1e-6)
        per[s] = scores_of(run, ["ot-g"])
        row = res["tables"][s]["ot-g"]
        d = paired_bootstrap(per[s]["ot-g"]["AP"], per[s]["global"]["AP"], n=300, seed=0)
        assert row["vs"] == "g" and (row["own_delta_mAP"], row["own_delta_lo"], row["own_delta_hi"]) == pytest.approx(d)
        lite0 = scores_of(load_config([out / s / "test" / "config.yaml"]), [])["global"]["AP"]
        d = paired_bootstrap(per[s]["ot-g"]["AP"], lite0, n=300, seed=0)
        assert (row["delta_mAP"], row["delta_lo"], row["delta_hi"]) == pytest.approx(d)
    pooled = res["tables"]["pooled (room)"]["ot-g"]
    a, b = (np.concatenate([per[s][k]["AP"] for s in ("geo", "places")]) for k in ("ot-g", "global"))
    d = paired_bootstrap(a, b, n=300, seed=0)
    assert (pooled["own_delta_mAP"], pooled["own_delta_lo"], pooled["own_delta_hi"]) == pytest.approx(d)
    md = markdown(res)
    assert "delta to own global [95% CI]" in md and " vs g |" in md
    with pytest.raises(ConfigError, match="over"):
        load_benchmark_config([path], ["rows=[{label: x, over: aqe, reranker: {name: aqe}}]"])
