import os
import signal
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from relook.errors import DataError, RelookError, ShapeError
from relook.store import FeatureStore, merge_stores
from relook.types import ImageFeatures


def make_feats(i: int) -> ImageFeatures:
    r = np.random.default_rng(i)
    return ImageFeatures(
        f"dir/img_{i:03d}.jpg",
        global_desc=r.normal(size=16),
        local_desc=r.normal(size=(20, 8)),
        keypoints=r.uniform(0, 100, size=(20, 2)),
        image_size=[100, 120],
    )


def test_write_read_roundtrip(tmp_path):
    path = tmp_path / "f.h5"
    with FeatureStore(path, "a", meta={"extractor": "test"}) as s:
        assert s.write(make_feats(0)) and s.write(make_feats(1))
        assert not s.write(make_feats(0))  # already complete: skipped
    with FeatureStore(path) as s:
        assert len(s) == 2 and "dir/img_000.jpg" in s and "nope" not in s
        assert s.read("dir/img_001.jpg") == make_feats(1)
        assert s.fields() == ["global_desc", "image_size", "keypoints", "local_desc"]
        assert s.meta == {"extractor": "test"}
        assert s.stack("global_desc").shape == (2, 16)
        assert s.missing(["dir/img_000.jpg", "x"]) == ["x"]
        only = s.read("dir/img_000.jpg", ["global_desc"])
        assert only.local_desc is None and only.global_desc is not None


