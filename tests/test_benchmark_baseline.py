"""A benchmark row's second delta (``baseline: LABEL``): the paired bootstrap of the row against that row, per set
and pooled over the room sets, in results and in the markdown table; a baseline that names no row is refused."""

import numpy as np
import pytest

from relook.benchmark import check_benchmark_config
from relook.benchmark_report import POOLED, markdown, summarise
from relook.errors import ConfigError
from relook.eval.bootstrap import paired_bootstrap


def _scores(seed, n=30):
    rng = np.random.default_rng(seed)
    return {"AP": rng.random(n), "R@1": rng.random(n), "P@10": rng.random(n), "ms": 1.0}


def _bench():
    sets = {"a": {"root": "x", "role": "room"}, "b": {"root": "y", "role": "room"}}
    rows = [
        {"label": "fc", "global": {"name": "dtop_vit"}},
        {"label": "dtop", "global": {"name": "dtop_vit"}, "baseline": "fc"},
    ]
    return {"sets": sets, "rows": rows, "bootstrap": {"n": 200, "seed": 0}, "train_set": None, "data_root": "d"}


def test_matches_reference():
    per_set = {
        s: {"role": "room", "split": "test", "scores": {"global": _scores(i), "fc": _scores(10 + i), "dtop": _scores(20 + i)}}
        for i, s in enumerate(("a", "b"))
    }  # fmt: skip
    splits = {(s, "test"): ("test half", {"queries": 30, "gallery": 30}) for s in per_set}
    res = summarise(_bench(), per_set, ["fc", "dtop"], {}, {}, {}, splits, {})
    for s in ("a", "b"):
        ref = paired_bootstrap(per_set[s]["scores"]["dtop"]["AP"], per_set[s]["scores"]["fc"]["AP"], n=200, seed=0)
        vs = res["tables"][s]["dtop"]["vs_baseline"]
        assert vs[0] == "fc" and vs[1:] == pytest.approx(list(ref))
        assert "vs_baseline" not in res["tables"][s]["fc"]
    a = np.concatenate([per_set[s]["scores"]["dtop"]["AP"] for s in ("a", "b")])
    b = np.concatenate([per_set[s]["scores"]["fc"]["AP"] for s in ("a", "b")])
    assert res["tables"][POOLED]["dtop"]["vs_baseline"][1:] == pytest.approx(
        list(paired_bootstrap(a, b, n=200, seed=0))
    )
    md = markdown(res)
    d, lo, hi = res["tables"][POOLED]["dtop"]["vs_baseline"][1:]
    assert "vs baseline: delta mAP [95% CI]" in md
    assert f"fc: {100 * d:.2f} [{100 * lo:.2f}, {100 * hi:.2f}]" in md


def test_bad_input():
    conf = {**_bench(), "rows": [{"label": "dtop", "global": {"name": "dtop_vit"}, "baseline": "nope"}]}
    with pytest.raises(ConfigError, match="baseline 'nope'"):
        check_benchmark_config(conf)
