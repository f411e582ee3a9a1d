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
            "--dataset",
            "sop",
            "--root",
            "{w}/sop",
            "-o",
            "{w}/rrt",
            "--epochs",
            "many",
        ],
        ["--epochs"],
        None,
    ),
    (
        "data-opt without =",
        [
            "train",
            "rrt",
            "{w}/done/features/x/gallery.h5",
            "--dataset",
            "sop",
            "--root",
            "{w}/sop",
            "-o",
            "{w}/rrt",
            "--data-opt",
            "split",
        ],
        ["--data-opt", "key=value"],
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
            "--dataset",
            "sop",
            "--root",
            "{w}/sop",
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


@pytest.mark.parametrize("name,argv,words,how", CASES, ids=[c[0] for c in CASES])
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