def test_bad_input(tmp_path):
    with pytest.raises(DataError, match="not found"):
        FeatureStore(tmp_path / "none.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="junk.h5"):
        FeatureStore(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w"):
        pass
    with pytest.raises(DataError, match="not a relook feature store"):
        FeatureStore(tmp_path / "other.h5")
    path = tmp_path / "f.h5"
    with FeatureStore(path, "a") as s:
        s.write(make_feats(0))
        with pytest.raises(ShapeError, match=r"f.h5.*image 'bad'.*non-finite"):
            s.write(ImageFeatures("bad", global_desc=[np.inf, 1.0]))
        assert "bad" not in s and len(s) == 1  # nothing half-written
    with FeatureStore(path) as s:
        with pytest.raises(DataError, match="image 'zzz' not in"):
            s.read("zzz")
        with pytest.raises(DataError, match="lacks field"):
            s.read("dir/img_000.jpg", ["patch_tokens"])
        with pytest.raises(RelookError, match="read-only"):
            s.write(make_feats(5))


def test_corrupt_dataset_on_read_names_file(tmp_path):
    path = tmp_path / "f.h5"
    with FeatureStore(path, "a") as s:
        s.write(make_feats(0))
    with h5py.File(path, "a") as h:  # someone damaged the file behind our back
        g = h["images"][list(h["images"])[0]]
        del g["keypoints"]
        g["keypoints"] = np.zeros((3, 2), np.float32)
    with FeatureStore(path) as s, pytest.raises(DataError, match=r"f.h5.*keypoints"):
        s.read("dir/img_000.jpg")


WRITER = textwrap.dedent("""
    import sys, time, h5py
    sys.path.insert(0, {tests!r})
    from test_store import make_feats
    from relook.store import FeatureStore
    path, n, pause_at = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    calls = {{"n": 0}}
    orig = h5py.Group.create_dataset
    def slow_create(self, name, *a, **k):
        out = orig(self, name, *a, **k)
        if self.attrs.get("image_id", "") == f"dir/img_{{pause_at:03d}}.jpg":
            calls["n"] += 1
            if calls["n"] == 2:  # half of this image is written: tell the parent, wait to be killed
                print("mid", flush=True)
                time.sleep(60)
        return out
    h5py.Group.create_dataset = slow_create
    with FeatureStore(path, "a") as store:
        for i in range(n):
            if store.write(make_feats(i)):
                print("wrote", i, flush=True)
""")


def test_sigkill_midwrite_then_resume(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(tests=os.path.dirname(__file__)))
    killed, clean = tmp_path / "killed.h5", tmp_path / "clean.h5"
    proc = subprocess.Popen([sys.executable, str(script), str(killed), "40", "25"], stdout=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if line.strip() == "mid":
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and lines[-2] == "wrote 24"
    # every image before the kill is readable; the half-written one is invisible
    with FeatureStore(killed) as s:
        assert len(s) == 25 and "dir/img_025.jpg" not in s
        assert all(s.read(f"dir/img_{i:03d}.jpg") == make_feats(i) for i in range(25))
    # resume: only the missing images are written
    out = subprocess.run(
        [sys.executable, str(script), str(killed), "40", "-1"], capture_output=True, text=True, check=True
    )
    assert out.stdout.split("\n")[0] == "wrote 25" and out.stdout.count("wrote") == 15
    subprocess.run([sys.executable, str(script), str(clean), "40", "-1"], capture_output=True, check=True)
    with FeatureStore(killed) as a, FeatureStore(clean) as b:
        assert a.ids() == b.ids() and len(a) == 40
        assert all(a.read(i) == b.read(i) for i in a.ids())


def test_merge(tmp_path):
    for shard, idx in (("s0.h5", [0, 1, 2]), ("s1.h5", [2, 3])):
        with FeatureStore(tmp_path / shard, "a", meta={"extractor": "x"}) as s:
            s.write_many(make_feats(i) for i in idx)
    out = merge_stores([tmp_path / "s0.h5", tmp_path / "s1.h5"], tmp_path / "all.h5")
    with FeatureStore(out) as s:
        assert len(s) == 4 and s.read("dir/img_003.jpg") == make_feats(3) and s.meta == {"extractor": "x"}
    with pytest.raises(DataError, match="exists"):
        merge_stores([tmp_path / "s0.h5"], out)
    with FeatureStore(tmp_path / "s2.h5", "a") as s:  # conflicting content for the same id
        f = make_feats(0)
        f.global_desc = f.global_desc + 1
        s.write(f)
    before = (tmp_path / "all.h5").read_bytes()
    with pytest.raises(DataError, match="differs"):
        merge_stores([tmp_path / "s0.h5", tmp_path / "s2.h5"], out, overwrite=True)
    assert (tmp_path / "all.h5").read_bytes() == before  # a failed merge leaves the output untouched


def test_disk_full_stops_cleanly(tmp_path, monkeypatch):
    """A nearly full disk stops the writer before HDF5 writes (ResourceError, exit code 1, naming the
    store); the images written before stay readable, and with space again the writer resumes. The limit
    is the documented one: free < 2 x the image's bytes + RESERVE_BYTES refuses, one byte more passes."""
    import shutil

    import relook.io
    from relook.errors import ResourceError

    real = shutil.disk_usage
    free = {"bytes": None}
    monkeypatch.setattr(relook.io.shutil, "disk_usage", lambda p: real(p)._replace(free=free["bytes"] or real(p).free))
    path = tmp_path / "s.h5"
    feats = [ImageFeatures(f"im{i}", global_desc=np.full(256, i, np.float32)) for i in range(4)]
    with FeatureStore(path, "a") as store:
        for f in feats[:3]:
            store.write(f)
        limit = 2 * feats[3].global_desc.nbytes + relook.io.RESERVE_BYTES
        free["bytes"] = limit - 1
        with pytest.raises(ResourceError, match=r"s\.h5: disk nearly full .*image 'im3'") as e:
            store.write(feats[3])
        assert e.value.exit_code == 1 and "\n" not in str(e.value)
    with FeatureStore(path) as store:  # closed cleanly: every earlier image intact, the refused one absent
        assert store.ids() == ["im0", "im1", "im2"]
        assert all(np.array_equal(store.read(f.image_id).global_desc, f.global_desc) for f in feats[:3])
    free["bytes"] = limit
    with FeatureStore(path, "a") as store:
        assert store.write(feats[3]) and len(store) == 4
