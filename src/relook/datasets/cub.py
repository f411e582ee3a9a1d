"""CUB-200-2011 (``cub``) with the metric-learning split: classes 1-100 train, 101-200 test.

Official layout: ROOT/images.txt (``image_id relative_path``), ROOT/image_class_labels.txt
(``image_id class_id``), ROOT/classes.txt (``class_id name``, optional here) and ROOT/images/<path>.
"""

from __future__ import annotations

from pathlib import Path

from relook.datasets.base import RetrievalDataset, labelled_split, register_dataset
from relook.datasets.tables import read_columns, to_int
from relook.errors import ConfigError, DataError

NUM_CLASSES = 200


@register_dataset("cub")
def load_cub(root: Path, split: str = "test") -> RetrievalDataset:
    """CUB ``split``: "train" = classes 1..100, "test" = 101..200 (every image queries the others)."""
    if split not in ("train", "test"):
        raise ConfigError(f"cub: split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    images = {r[0]: r[1] for r in read_columns(root / "images.txt", 2, "CUB image list")}
    lab_path = root / "image_class_labels.txt"
    valid = set(range(1, NUM_CLASSES + 1))
    if (root / "classes.txt").exists():
        valid = {to_int(r[0], root / "classes.txt", "class id") for r in _read_classes(root / "classes.txt")}
    items, labels = [], []
    for image_id, cls in read_columns(lab_path, 2, "CUB class labels"):
        c = to_int(cls, lab_path, "class id")
        if c not in valid:
            raise DataError(f"{lab_path}: unknown class id {c} for image {image_id} (known: 1..{NUM_CLASSES})")
        if image_id not in images:
            raise DataError(f"{lab_path}: image id {image_id} is not in {root / 'images.txt'}")
        if (c <= NUM_CLASSES // 2) == (split == "train"):
            items.append((images[image_id], root / "images" / images[image_id], None))
            labels.append(c)
    return labelled_split("cub", root, items, labels, {"split": split})


def _read_classes(path: Path) -> list[list[str]]:
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf8", errors="replace").splitlines(), 1):
        parts = line.split(maxsplit=1)
        if parts:
            if len(parts) != 2:
                raise DataError(f"{path}:{lineno}: expected 'class_id name'")
            rows.append(parts)
    return rows
