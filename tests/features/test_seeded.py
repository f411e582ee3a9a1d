"""Random-init extractors are drawn from their ``seed`` alone: the same network in every process, a store
resumed after kill -9 equals an uninterrupted one, and a store is never resumed with another network."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from relook.errors import DataError
from relook.features import create_extractor, extract_to_store
from relook.store import FeatureStore

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

SRC = Path(__file__).resolve().parents[2] / "src"

#: tiny random-init networks of every extractor that has weights
CONFS = {
    "cnn_local": dict(arch="resnet10t", pretrained=False, image_size=64, local_dim=16, batch_size=1),
    "vit_tokens": dict(backbone="deit_small", pretrained=False, image_size=112, model_kwargs={"depth": 1}),
    "dtop": dict(
        model=dict(
            backbone="timm:vit_tiny_patch16_224", pretrained=False, timm_kwargs={"depth": 1}, layers=1, out_dim=48
        ),
        image_size=96,
        scales=[1.0],
        device="cpu",
    ),
}

# A child process: draws `noise` numbers from torch's global generator first (so every process starts the
# extractor from another global random state), then extracts the images with each extractor and seed.
# With `--print-writes` it prints one line after each store write; `--slow` then sleeps a little after it.
CHILD = textwrap.dedent("""
    import json, sys, time
    from pathlib import Path
    import torch
    from relook.features import create_extractor, extract_to_store
    from relook.store import FeatureStore

    out, images, noise, plan = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
    torch.rand(noise)
    if "--print-writes" in sys.argv:
        write = FeatureStore.write
        def printing_write(self, feats, overwrite=False):
            done = write(self, feats, overwrite)
            print("wrote", feats.image_id, flush=True)
            if "--slow" in sys.argv:
                time.sleep(0.3)
            return done
        FeatureStore.write = printing_write
    items = [(p.stem, p, None) for p in sorted(images.glob("*.png"))]
    for name, conf, store in plan:
        extract_to_store(create_extractor(name, **conf), items, out / store, progress=False)
""")


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _child_cmd(tmp_path, out, images, noise, plan, *flags):
    import json

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return [sys.executable, str(script), str(out), str(images), str(noise), json.dumps(plan), *flags]


def _images(folder: Path, n: int, seed: int = 0) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = rng.integers(40, 72, 2)
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(folder / f"im{i:02d}.png")
    return folder


def _same_store(a: Path, b: Path) -> bool:
    with FeatureStore(a) as x, FeatureStore(b) as y:
        return x.ids() == y.ids() and all(x.read(i) == y.read(i) for i in x.ids())


@pytest.mark.slow
def test_seeded_across_processes(tmp_path):
    """Two processes with different global random states extract byte-identical arrays; seed 1 differs."""
    images = _images(tmp_path / "images", 3)
    plan = [[name, {**conf, "seed": 0}, f"{name}-0.h5"] for name, conf in CONFS.items()]
    first = subprocess.run(
        _child_cmd(
            tmp_path,
            tmp_path / "a",
            images,
            1,
            plan + [["cnn_local", {**CONFS["cnn_local"], "seed": 1}, "cnn_local-1.h5"]],
        ),
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run(
        _child_cmd(tmp_path, tmp_path / "b", images, 1000, plan), env=_env(), capture_output=True, text=True
    )
    assert second.returncode == 0, second.stderr[-2000:]
    for name in CONFS:
        a, b = tmp_path / "a" / f"{name}-0.h5", tmp_path / "b" / f"{name}-0.h5"
        assert _same_store(a, b), name
        with FeatureStore(a) as store:
            assert len(store) == 3 and store.meta["extractor.seed"] == "0"
    with FeatureStore(tmp_path / "a" / "cnn_local-0.h5") as s0, FeatureStore(tmp_path / "a" / "cnn_local-1.h5") as s1:
        assert s1.meta["weights.what"] == "random init, seed 1"
        for i in s0.ids():
            assert not np.allclose(s0.read(i).global_desc, s1.read(i).global_desc, atol=1e-3)


@pytest.mark.parametrize("name", sorted(CONFS))
def test_seeded_global_rng_untouched(name):
    """Building a random-init extractor neither reads nor moves torch's global generator."""

    def params(ex):
        net = ex.model if name != "cnn_local" else ex.net
        return {k: v.clone() for k, v in net.state_dict().items()}

    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = params(create_extractor(name, **CONFS[name], seed=5))
    assert torch.equal(torch.get_rng_state(), state)
    torch.rand(17)
    b = params(create_extractor(name, **CONFS[name], seed=5))
    c = params(create_extractor(name, **CONFS[name], seed=6))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


