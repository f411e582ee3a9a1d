"""``--shard i/N`` on extract, rerank and evaluate, and ``relook merge``: the partition, the checks, and
N = 3 shards in separate processes giving what one process gives, on real UKBench photos."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from relook.errors import ConfigError, DataError
from relook.merge import merge_ranking
from relook.sharding import Shard, check_partition, find_parts, parse_shard, part_path, shard_ids
from relook.types import Ranking
from tests.shared_data import shared

SRC = Path(__file__).resolve().parents[1] / "src"


def test_shard_ids():
    ids = [f"im{i}" for i in (7, 3, 9, 0, 5, 1, 8, 2, 6, 4)]
    shares = [shard_ids(ids, Shard(i, 3)) for i in range(3)]
    assert shares[0] == ["im0", "im3", "im6", "im9"]  # every 3rd of the sorted list, from position 0
    flat = [i for s in shares for i in s]
    assert sorted(flat) == sorted(ids) and len(set(flat)) == len(ids)  # disjoint, complete
    assert shares == [shard_ids(ids[::-1], Shard(i, 3)) for i in range(3)]  # independent of the input order
    assert part_path("out/rankings/gv.npz", Shard(2, 3)) == Path("out/rankings/gv.npz.part2-of-3")


def test_bad_input(tmp_path):
    assert parse_shard("1/3") == Shard(1, 3) and parse_shard(None) is None and parse_shard("") is None
    for bad in ("3/3", "-1/2", "a/b", "1", "0/0"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)
    out = tmp_path / "results.json"
    for i in (0, 2):
        part_path(out, Shard(i, 3)).write_text("{}")
    with pytest.raises(DataError, match=r"1 of 3 parts missing.*--shard 1/3"):
        find_parts(out, "evaluate")
    part_path(out, Shard(1, 3)).write_text("{}")
    assert find_parts(out, "evaluate") == [part_path(out, Shard(i, 3)) for i in range(3)]
    part_path(out, Shard(0, 2)).write_text("{}")
    with pytest.raises(DataError, match="parts of"):
        find_parts(out, "evaluate")


def test_check_partition():
    ids = ["a", "b", "c", "d", "e"]
    parts = {Path(f"x.part{i}-of-2"): shard_ids(ids, Shard(i, 2)) for i in range(2)}
    check_partition(parts, ids)  # the partition itself passes
    with pytest.raises(DataError, match="outside its share"):  # an id in the other shard's part: twice
        check_partition({**parts, Path("x.part1-of-2"): ["b", "d", "a"]}, ids)
    with pytest.raises(DataError, match="lack 1 of 5"):
        check_partition({**parts, Path("x.part1-of-2"): ["b"]}, ids)
    check_partition({**parts, Path("x.part1-of-2"): ["b"]}, ids, done=["d"])  # the output held "d" already


def _ranking(qids, rng, k=4, g=6):
    idx = np.stack([rng.permutation(g)[:k] for _ in qids])
    return Ranking(
        qids, [f"g{i}" for i in range(g)], idx, np.sort(rng.random((len(qids), k)))[:, ::-1], {"fingerprint": "f"}
    )


def test_merge_ranking(tmp_path):
    rng = np.random.default_rng(0)
    qids = ["q3", "q1", "q0", "q2", "q4"]  # the shortlist's order, not sorted
    full = _ranking(qids, rng)
    out = tmp_path / "gv.npz"
    for i in range(2):
        full.rows(shard_ids(qids, Shard(i, 2))).save(part_path(out, Shard(i, 2)))
    assert merge_ranking(out, qids) == out
    got = Ranking.load(out)
    assert (
        got.query_ids == qids and np.array_equal(got.indices, full.indices) and np.array_equal(got.scores, full.scores)
    )
    assert not list(tmp_path.glob("gv.npz.part*"))  # parts removed after the merge
    # a part holding a query of another shard is refused, and nothing is written
    bad = tmp_path / "bad.npz"
    full.rows(["q0", "q2", "q4", "q1"]).save(part_path(bad, Shard(0, 2)))
    full.rows(["q1", "q3"]).save(part_path(bad, Shard(1, 2)))
    with pytest.raises(DataError, match="outside its share"):
        merge_ranking(bad, qids)
    assert not bad.exists() and len(list(tmp_path.glob("bad.npz.part*"))) == 2


CONFIG = """\
dataset: {{name: folder, root: {root}, csv: {csv}}}
extractors:
  - {{name: cnn_local, arch: resnet10t, pretrained: false, image_size: 64, local_dim: 16, batch_size: 1}}
  - {{name: sift, num_features: 128}}
global: cnn_local
shortlist: {{k: 15, index: flat}}
rerankers:
  - {{name: gv, features: sift, threshold: 8.0, top_k: 5}}
  - {{name: aqe}}
out: {out}
"""


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _shards(stage: str, config: Path, n: int = 3) -> None:
    """``relook STAGE --shard i/n`` for every i, each in its own process, all at once."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "relook.cli", stage, "-c", str(config), "--shard", f"{i}/{n}", "-q"],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(n)
    ]
    for i, p in enumerate(procs):
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, f"{stage} --shard {i}/{n}: {err[-3000:]}"


