"""Google Landmarks v2 training set (``gldv2``): ``train.csv`` or ``train_clean.csv``.

Official layout: ROOT/train.csv (``id,url,landmark_id``), ROOT/train_clean.csv (``landmark_id,images``
with space-separated image ids) and images at ROOT/train/<id[0]>/<id[1]>/<id[2]>/<id>.jpg.
Label = landmark_id; every image queries the others (used for training and for checks).
"""

from __future__ import annotations

from pathlib import Path

from relook.datasets.base import RetrievalDataset, labelled_split, register_dataset
from relook.datasets.tables import read_csv, to_int
from relook.errors import DataError


def image_path(root: Path, image_id: str) -> Path:
    if len(image_id) < 3:
        raise DataError(f"GLDv2 image id {image_id!r} is shorter than 3 characters")
    return root / "train" / image_id[0] / image_id[1] / image_id[2] / f"{image_id}.jpg"


@register_dataset("gldv2")
def load_gldv2(root: Path, clean: bool = True, max_images: int | None = None) -> RetrievalDataset:
    """GLDv2 train images with landmark labels, from train_clean.csv (``clean``) or train.csv."""
    root = Path(root)
    ids, labels = [], []
    if clean:
        path = root / "train_clean.csv"
        for row in read_csv(path, ["landmark_id", "images"], "GLDv2 clean training list"):
            lab = to_int(row["landmark_id"], path, "landmark_id")
            for image_id in row["images"].split():
                ids.append(image_id)
                labels.append(lab)
    else:
        path = root / "train.csv"
        for row in read_csv(path, ["id", "url", "landmark_id"], "GLDv2 training list"):
            ids.append(row["id"])
            labels.append(to_int(row["landmark_id"], path, "landmark_id"))
    if max_images is not None:
        ids, labels = ids[:max_images], labels[:max_images]
    items = [(i, image_path(root, i), None) for i in ids]
    return labelled_split("gldv2", root, items, labels, {"source": path.name})
