"""``relook extract`` under torchrun: rank shards, rank 0 merges, equal to one process; resumable."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from relook.distributed import shard_items, shard_path, world
from relook.errors import ConfigError
from relook.store import FeatureStore

SRC = Path(__file__).resolve().parents[1] / "src"

CONFIG = """\
dataset: {{name: folder, root: {root}}}
extractors:
  - {{name: cnn_local, arch: resnet10t, pretrained: false, image_size: 64, local_dim: 16, batch_size: 1}}
out: {out}
"""


def test_shard_items():
    items = [(f"im{i}", None, None) for i in (7, 3, 9, 0, 5, 1, 8, 2, 6, 4)]
    shards = [shard_items(items, r, 3) for r in range(3)]
    assert [i[0] for i in shards[0]] == ["im0", "im3", "im6", "im9"]  # every 3rd of the id-sorted list
    ids = [i[0] for s in shards for i in s]
    assert sorted(ids) == sorted(i[0] for i in items) and len(set(ids)) == len(items)  # disjoint, complete
    assert shards == [shard_items(items[::-1], r, 3) for r in range(3)]  # independent of the input order
    assert shard_path("out/gallery.h5", 1, 4) == Path("out/gallery.h5.part1-of-4")  # the part of --shard 1/4


def test_bad_input(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ConfigError, match="WORLD_SIZE"):
        world()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(ConfigError, match="RANK=2"):
        world()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


@pytest.mark.slow
def test_torchrun_extract_matches_single_process(tmp_path, one_thread):
    from PIL import Image

    from relook.cli import main
    from relook.types import ImageFeatures

    rng = np.random.default_rng(0)
    root = tmp_path / "photos"
    for i in range(11):
        (root / f"g{i % 3}").mkdir(parents=True, exist_ok=True)
        h, w = rng.integers(40, 72, 2)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / f"g{i % 3}" / f"{i:02d}.png")
    config = tmp_path / "folder.yaml"
    config.write_text(CONFIG.format(root=root, out=tmp_path / "single"))
    assert main(["extract", "-c", str(config), "--quiet"]) == 0  # one process, this one
    one = tmp_path / "single" / "features" / "cnn_local" / "gallery.h5"
    with FeatureStore(one) as store:
        ids, meta = store.ids(), store.meta
        assert len(ids) == 11
        # a crashed earlier run left two shards part-done; a changed array proves they are resumed, not redone
        first, second = ids[0], ids[1]  # sorted positions 0 and 1: rank 0's and rank 1's first images
        marked = {i: store.read(i) for i in (first, second)}
    gallery = tmp_path / "multi" / "features" / "cnn_local" / "gallery.h5"
    for rank, image_id in enumerate((first, second)):
        arrays = marked[image_id].arrays()
        arrays["global_desc"] = -arrays["global_desc"]
        marked[image_id] = ImageFeatures.from_arrays(image_id, arrays)
        with FeatureStore(shard_path(gallery, rank, 2), "a", meta=meta) as shard:
            shard.write(marked[image_id])

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "relook.cli",
        "extract",
        "-c",
        str(config),
        "-s",
        f"out={tmp_path / 'multi'}",
    ]  # not --quiet: it would hide the report line
    multi = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=120)
    assert multi.returncode == 0, multi.stderr[-3000:]
    assert multi.stdout.count("cnn_local: ") == 1  # rank 0 alone reports
    assert sorted(p.name for p in gallery.parent.iterdir()) == ["gallery.h5"]  # shards merged, then removed
    with FeatureStore(one) as a, FeatureStore(gallery) as b:
        assert b.ids() == ids and b.meta == meta
        for image_id in ids:
            assert b.read(image_id) == (marked[image_id] if image_id in marked else a.read(image_id)), image_id
