"""atheris harness over relook's file readers (not collected by pytest; run by hand for a bounded time).

Every reader is given fuzzed bytes as its file; the only allowed failure is a ``RelookError`` whose message
names that file. Anything else (another exception, a message without the file) is a crash atheris reports
and saves (``crash-<sha1>``) for a regression test.

    pip install --target /tmp/fuzzlib atheris
    PYTHONPATH=src:/tmp/fuzzlib python tests/fuzz/fuzz_readers.py TARGET -max_total_time=60 -print_final_stats=1

TARGET: store | delg_global | delg_local | rrt_list | gnd | jgz | co3d_frames | sop | cub | gldv2 | config |
shortlist | manifest. Seed inputs (valid files of each kind) are written to ``/tmp/relook-fuzz/<TARGET>-seeds``
on the first run, so the fuzzer starts from real layouts and mutates them.
"""

from __future__ import annotations

import gzip
import io
import json
import pickle
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["relook"]):
    import numpy as np

    from relook.errors import RelookError

WORK = Path(tempfile.gettempdir()) / "relook-fuzz"


def _store(path: Path) -> None:
    from relook.store import FeatureStore

    with FeatureStore(path) as s:
        for i in s.ids():
            s.read(i)
        s.fields()
        s.digest()
        if s.ids():
            s.stack("global_desc") if "global_desc" in s.fields() else None


def _delg_global(path: Path) -> None:
    from relook.features.delg_reader import read_delg_global

    read_delg_global(path)


def _delg_local(path: Path) -> None:
    from relook.features.delg_reader import read_delg_local

    read_delg_local(path)


def _rrt_list(path: Path) -> None:
    from relook.features.delg_reader import read_rrt_list

    read_rrt_list(path)


def _dataset(name: str, filename: str):
    def run(path: Path) -> None:
        from relook.datasets import load_dataset

        load_dataset(name, path.parent)

    run.filename = filename
    return run


def _jgz(path: Path) -> None:
    from relook.datasets.co3d import read_jgz

    read_jgz(path)


def _co3d_frames(path: Path) -> None:
    from relook.datasets.co3d import read_category

    read_category(path.parent.parent, path.parent.name)


def _config(path: Path) -> None:
    from relook.experiment import load_config

    load_config([path])


def _shortlist(path: Path) -> None:
    from relook.types import Shortlist

    Shortlist.load(path)


def _manifest(path: Path) -> None:
    from relook.datasets import load_dataset

    load_dataset("co3d_retrieve", path.parent, split="test")


TARGETS = {  # name -> (reader, the file name it reads, seed writer)
    "store": (_store, "feats.h5"),
    "delg_global": (_delg_global, "x.delg_global"),
    "delg_local": (_delg_local, "x.delg_local"),
    "rrt_list": (_rrt_list, "test_query.txt"),
    "gnd": (_dataset("roxford5k", "gnd_roxford5k.pkl"), "gnd_roxford5k.pkl"),
    "jgz": (_jgz, "frame_annotations.jgz"),
    "co3d_frames": (_co3d_frames, "frame_annotations.jgz"),
    "sop": (_dataset("sop", "Ebay_test.txt"), "Ebay_test.txt"),
    "cub": (_dataset("cub", "images.txt"), "images.txt"),
    "gldv2": (_dataset("gldv2", "train_clean.csv"), "train_clean.csv"),
    "config": (_config, "exp.yaml"),
    "shortlist": (_shortlist, "shortlist.npz"),
    "manifest": (_manifest, "manifest.json"),
}