@pytest.mark.slow
def test_three_shards_match_one_process(tmp_path, one_thread):
    """4 UKBench objects x 4 views (real photos; a seeded random-init ResNet-10t global, SIFT): extract,
    rerank (gv, aqe) and evaluate in 3 processes each, merged, equal one process's stores, rankings and
    metrics."""
    from relook import pipeline
    from relook.experiment import load_config
    from relook.shards import merge_run
    from relook.store import FeatureStore

    root = shared("multiview", "ukbench", "images")
    rows = [
        f"{g}/ukbench{4 * n + v:05d}.jpg,{g}"
        for n, g in ((14, "ukb0014"), (15, "ukb0015"), (16, "ukb0016"), (17, "ukb0017"))
        for v in range(4)
    ]
    csv = tmp_path / "four.csv"
    csv.write_text("image,group\n" + "\n".join(rows) + "\n")
    for name in ("one", "three"):
        (tmp_path / f"{name}.yaml").write_text(CONFIG.format(root=root, csv=csv, out=tmp_path / name))
    one = load_config([tmp_path / "one.yaml"])
    pipeline.extract(one, progress=False)
    pipeline.search(one)
    pipeline.rerank(one, progress=False)
    expected = pipeline.evaluate(one)

    config = tmp_path / "three.yaml"
    three = load_config([config])
    _shards("extract", config)
    assert len(list((tmp_path / "three" / "features").rglob("gallery.h5.part*-of-3"))) == 6  # 2 extractors x 3
    assert len(merge_run(three, ("extract",))) == 2
    pipeline.search(three)
    _shards("rerank", config)
    assert len(merge_run(three, ("rerank",))) == 2
    _shards("evaluate", config)
    merged = subprocess.run(
        [sys.executable, "-m", "relook.cli", "merge", "-c", str(config)], env=_env(), capture_output=True, text=True
    )
    assert merged.returncode == 0, merged.stderr[-3000:]
    assert "results.json" in merged.stdout and "gv" in merged.stdout  # the merged table is printed

    for label in ("cnn_local", "sift"):
        a, b = (tmp_path / n / "features" / label / "gallery.h5" for n in ("one", "three"))
        with FeatureStore(a) as sa, FeatureStore(b) as sb:
            assert sa.ids() == sb.ids() and len(sa) == 16
            for i in sa.ids():
                assert sa.read(i) == sb.read(i), (label, i)
    for label in ("gv", "aqe"):
        a, b = (Ranking.load(tmp_path / n / "rankings" / f"{label}.npz") for n in ("one", "three"))
        assert a.query_ids == b.query_ids and a.gallery_ids == b.gallery_ids
        assert np.array_equal(a.indices, b.indices) and np.array_equal(a.scores, b.scores), label
    got = json.loads((tmp_path / "three" / "results.json").read_text())["metrics"]
    assert list(got) == ["global only", "gv", "aqe"]
    for method, row in expected["metrics"].items():
        for name, value in row.items():
            assert got[method][name] == pytest.approx(value, abs=1e-12), (method, name)
    # not an empty comparison: per-query values differ (a random-init global order errs on some queries, so a
    # mean of the shards' means would differ from the mean), and SIFT GV on the real photos repairs it
    assert 0 < expected["metrics"]["global only"]["MAP@R"] < 1
    assert expected["metrics"]["gv"]["R@1"] > expected["metrics"]["global only"]["R@1"]
    assert not list((tmp_path / "three").rglob("*.part*-of-*"))  # every part merged and removed


def test_merge_store(tmp_path):
    """Store parts join into one store; parts of two extractor settings, or a part lacking its ids, are
    refused with the output untouched."""
    from relook.merge import merge_store
    from relook.store import FeatureStore
    from relook.types import ImageFeatures

    ids = [f"im{i}" for i in range(7)]
    feats = {i: ImageFeatures(i, global_desc=np.full(4, n, np.float32)) for n, i in enumerate(ids)}
    out = tmp_path / "gallery.h5"

    def write_parts(meta1: dict, drop: str | None = None) -> None:
        for s in range(3):
            meta = meta1 if s == 1 else {"extractor": "x", "extractor.seed": "0"}
            with FeatureStore(part_path(out, Shard(s, 3)), "w", meta=meta) as st:
                for i in shard_ids(ids, Shard(s, 3)):
                    if i != drop:
                        st.write(feats[i])

    write_parts({"extractor": "x", "extractor.seed": "1"})
    with pytest.raises(DataError, match="extractor.seed"):
        merge_store(out, ids)
    write_parts({"extractor": "x", "extractor.seed": "0", "extractor.batch_size": "8"}, drop="im4")
    with pytest.raises(DataError, match="lack 1 of 7 ids.*'im4'"):
        merge_store(out, ids)
    assert not out.exists()
    write_parts({"extractor": "x", "extractor.seed": "0"})
    assert merge_store(out, ids) == out and not list(tmp_path.glob("gallery.h5.part*"))
    with FeatureStore(out) as st:
        assert st.ids() == ids and all(st.read(i) == feats[i] for i in ids)
    assert merge_store(out, ids) is None  # complete, no parts: nothing to do
