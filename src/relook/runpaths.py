"""Paths inside a run, so that a run can move: relative to the run folder, or absolute as given.

In memory a config's paths are what the user typed: absolute, or relative to the working directory. A
run stores them in its ``config.yaml`` in the *stored form*: a relative path is rewritten relative to the
run folder (``out`` itself becomes ``.``) and an absolute one is kept as given; the file says so with the
file-level key ``relative_paths: config`` (relative paths in this file start at this file's folder), which
``load_config`` reads back (``from_file``). The fingerprints of the stages hash the stored form too, so a run
moved together with its photos (a relative ``dataset.root``) is still up to date wherever it is and from
whichever working directory it is read. A dataset that moved on its own is found through ``data_root``
(``relook query --data-root``, or ``-s data_root=DIR``): it replaces ``dataset.root`` for reading files
(and the start of an absolute ``dataset.csv`` under the old root), and is in no fingerprint, since the
images are the same.

The path-valued keys: ``dataset.root``, ``dataset.csv`` (when it is not a file under the root, where the
folder reader looks first), ``out``, and the extractor / reranker options in ``PATH_OPTIONS`` when their
value names an existing file or folder (others are names: ``weights: aliked-n16``, ``projection: seeded``).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from relook.errors import ConfigError

#: extractor and reranker options whose value may be a file (a name otherwise)
PATH_OPTIONS = ("weights", "checkpoint", "projection", "pseudo_gt")
#: the file-level key of a saved run config: relative paths in the file are relative to its folder
MARK_KEY = "relative_paths"
MARK_VALUE = "config"


def _relative_to(path: str, folder: str | Path) -> str:
    """``path`` (relative to the working directory) relative to ``folder`` (also relative to it)."""
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(folder))).as_posix()


def _csv_under_root(dataset: dict) -> bool:
    csv, root = dataset.get("csv"), dataset.get("root")
    return isinstance(csv, str) and isinstance(root, str) and (Path(root) / csv).exists()


def _each_path(conf: dict, exists: Any) -> list[tuple[dict, str]]:
    """(mapping, key) of every relative path value in ``conf``; ``exists(value)`` decides for options."""
    found = []
    dataset = conf.get("dataset")
    if isinstance(dataset, dict):
        if isinstance(dataset.get("root"), str):
            found.append((dataset, "root"))
        if isinstance(dataset.get("csv"), str) and not _csv_under_root(dataset):
            found.append((dataset, "csv"))
    for kind in ("extractors", "rerankers"):
        for item in conf.get(kind) or []:
            if isinstance(item, dict):
                found += [(item, k) for k in PATH_OPTIONS if isinstance(item.get(k), str) and exists(item[k])]
    if isinstance(conf.get("data_root"), str):
        found.append((conf, "data_root"))
    return [(m, k) for m, k in found if not os.path.isabs(m[k])]


def stored_form(conf: dict) -> dict:
    """A copy of ``conf`` with its relative paths relative to ``conf["out"]`` (``out`` itself ``.``, absolute
    paths as they are): what ``config.yaml`` holds and the fingerprints hash (module docstring)."""
    out = conf.get("out", ".")
    stored = copy.deepcopy(conf)
    for mapping, key in _each_path(stored, lambda v: Path(v).exists()):
        mapping[key] = _relative_to(mapping[key], out)
    stored["out"] = "."
    return stored


def from_file(data: dict, folder: Path) -> dict:
    """``data`` read from a config file: when it carries ``relative_paths: config``, its relative paths are
    joined to the file's ``folder`` (so they are relative to the working directory again); the key is
    removed either way. Other files keep their paths relative to the working directory."""
    mark = data.pop(MARK_KEY, None)
    if mark is None or mark == "cwd":
        return data

    if mark != MARK_VALUE:
        raise ConfigError(f"{MARK_KEY} must be {MARK_VALUE!r} or 'cwd', got {mark!r}")

    def join(value: str) -> str:
        return os.path.normpath(os.path.join(folder, value))

    root = data.get("dataset", {}).get("root") if isinstance(data.get("dataset"), dict) else None
    paths = _each_path(data, lambda v: Path(join(v)).exists())
    for mapping, key in paths:
        if key == "csv" and isinstance(root, str) and (Path(join(root)) / mapping[key]).exists():
            continue  # a CSV under the root: the folder reader finds it there
        mapping[key] = join(mapping[key])
    if isinstance(data.get("out"), str) and not os.path.isabs(data["out"]):
        data["out"] = join(data["out"])
    return data


def data_root(conf: dict) -> Path:
    """Where the dataset's files are read from: ``data_root`` when set (a moved dataset), else ``dataset.root``."""
    return Path(conf.get("data_root") or conf["dataset"]["root"])


def remap(conf: dict, value: str) -> str:
    """An absolute path under the old ``dataset.root`` moved under ``data_root`` (other paths unchanged)."""
    new, old = conf.get("data_root"), conf["dataset"].get("root")
    if not new or not isinstance(old, str) or not os.path.isabs(value):
        return value
    rel = os.path.relpath(value, os.path.abspath(old))
    return value if rel == ".." or rel.startswith(".." + os.sep) else os.path.join(new, rel)