def seeds(target: str) -> list[bytes]:
    """Valid files of the target's kind (and a few near misses), as bytes."""
    from relook.types import ImageFeatures, Shortlist

    tmp = Path(tempfile.mkdtemp())
    if target == "store":
        from relook.store import FeatureStore

        with FeatureStore(tmp / "s.h5", "a", meta={"extractor": "x"}) as s:
            s.write(
                ImageFeatures(
                    "a/1",
                    global_desc=np.ones(4, np.float32) / 2,
                    keypoints=np.zeros((2, 2)),
                    local_desc=np.zeros((2, 3)),
                )
            )
        return [(tmp / "s.h5").read_bytes()]
    if target in ("delg_global", "delg_local"):
        from relook.features.delg_reader import GLOBAL_EXT, LOCAL_EXT, write_delg_files

        r = np.random.default_rng(0)
        write_delg_files(tmp, "x", r.random(8), r.random((3, 2)) * 10, np.ones(3), r.random((3, 4)), np.ones(3))
        return [(tmp / f"x{GLOBAL_EXT if target == 'delg_global' else LOCAL_EXT}").read_bytes()]
    if target == "rrt_list":
        return [b"a/b.jpg,3,640,480\nc/d.jpg,4,10,10\n"]
    if target == "gnd":
        gnd = {
            "imlist": ["a", "b"],
            "qimlist": ["q"],
            "gnd": [{"bbx": [0, 0, 5, 5], "easy": [0], "hard": [1], "junk": []}],
        }
        return [pickle.dumps(gnd, protocol=p) for p in (2, 4)]
    if target in ("jgz", "co3d_frames"):
        frame = {
            "sequence_name": "s1",
            "frame_number": 0,
            "frame_timestamp": 0.0,
            "image": {"path": "chair/s1/images/frame000001.jpg", "size": [64, 64]},
            "viewpoint": {
                "R": np.eye(3).tolist(),
                "T": [0, 0, 2],
                "focal_length": [1.0, 1.0],
                "principal_point": [0.0, 0.0],
                "intrinsics_format": "ndc_isotropic",
            },
        }
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as f:
            f.write(json.dumps([frame]).encode())
        return [buf.getvalue()]
    if target == "sop":
        return [b"image_id class_id super_class_id path\n1 1 1 bicycle_final/a.JPG\n2 1 1 bicycle_final/b.JPG\n"]
    if target == "cub":
        return [b"1 001.Black/a.jpg\n2 001.Black/b.jpg\n"]
    if target == "gldv2":
        return [b"landmark_id,images\n1,abc def\n2,123\n"]
    if target == "config":
        return [
            b"dataset: {name: sop, root: x}\nextractors: [sift, {name: cnn_local, pretrained: false}]\n"
            b"shortlist: {k: 10}\nrerankers: [{name: gv, threshold: 3.0}]\nout: runs/x\n"
        ]
    if target == "shortlist":
        Shortlist(["q"], ["a", "b"], np.array([[1, 0]]), np.array([[0.9, 0.1]]), {"k": "v"}).save(tmp / "s.npz")
        return [(tmp / "s.npz").read_bytes()]
    if target == "manifest":
        rec = {
            "image_id": "c/s/f1",
            "path": "c/s/images/f1.jpg",
            "masked_path": None,
            "instance": "c/s",
            "category": "c",
            "split": "test",
            "frame_number": 0,
            "angle_deg": 0.0,
            "image_size": [8, 8],
            "K": np.eye(3).tolist(),
            "R": np.eye(3).tolist(),
            "t": [0, 0, 1],
        }
        return [
            json.dumps(
                {
                    "dataset": "co3d_retrieve",
                    "co3d_root": str(tmp),
                    "seed": 0,
                    "num_frames": 5,
                    "step_deg": 72.0,
                    "frames": [rec, {**rec, "image_id": "c/s/f2"}],
                }
            ).encode()
        ]
    raise SystemExit(f"unknown target {target}")


def make_one_input(target: str):
    reader, filename = TARGETS[target]
    folder = WORK / target / ("chair" if target == "co3d_frames" else "root")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename

    def one_input(data: bytes) -> None:
        path.write_bytes(data)
        try:
            reader(path)
        except RelookError as e:
            msg = str(e)
            if str(path) not in msg and path.name not in msg and str(path.parent) not in msg:
                raise AssertionError(f"RelookError without the file name: {msg!r}") from None
            if "\n" in msg.strip():
                raise AssertionError(f"RelookError of several lines: {msg!r}") from None

    return one_input


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        raise SystemExit(f"usage: fuzz_readers.py TARGET [libFuzzer options]; TARGET in {sorted(TARGETS)}")
    target = sys.argv.pop(1)
    corpus = WORK / f"{target}-seeds"
    if not corpus.exists():
        corpus.mkdir(parents=True)
        for i, s in enumerate(seeds(target)):
            (corpus / f"seed{i}").write_bytes(s)
    atheris.Setup([*sys.argv, str(corpus)], make_one_input(target))
    atheris.Fuzz()


if __name__ == "__main__":
    main()
