"""Your own photos (``folder``): a directory where each sub-folder is one group (instance), or any image
root plus a CSV ``image,group[,split]``.

* **Sub-folders** (no ``csv``): ``ROOT/<group>/**/<image>``, every image under a top-level sub-folder
  (at any depth) belongs to that group; images lying directly in ROOT belong to no group and are kept
  as gallery distractors. With ``split``, ROOT/<split> is read instead (``photos/test/<group>/...``).
* **CSV**: a header row with ``image`` and ``group`` (or ``group_id``) (and optionally ``split``), ``image`` relative to
  ROOT; a relative ``csv`` path is looked up in ROOT first, then in the working directory. With
  ``split``, only the rows of that split are read.
* **Protocol** (as SOP, CUB, Cars): every image queries all the others, positives = the other images
  of its group, the query itself is ignored by the metrics and never its own candidate.
* **Odd inputs**: files that are not images (by name: ``relook.images.IMAGE_EXTENSIONS``) and hidden
  files are ignored; images that cannot be decoded are skipped with one warning line naming them and why (a huge non-JPEG
  file: its size and ``relook.images.MAX_PIXELS``); a
  group left with one image has no positive, so it is not a query, but its image stays in the gallery as
  a distractor (``singletons="drop"`` removes it instead); both are counted in one warning line each. An
  empty folder, a CSV naming a missing file or a dataset without any group of two raises ``DataError``;
  so does a dataset of one group and nothing else (every metric would be 100 %), unless
  ``allow_one_group=True`` (``dataset.allow_one_group=true``), which warns instead.
* **Symbolic links** are followed, each file once: links looping back to a folder above them are not
  entered, and a file reached under several names is read once (under its own name when it lies inside
  ROOT); loops and duplicates are reported in one warning line.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from relook.datasets.base import RetrievalDataset, register_dataset
from relook.datasets.splits import DEFAULT_FRACTIONS, SPLITS, split_groups
from relook.datasets.tables import read_csv
from relook.errors import ConfigError, DataError
from relook.images import image_problem, is_image_file

log = logging.getLogger(__name__)
_readable_cache: dict[tuple[str, int, int], str | None] = {}  # (path, size, mtime) -> why it does not decode
_warned: set[str] = set()


def problem(path: Path) -> str | None:
    """Why the image does not decode (``relook.images.image_problem``: the loader's own pixel limit), or
    None; cached per file (path, size, modification time)."""
    try:
        st = path.stat()
    except OSError:
        return "not found (a broken link?)"
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _readable_cache:
        _readable_cache[key] = image_problem(path)
    return _readable_cache[key]


def readable(path: Path) -> bool:
    """Whether the image decodes (JPEGs at reduced scale, which still reads every byte); cached per file."""
    return problem(path) is None


def _warn_once(message: str) -> None:
    """One warning line per message and process (every pipeline stage reads the dataset again)."""
    if message not in _warned:
        _warned.add(message)
        log.warning(message)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _names(items: list[str], limit: int = 8) -> str:
    return ", ".join(items[:limit]) + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _shown(path: str, root: str) -> str:
    """``path`` relative to ``root`` when inside it ("." for ROOT itself), else as it is."""
    rel = os.path.relpath(path, root)
    return path if rel == ".." or rel.startswith(".." + os.sep) else Path(rel).as_posix()


def _scan_folders(root: Path) -> tuple[list[tuple[str, str | None]], int, list[str]]:
    """((image id, group or None) for every image under ROOT, number of non-image files ignored, notes).

    Symbolic links are followed, each file once: a link to a folder that contains it (a loop) is not
    entered, and a file reached under several names (links, linked folders) is kept once, under the name
    that involves no link if there is one, else the first in sorted order. ``notes`` describes every loop
    and duplicate skipped (empty when there was none), for one warning line.
    """
    root = Path(root)
    real_root = os.path.realpath(root)
    found: dict[str, list[tuple[str, str | None]]] = {}  # real file -> [(image id, group)] in walk order
    loops: list[str] = []
    ignored = 0

    def walk(folder: Path, real_folder: str, rel: tuple[str, ...], ancestors: frozenset[str]) -> None:
        nonlocal ignored
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:  # unreadable folder: as os.walk, nothing under it
            return
        subfolders = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_dir = entry.is_dir()  # follows links
            except OSError:
                is_dir = False
            if is_dir:
                subfolders.append(entry)
            elif not is_image_file(entry.name):
                ignored += 1
            else:
                image = "/".join((*rel, entry.name))
                # a file that is no link lies where its folder really is: one realpath per folder, not per file
                real = os.path.realpath(entry.path) if entry.is_symlink() else os.path.join(real_folder, entry.name)
                found.setdefault(real, []).append((image, rel[0] if rel else None))
        for entry in subfolders:
            real = os.path.realpath(entry.path)
            if real in ancestors:
                link = "/".join((*rel, entry.name))
                loops.append(f"{link} -> {_shown(real, real_root)}")
                continue
            walk(Path(entry.path), real, (*rel, entry.name), ancestors | {real})

    walk(root, real_root, (), frozenset({real_root}))
    rows, duplicates = [], []
    for real, names in found.items():
        direct = [n for n in names if os.path.join(real_root, *n[0].split("/")) == real]
        keep = (direct or names)[0]
        rows.append(keep)
        duplicates += [f"{image} = {keep[0]}" for image, _ in names if image != keep[0]]
    notes = []
    if loops:
        notes.append(f"{_count(len(loops), 'symlink loop')} not entered ({_names(sorted(loops), 4)})")
    if duplicates:
        notes.append(
            f"{_count(len(duplicates), 'duplicate')} of files already read skipped ({_names(sorted(duplicates), 4)})"
        )
    return rows, ignored, notes


def _read_table(root: Path, csv_path: Path, split: str | None) -> list[tuple[str, str | None]]:
    """(image id, group) rows of the CSV (of ``split`` if given); errors name the CSV and line."""
    table = read_csv(csv_path, ["image"], "folder image/group CSV")
    if table and "group" not in table[0] and "group_id" in table[0]:  # the geometry sets' groups.csv
        table = [{**r, "group": r["group_id"]} for r in table]
    if table and "group" not in table[0]:
        raise DataError(f"{csv_path}: CSV header {list(table[0])} lacks column 'group' (or 'group_id')")
    if not table:
        raise DataError(f"{csv_path}: no rows after the header; expected lines 'image,group[,split]'")
    if split is not None:
        if "split" not in table[0]:
            raise ConfigError(f"folder: split={split!r} given but {csv_path} has no 'split' column")
        present = sorted({r["split"] for r in table})
        table = [r for r in table if r["split"] == split]
        if not table:
            raise DataError(f"{csv_path}: no rows with split {split!r} (splits present: {', '.join(present)})")
    rows, seen, missing = [], {}, []
    for lineno, r in enumerate(table, 2):
        image, group = r["image"].strip(), r["group"].strip()
        if not image or not group:
            raise DataError(f"{csv_path}: row {r} has an empty image or group")
        image = Path(image).as_posix()
        if image in seen:
            raise DataError(f"{csv_path}: image {image!r} listed twice (rows {seen[image]} and {lineno})")
        seen[image] = lineno
        if not (root / image).is_file():
            missing.append(f"{image!r} (row {lineno})")
        rows.append((image, group))
    if missing:
        raise DataError(f"{csv_path}: {len(missing)} listed image(s) not found under {root}: {_names(missing, 3)}")
    return rows


def _find_csv(root: Path, csv: str | Path) -> Path:
    path = Path(csv)
    if path.is_absolute() or (root / path).exists() or not path.exists():
        path = path if path.is_absolute() else root / path
    if not path.exists():
        raise DataError(f"{path}: CSV not found (folder csv={str(csv)!r}, looked in {root} and the working directory)")
    return path


@register_dataset("folder")
def load_folder(
    root: Path,
    csv: str | Path | None = None,
    split: str | None = None,
    singletons: str = "distractor",
    check: bool = True,
    split_by_group: bool = False,
    split_fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    split_seed: int = 0,
    allow_one_group: bool = False,
) -> RetrievalDataset:
    """Your own images as a labels-protocol dataset (module docstring).

    ``csv``: image/group table (else sub-folders are groups); ``split``: CSV rows of that split, or
    ROOT/<split> without a CSV; ``singletons``: "distractor" (groups of one image stay in the gallery,
    not queried) or "drop"; ``check``: decode every image once to skip unreadable ones.
    ``split_by_group``: with ``split`` in train / val / test, keep the groups that
    ``relook.datasets.splits.split_groups(all groups, split_fractions, split_seed)`` puts in that split
    (for a CSV or folder that has no split of its own, e.g. UKBench 60/20/20 by object).
    ``allow_one_group``: accept (with a warning) a dataset whose images all belong to one group, where every
    gallery image is a positive of every query and every metric is 100 % by construction (refused otherwise).
    ``info``: ``groups`` (names; label i = groups[i]), ``group_of`` (image id -> group or None),
    ``unreadable``, ``singletons`` (image ids), ``ignored_files`` (count).
    """
    if singletons not in ("distractor", "drop"):
        raise ConfigError(f"folder: singletons must be 'distractor' or 'drop', got {singletons!r}")
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a folder (folder dataset root)")
    ignored = 0
    if split_by_group and split not in SPLITS:
        raise ConfigError(f"folder: split_by_group needs split in {', '.join(SPLITS)}, got split={split!r}")
    if csv is not None:
        source = _find_csv(root, csv)
        rows = _read_table(root, source, None if split_by_group else split)
    else:
        if split is not None and not split_by_group:
            root = root / split
            if not root.is_dir():
                raise DataError(f"{root}: no such split folder (folder dataset without csv reads ROOT/<split>)")
        source = root
        rows, ignored, notes = _scan_folders(root)
        if notes:
            _warn_once(f"folder {root}: symlinks followed, each file read once: {'; '.join(notes)}")
        if not rows:
            raise DataError(f"{root}: no images found; expected one sub-folder of images per group, or csv=FILE")
    if split_by_group:
        assign = split_groups([g for _, g in rows if g is not None], split_fractions, split_seed)
        rows = [r for r in rows if r[1] is not None and assign[r[1]] == split]
    why = {img: problem(root / img) for img, _ in rows} if check else {}
    unreadable = [img for img, _ in rows if why.get(img)]
    if unreadable:
        named = [f"{img} ({why[img]})" for img in unreadable]
        _warn_once(f"folder {source}: skipped {_count(len(unreadable), 'unreadable image')}: {_names(named)}")
        bad = set(unreadable)
        rows = [r for r in rows if r[0] not in bad]
    sizes: dict[str, int] = {}
    for _, group in rows:
        if group is not None:
            sizes[group] = sizes.get(group, 0) + 1
    lone = [img for img, group in rows if group is not None and sizes[group] == 1]
    if lone:
        fate = "kept as gallery distractors, not queries" if singletons == "distractor" else "dropped"
        _warn_once(f"folder {source}: {_count(len(lone), 'group')} of one image (no positive), {fate}: {_names(lone)}")
        if singletons == "drop":
            rows = [r for r in rows if r[0] not in set(lone)]
    groups = sorted(g for g, n in sizes.items() if n >= 2)
    if not groups:
        raise DataError(
            f"{source}: no group has two readable images, so no query has a positive "
            f"({len(rows)} image(s) in {len(sizes)} group(s))"
        )
    if len(sizes) < 2 and all(group is not None for _, group in rows):
        only = f"one group ({next(iter(sizes))!r})" if sizes else "no group"
        why = (
            f"{source}: {only} and no other image, so every gallery image is a positive of every query "
            "and every metric would be 100 % by construction"
        )
        if not allow_one_group:
            raise DataError(f"{why}; add images of other groups, or set dataset.allow_one_group=true to go on")
        _warn_once(f"{why} (going on: allow_one_group is set)")
    rows.sort()
    label_of = {g: i for i, g in enumerate(groups)}
    gallery = [(img, root / img, None) for img, _ in rows]
    # images without a group of two get labels of their own (-1, -2, ...), so they are never positives
    labels = np.array([label_of[g] if g in label_of else -1 - i for i, (_, g) in enumerate(rows)], dtype=np.int64)
    qidx = np.flatnonzero(labels >= 0)
    info = {
        "groups": groups,
        "group_of": dict(rows),
        "unreadable": unreadable,
        "singletons": lone,
        "ignored_files": ignored,
        "split": split,
        "source": str(source),
    }
    return RetrievalDataset(
        "folder",
        root,
        [gallery[i] for i in qidx],
        gallery,
        "labels",
        query_labels=labels[qidx],
        gallery_labels=labels,
        query_in_gallery=qidx,
        info=info,
        exif_orientation=True,
    )
