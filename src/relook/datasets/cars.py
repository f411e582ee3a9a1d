"""Cars196 (``cars``) with the metric-learning split: classes 1-98 train, 99-196 test.

Official layout: ROOT/cars_annos.mat (``annotations`` struct array with ``relative_im_path``,
``bbox_x1..bbox_y2``, ``class`` 1..196, ``test``; ``class_names``) and ROOT/car_ims/. The ``test`` flag
of the file is the classification split and is not used here; images are whole (no bbox crop).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from relook.datasets.base import RetrievalDataset, labelled_split, register_dataset
from relook.datasets.tables import require
from relook.errors import ConfigError, DataError

NUM_CLASSES = 196


def read_cars_annos(path: Path) -> tuple[list[str], np.ndarray]:
    """(relative image paths, classes) from ``cars_annos.mat``; errors name the file."""
    # lazy (start-up): loads scipy; relook's entry points import this module
    import scipy.io

    require(path, "Cars196 annotations")
    try:
        mat = scipy.io.loadmat(str(path), squeeze_me=True)
        ann = np.atleast_1d(mat["annotations"])
        paths = [str(p) for p in ann["relative_im_path"]]
        classes = np.asarray(ann["class"], dtype=np.int64).ravel()
    except (KeyError, ValueError, TypeError, IndexError, OSError) as e:
        raise DataError(f"{path}: not a Cars196 annotation file ({type(e).__name__}: {e})") from None
    except Exception as e:  # scipy raises its own MatReadError subclasses of Exception
        raise DataError(f"{path}: cannot read MATLAB file ({type(e).__name__}: {e})") from None
    bad = classes[(classes < 1) | (classes > NUM_CLASSES)]
    if bad.size:
        raise DataError(f"{path}: unknown class id {int(bad[0])} (known: 1..{NUM_CLASSES})")
    return paths, classes


@register_dataset("cars")
def load_cars(root: Path, split: str = "test") -> RetrievalDataset:
    """Cars196 ``split``: "train" = classes 1..98, "test" = 99..196 (every image queries the others)."""
    if split not in ("train", "test"):
        raise ConfigError(f"cars: split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    paths, classes = read_cars_annos(root / "cars_annos.mat")
    keep = (classes <= NUM_CLASSES // 2) == (split == "train")
    items = [(p, root / p, None) for p, k in zip(paths, keep) if k]
    return labelled_split("cars", root, items, classes[keep], {"split": split})
