"""Stanford Online Products (``sop``): ``Ebay_train.txt`` / ``Ebay_test.txt`` under ROOT.

Each file has a header line then ``image_id class_id super_class_id path`` per image (path relative to
ROOT). Every image of the split queries all the others; label = class_id (the product).
"""

from __future__ import annotations

from pathlib import Path

from relook.datasets.base import RetrievalDataset, labelled_split, register_dataset
from relook.datasets.tables import read_columns, to_int
from relook.errors import ConfigError


@register_dataset("sop")
def load_sop(root: Path, split: str = "test") -> RetrievalDataset:
    """SOP ``split`` ("train" | "test") from ROOT/Ebay_<split>.txt."""
    if split not in ("train", "test"):
        raise ConfigError(f"sop: split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    path = root / f"Ebay_{split}.txt"
    rows = read_columns(path, 4, f"SOP {split} list", header=True)
    labels = [to_int(r[1], path, "class_id") for r in rows]
    supers = [to_int(r[2], path, "super_class_id") for r in rows]
    items = [(r[3], root / r[3], None) for r in rows]
    return labelled_split("sop", root, items, labels, {"super_labels": supers, "split": split})
