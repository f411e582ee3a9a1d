"""kill -9 at a seeded random moment of every stage, then a rerun: outputs identical to an uninterrupted run.

One tiny synthetic experiment (relative paths, so a copied folder is the same experiment) is run stage by
stage, each in a fresh interpreter: that is the reference. Before each stage the folder is copied; in the
copy the same command runs in a subprocess (the real CLI, its imports done before it says ``ready``) and gets SIGKILL
after a delay drawn from a seeded RNG within the stage's measured duration; then the command is rerun to
completion and every file the stage wrote is compared with the reference: arrays and tensors equal, JSON
equal except timings, images byte for byte, and no file more or less (no temporary file left behind).
"""

import gzip
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

pytestmark = pytest.mark.slow

SEED = 19
TIMING_KEYS = {"seconds", "seconds_per_query", "date"}  # wall-clock readings: the only values allowed to differ
RUNNER = """
import sys
import torch, faiss, h5py, cv2  # noqa: the heavy imports, before 'ready'
import relook.cli, relook.pipeline, relook.features, relook.rerank, relook.train.rrt, relook.geometry.robust
import relook.datasets, relook.datasets.synthetic, relook.datasets.co3d_retrieve
torch.set_num_threads(1)
print("ready", flush=True)
sys.exit(relook.cli.main(sys.argv[1:]))
"""

CONFIG = """
dataset: {name: co3d_retrieve, root: ret, split: test, variant: full}
extractors:
  - {name: cnn_local, arch: resnet18, pretrained: false, image_size: 64, local_dim: 16, batch_size: 4}
  - {name: sift, num_features: 64}
global: cnn_local
shortlist: {k: 8, index: flat}
rerankers:
  - {name: gv, features: sift, threshold: 4.0, top_k: 6}
  - {name: aqe}
  - {name: asmk, features: sift, codebook_size: 16, top_k: 6}
out: run
"""

EXP = ["-c", "exp.yaml", "--quiet"]
# stages killed after the N-th progress line showing this text (N drawn from the range), not after a delay:
# inside the batched CNN pass of extract (a resumed batch must give the same features), and in training after
# a checkpoint was written (the resumed run must continue exactly)
MARKERS = {"extract": ("extract:cnn_local:", (3, 13)), "train rrt": ("train rrt [3/", (1, 3))}
# (stage, argv, argv of the rerun, outputs the stage writes (files or folders, relative to the experiment))
STAGES = [
    (
        "datasets synthetic",
        [
            "datasets",
            "synthetic",
            "co3d",
            "--num-instances",
            "4",
            "--num-views",
            "5",
            "--image-size",
            "64",
            "--no-progress",
        ],
        None,
        ["co3d"],
    ),
    (
        "datasets build-co3d-retrieve",
        ["datasets", "build-co3d-retrieve", "co3d", "ret", "--no-progress"],
        None,
        ["ret"],
    ),
    ("extract", ["extract", "-c", "exp.yaml"], None, ["run/features"]),
    ("index", ["index", "-c", "exp.yaml"], None, ["run/index.faiss", "run/index.json"]),
    ("search", ["search", "-c", "exp.yaml"], None, ["run/shortlist.npz"]),
    ("rerank", ["rerank", *EXP], None, ["run/rankings", "run/results.json"]),
    ("evaluate", ["evaluate", "-c", "exp.yaml"], None, ["run/results.json"]),
    (
        "train rrt",
        [
            "train",
            "rrt",
            "run/features/cnn_local/gallery.h5",
            "-s",
            "dataset.name=co3d_retrieve",
            "-s",
            "dataset.root=ret",
            "-s",
            "dataset.split=test",
            "-o",
            "rrt",
            "-s",
            "train.epochs=4",
            "-s",
            "model.num_layers=1",
            "-s",
            "train.triplets_per_batch=4",
        ],
        [
            "train",
            "rrt",
            "run/features/cnn_local/gallery.h5",
            "-s",
            "dataset.name=co3d_retrieve",
            "-s",
            "dataset.root=ret",
            "-s",
            "dataset.split=test",
            "-o",
            "rrt",
            "-s",
            "train.epochs=4",
            "-s",
            "model.num_layers=1",
            "-s",
            "train.triplets_per_batch=4",
            "--no-progress",
            "--resume",
        ],
        ["rrt"],
    ),
    (
        "geometry pseudo-gt",
        ["geometry", "pseudo-gt", "pairs.txt", "--image-dir", "co3d", "-o", "pgt.h5", "--no-progress"],
        None,
        ["pgt.h5"],
    ),
]


