"""The data of ``relook benchmark``: each configured set as ``folder``-dataset configs for its splits.

Two kinds of set:

* **split by group** (``split_by_group: true``, UKBench): the folder dataset's own seeded 60/20/20 split by
  group (``relook.datasets.splits.split_groups``); train feeds what is learned (the ASMK codebook, the
  learned rows' training), val chooses settings, test is read once.
* **zero-shot** (``half: group`` or ``half: image``): nothing is learned on it; a fixed seeded half is the
  validation half (settings chosen there), the other half the test half. ``half: group`` puts whole groups
  in one half (``split_groups`` with fractions 0 / 0.5 / 0.5); ``half: image`` puts half of *each* group's
  images (floor) in val and the rest in test, for sets with a handful of large groups (5 Paris landmarks),
  where halving by group would leave 2-3 classes on each side. The halves are written as a CSV
  ``image,group,split`` under the benchmark's output folder and read by the folder dataset with ``split``.

``merge: true`` reads every sub-folder of ``root`` that holds a ``groups.csv`` (the geometry sets) as one
set: images ``<sub>/<image>``, groups ``<sub>/<group>`` (so equal group names of two sub-sets never meet).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from relook.datasets.splits import split_groups
from relook.datasets.tables import read_csv
from relook.errors import ConfigError, DataError
from relook.io import atomic_path

HALVES = ("group", "image")


def read_groups(root: Path, csv_name: str = "groups.csv", merge: bool = False) -> list[tuple[str, str]]:
    """(image relative to ``root``, group) rows of ``root/csv_name``, or of every sub-folder's with ``merge``."""
    tables = (
        [(f"{p.name}/", p / csv_name) for p in sorted(root.iterdir()) if (p / csv_name).is_file()]
        if merge
        else [("", root / csv_name)]
    )
    if not tables:
        raise DataError(f"{root}: no sub-folder holds {csv_name} (benchmark set with merge: true)")
    rows = []
    for prefix, path in tables:
        for r in read_csv(path, ["image"], "image/group CSV"):
            group = r.get("group") or r.get("group_id")
            if not group:
                raise DataError(f"{path}: a row lacks its group (columns 'group' or 'group_id'): {r}")
            rows.append((prefix + r["image"].strip(), prefix + group.strip()))
    return rows


def half_split(rows: list[tuple[str, str]], by: str, seed: int) -> dict[str, str]:
    """Image -> "val" / "test": a fixed seeded half by group or by image within each group (module doc)."""
    if by == "group":
        assign = split_groups([g for _, g in rows], (0.0, 0.5, 0.5), seed)
        return {img: assign[g] for img, g in rows}
    if by != "image":
        raise ConfigError(f"benchmark: half must be one of {HALVES}, got {by!r}")
    rng = np.random.default_rng(int(seed))
    by_group: dict[str, list[str]] = {}
    for img, g in rows:
        by_group.setdefault(g, []).append(img)
    out = {}
    for g in sorted(by_group):
        images = sorted(by_group[g])
        order = rng.permutation(len(images))
        for rank, i in enumerate(order):
            out[images[i]] = "val" if rank < len(images) // 2 else "test"
    return out


def write_split_csv(rows: list[tuple[str, str]], split: dict[str, str], path: Path) -> Path:
    """``image,group,split`` CSV at ``path``, sorted by image (written atomically)."""
    lines = [("image", "group", "split")] + [(img, g, split[img]) for img, g in sorted(rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf8") as f:
        csv.writer(f, lineterminator="\n").writerows(lines)
    return path


def dataset_conf(name: str, spec: dict[str, Any], split: str, data_root: Path, out: Path, seed: int) -> dict:
    """The ``dataset:`` mapping of an experiment config for ``split`` of set ``name`` (module docstring)."""
    root = Path(spec["root"])
    root = root if root.is_absolute() else data_root / root
    if not root.is_dir():
        raise DataError(f"{root}: benchmark set {name!r} not found (data_root {data_root}, root {spec['root']})")
    if spec.get("split_by_group"):
        return {
            "name": "folder",
            "root": str(root),
            "csv": spec.get("csv", "groups.csv"),
            "split_by_group": True,
            "split": split,
            "split_seed": int(spec.get("seed", seed)),
        }
    if split == "all":  # an --extra-test set: every image is a test query
        opts: dict[str, Any] = {"name": "folder", "root": str(root)}
        if (root / "groups.csv").is_file():
            opts["csv"] = str(root / "groups.csv")
        return opts
    rows = read_groups(root, spec.get("csv", "groups.csv"), bool(spec.get("merge")))
    halves = half_split(rows, spec.get("half", "group"), int(spec.get("seed", seed)))
    table = write_split_csv(rows, halves, out / "splits" / f"{name}.csv")
    return {"name": "folder", "root": str(root), "csv": str(table.resolve()), "split": split}


def describe_split(spec: dict[str, Any], split: str, seed: int) -> str:
    """How the images of ``split`` were chosen, for the table (e.g. ``test half by group, seed 0``)."""
    s = int(spec.get("seed", seed))
    if spec.get("split_by_group"):
        return f"{split} objects of a 60/20/20 split by group, seed {s}"
    if split == "all":
        return "all images (--extra-test)"
    how = "by group" if spec.get("half", "group") == "group" else "by image within each group"
    return f"{split} half {how}, seed {s}"