@pytest.mark.slow
def test_seeded_kill9_then_resume(tmp_path):
    """kill -9 during a random-init extraction, resume in a new process: equal to an uninterrupted run."""
    images = _images(tmp_path / "images", 20)
    plan = [["cnn_local", CONFS["cnn_local"], "killed.h5"]]
    proc = subprocess.Popen(
        _child_cmd(tmp_path, tmp_path, images, 1, plan, "--print-writes", "--slow"),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line.split()[1])
        if len(lines) == 3:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with FeatureStore(tmp_path / "killed.h5") as store:
        done = store.ids()
    assert 3 <= len(done) < 20 and done[:3] == lines
    resumed = subprocess.run(
        _child_cmd(tmp_path, tmp_path, images, 77, plan, "--print-writes"), env=_env(), capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    redone = [line.split()[1] for line in resumed.stdout.splitlines()]
    assert len(redone) == 20 - len(done) and not set(redone) & set(done)  # only the missing images
    torch.rand(5)  # the uninterrupted run: here, from yet another global random state
    extract_to_store(
        create_extractor("cnn_local", **CONFS["cnn_local"]), _items(images), tmp_path / "clean.h5", progress=False
    )
    with FeatureStore(tmp_path / "killed.h5") as store:
        assert len(store) == 20
    assert _same_store(tmp_path / "killed.h5", tmp_path / "clean.h5")


def _items(folder):
    return [(p.stem, p, None) for p in sorted(folder.glob("*.png"))]


def test_provenance_mismatch_refused(tmp_path, monkeypatch):
    """A store begun with seed 0 is never extended with seed-1 features: one line naming the store and the
    seed, and the store is left exactly as it was."""
    items = _items(_images(tmp_path / "images", 5))
    conf = CONFS["cnn_local"]
    store = tmp_path / "s.h5"
    extract_to_store(create_extractor("cnn_local", **conf, seed=0), items[:3], store, progress=False)
    before = store.read_bytes()
    with pytest.raises(DataError, match=r"s\.h5: its 3 images were extracted with extractor.seed='0'") as e:
        extract_to_store(create_extractor("cnn_local", **conf, seed=1), items, store, progress=False)
    assert "\n" not in str(e.value) and store.read_bytes() == before

    # a store of an older relook, which did not record a setting, is refused naming the setting as absent
    # (not as "extracted with X=None, the config asks for 'None'")
    with FeatureStore(store, "a") as s:
        s.meta = {k: v for k, v in s.meta.items() if k != "extractor.gem_p"}
    with pytest.raises(
        DataError,
        match=r"extracted without the setting extractor.gem_p \(an older relook\), the "
        r"config asks for '3.0'",
    ):
        extract_to_store(create_extractor("cnn_local", **conf, seed=0), items, store, progress=False)

    # a runtime option (batch size, device) is not another network: the store is resumed, not redone
    extract_to_store(create_extractor("cnn_local", **conf, seed=1), items[:2], tmp_path / "part.h5", progress=False)
    writes = []
    write = FeatureStore.write
    monkeypatch.setattr(
        FeatureStore, "write", lambda self, f, overwrite=False: writes.append(f.image_id) or write(self, f, overwrite)
    )
    extract_to_store(
        create_extractor("cnn_local", **{**conf, "batch_size": 4}, seed=1), items, tmp_path / "part.h5", progress=False
    )
    assert writes == [it[0] for it in items[2:]]