# -- comparing outputs --------------------------------------------------------------------------------
def _drop_timing(x):
    if isinstance(x, dict):
        return {k: _drop_timing(v) for k, v in x.items() if k not in TIMING_KEYS}
    if isinstance(x, list):
        return [_drop_timing(v) for v in x]
    return x


def _h5_tree(path: Path) -> dict:
    """Every dataset (as an array) and every attribute of an HDF5 file, by name."""
    out = {}
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            out[f"{name}@attrs"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]

        out["/@attrs"] = dict(f.attrs)
        f.visititems(visit)
    return out


def _torch_tree(path: Path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _first_difference(a, b, where: str = "") -> str | None:
    """Where ``a`` and ``b`` first differ (a key path like ``/log/2/loss``), or None when they are the same."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return f"{where or '/'} (keys {sorted(map(str, a.keys() ^ b.keys()))})"
        return next((d for k in a if (d := _first_difference(a[k], b[k], f"{where}/{k}"))), None)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and len(a) == len(b):
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := _first_difference(x, y, f"{where}/{i}"))), None)
    return None if _same(a, b) else (where or "/")


def _same(a, b) -> bool:
    import torch

    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, str) and a.startswith("{"):  # JSON kept as a string (h5 attributes, checkpoint config)
        try:
            return _drop_timing(json.loads(a)) == _drop_timing(json.loads(b))
        except (ValueError, TypeError):
            pass
    return a == b


def _content(path: Path, root: Path):
    """What must be equal between an interrupted-then-rerun output and the uninterrupted one (a JSON file
    naming the experiment's folder, like the CO3D-Retrieve manifest, is compared with the folder masked)."""
    suffix = "".join(path.suffixes[-1:])
    if suffix == ".h5":
        return _h5_tree(path)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if "meta_keys" in arrays:
            meta = dict(zip(arrays.pop("meta_keys").tolist(), arrays.pop("meta_values").tolist()))
            arrays["meta"] = {k: v for k, v in meta.items() if k not in TIMING_KEYS}
        return arrays
    if suffix == ".json":
        return _drop_timing(json.loads(path.read_text().replace(str(root), "<experiment>")))
    if suffix == ".jsonl":
        return [_drop_timing(json.loads(line)) for line in path.read_text().splitlines()]
    if suffix == ".jgz":
        with gzip.open(path, "rt") as f:  # the gzip header holds a time stamp
            return json.load(f)
    if suffix == ".pt":
        return _torch_tree(path)
    return path.read_bytes()


def _files(root: Path, outputs: list[str]) -> dict[str, Path]:
    found = {}
    for rel in outputs:
        p = root / rel
        for f in [p] if p.is_file() else sorted(x for x in p.rglob("*") if x.is_file()) if p.exists() else []:
            found[str(f.relative_to(root))] = f
    return found


def _assert_same_outputs(ref: Path, got: Path, outputs: list[str], stage: str) -> None:
    a, b = _files(ref, outputs), _files(got, outputs)
    assert sorted(a) == sorted(b), (
        f"{stage}: files differ: only in reference {sorted(set(a) - set(b))}, "
        f"only after kill+rerun {sorted(set(b) - set(a))}"
    )
    for rel in a:
        where = _first_difference(_content(a[rel], ref), _content(b[rel], got))
        assert where is None, f"{stage}: {rel} differs from the uninterrupted run at {where}"


# -- running ----------------------------------------------------------------------------------------------
def _env():
    src = str(Path(__file__).resolve().parents[1] / "src")
    # TQDM_MININTERVAL=0: a progress line per item, so "the N-th progress line" is "after N-1 items"
    return {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TQDM_MININTERVAL": "0",
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
    }


def _kill_at(cwd: Path, argv: list[str], delay: float, marker: str | None = None, nth: int = 0) -> str:
    """Start ``relook argv`` in ``cwd``; SIGKILL it ``delay`` seconds after it is ready, or (``marker``)
    as soon as its progress output (stderr) has shown ``marker`` ``nth`` times; what happened."""
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, *argv], cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        line = proc.stdout.readline().decode()
        assert line.strip() == "ready", (line, proc.stderr.read().decode() if proc.poll() is not None else "")
        if marker:
            seen = b""
            while seen.count(marker.encode()) < nth:
                chunk = os.read(proc.stderr.fileno(), 4096)
                if not chunk:
                    return f"finished before progress line {nth} of {marker!r} (rc {proc.wait()})"
                seen += chunk
        else:
            time.sleep(delay)
        if proc.poll() is not None:
            return f"finished before the kill (rc {proc.returncode})"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        return f"killed at progress line {nth} of {marker!r}" if marker else f"killed after {delay:.2f} s"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _left_behind(root: Path, outputs: list[str]) -> str:
    """What the killed run left: images per feature store, the checkpoint's epoch, the number of files."""
    from relook.checkpoints import load_checkpoint

    parts = []
    for rel, f in _files(root, outputs).items():
        if f.suffix == ".h5":
            try:
                with h5py.File(f, "r") as h:
                    done = sum(1 for g in h.get("images", {}).values() if g.attrs.get("complete"))
                    parts.append(f"{rel}: {done} images")
            except OSError:
                parts.append(f"{rel}: unreadable")
        elif f.name == "checkpoint.pt":
            parts.append(f"{rel}: epoch {load_checkpoint(f, 'checkpoint')['epoch']}")
    return f"; left {len(_files(root, outputs))} files" + "".join(f", {p}" for p in parts)


def _run_fresh(cwd: Path, argv: list[str]) -> float:
    """Run ``relook argv`` to completion in a fresh interpreter in ``cwd``, as a user would; seconds of work
    (from ``ready``, after the imports, to the exit).

    Fresh, not in this process: a long test session's history can change float results (a full-suite run
    once trained a bit-different RRT in-process than a fresh interpreter did, from the first weight on),
    and the claim tested here is about what kill -9 and a rerun do, not about that."""
    proc = subprocess.Popen(
        [sys.executable, "-c", RUNNER, *argv],
        cwd=cwd,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    start = time.perf_counter()
    out, err = proc.communicate(timeout=600)
    seconds = time.perf_counter() - start
    assert line.strip() == "ready" and proc.returncode == 0, (argv, line + out, err[-2000:])
    return seconds


def test_kill9_every_stage(tmp_path, one_thread):
    """The harness, run a second time (fresh folders, same seed) only if the first run finds a difference
    (the first failure is kept as a warning so it stays visible; two failing runs fail the test)."""
    import warnings

    try:
        _kill9_every_stage(tmp_path / "try1")
    except AssertionError as first:
        warnings.warn(f"kill -9 harness, first run: {str(first).splitlines()[0]}", stacklevel=2)
        _kill9_every_stage(tmp_path / "try2")


def _kill9_every_stage(tmp_path: Path):
    tmp_path.mkdir(parents=True)
    rng = random.Random(SEED)
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "exp.yaml").write_text(CONFIG)
    report, failures = [], []
    for stage, argv, rerun, outputs in STAGES:
        if stage == "geometry pseudo-gt":  # pairs of views of the first synthetic objects
            frames = sorted(str(p.relative_to(ref / "co3d")) for p in (ref / "co3d").rglob("images/*.jpg"))
            (ref / "pairs.txt").write_text("".join(f"{frames[i]} {frames[i + 1]}\n" for i in range(0, 8)))
        before = tmp_path / f"kill_{len(report)}"
        shutil.copytree(ref, before)
        seconds = _run_fresh(ref, argv)  # the reference: uninterrupted
        delay = rng.uniform(0.05, 0.95) * seconds
        marker, (lo, hi) = MARKERS.get(stage, (None, (0, 0)))
        what = _kill_at(before, argv, delay, marker, rng.randint(lo, hi))
        what += _left_behind(before, outputs)
        _run_fresh(before, rerun or argv)
        try:
            _assert_same_outputs(ref, before, outputs, stage)
        except AssertionError as e:
            failures.append(str(e).splitlines()[0])
        report.append(f"{stage}: {seconds:.2f} s, {what}")
    print("\n".join(report))
    assert not failures, failures
    killed = [r for r in report if "killed" in r]
    assert len(killed) >= len(STAGES) // 2, report  # most kills land inside the work, not after it
