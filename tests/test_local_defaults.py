"""GV's default local features per device: the rule that picks them, the measured table it is applied to, and
the configs that carry the choice (configs/folder.yaml, ``methods.default_config``)."""

import json
from pathlib import Path

import pytest
import yaml

from relook.local_defaults import LOCAL_DEFAULTS, best_per_second, local_default, seconds_per_query
from relook.methods import DEFAULT_CONFIG, default_config

ROOT = Path(__file__).resolve().parents[1]
#: benchmark row label -> choice name of benchmarks/matchers.py
ROWS = {
    "gv": "aliked+mnn",
    "gv-lightglue": "aliked+lightglue",
    "gv-disk-lightglue": "disk+lightglue",
    "gv-xfeat-lighterglue": "xfeat+lighterglue",
    "gv-xfeat": "xfeat+mnn",
}


def test_matches_reference():
    """Hand-computed: A 2 points in 1 + 3 x 3 = 10 s (0.2/s), B 1 point in 0.5 + 5 x 0.3 = 2 s (0.5/s),
    C fastest but below the global order (excluded)."""
    rows = {
        "A": {"delta": 2.0, "s_image": 1.0, "s_pair": 3.0, "top_k": 3},
        "B": {"delta": 1.0, "s_image": 0.5, "s_pair": 0.3, "top_k": 5},
        "C": {"delta": -0.1, "s_image": 0.01, "s_pair": 0.001, "top_k": 5},
    }
    assert seconds_per_query(0.5, 0.3, 5) == pytest.approx(2.0)
    assert best_per_second(rows) == "B"
    rows["B"]["delta"] = 0.3  # 0.15/s < 0.2/s
    assert best_per_second(rows) == "A"
    with pytest.raises(ValueError, match="keep reranking off"):
        best_per_second({"C": rows["C"]})


def test_cpu_default_follows_the_table():
    """The committed measurements (results/benchmark_local: pooled delta; results/matchers: s/image, s/pair)
    give the CPU default by ``best_per_second``, at the sizes of the benchmark row that was measured."""
    bench = json.loads((ROOT / "results" / "benchmark_local" / "results.json").read_text())
    costs = json.loads((ROOT / "results" / "matchers" / "matchers.json").read_text())["choices"]
    pooled = bench["tables"]["pooled (room)"]
    rows = {}
    for label, choice in ROWS.items():
        if label in pooled:
            top_k = bench["settings"][label].get("top_k", 100)
            c = costs[choice]
            rows[choice] = {
                "delta": pooled[label]["delta_mAP"],
                "s_image": c["s/image"],
                "s_pair": c["s/pair"],
                "top_k": top_k,
            }
    assert len(rows) >= 4, sorted(rows)
    extractor, matcher = best_per_second(rows).split("+")
    ext, gv = LOCAL_DEFAULTS["cpu"]
    assert ext["name"] == extractor and gv["matcher"] == ("mnn" if matcher == "mnn" else "lightglue")
    label = next(lab for lab, ch in ROWS.items() if ch == f"{extractor}+{matcher}")
    measured = bench["settings"][label]
    assert {k: v for k, v in measured.items() if k not in ("name", "features")} == {
        k: v for k, v in gv.items() if k in measured
    } and set(gv) - set(measured) <= {"matcher"}
    conf = yaml.safe_load((ROOT / "configs" / "benchmark.yaml").read_text())
    (bench_ext,) = [e for e in conf["experiment"]["extractors"] if e.get("label", e["name"]) == measured["features"]]
    assert {k: v for k, v in bench_ext.items() if k != "weights"} == ext  # weights: the extractor's default


def test_configs_carry_the_default():
    ext, gv = LOCAL_DEFAULTS["cpu"]
    folder = yaml.safe_load((ROOT / "configs" / "folder.yaml").read_text())
    assert ext in folder["extractors"]
    assert folder["rerankers"][0] == {"name": "gv", "features": "aliked", **gv}
    assert DEFAULT_CONFIG["extractors"][1] == ext and DEFAULT_CONFIG["rerankers"][0] == {
        "name": "gv",
        "features": "aliked",
        **gv,
    }
    cpu, cuda = default_config("cpu"), default_config("cuda")
    assert cpu["extractors"][1]["resize"] == 320 and cpu["rerankers"][0]["top_k"] == 5
    assert cuda["extractors"][1]["device"] == "cuda" and cuda["rerankers"][0]["lightglue_device"] == "cuda"
    assert cuda["rerankers"][0]["top_k"] == 20 and cuda["extractors"][1]["resize"] == 640
    assert local_default("cuda:1") == LOCAL_DEFAULTS["cuda"] and local_default("cpu") == LOCAL_DEFAULTS["cpu"]
