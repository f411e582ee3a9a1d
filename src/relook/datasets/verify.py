"""Decode every image of a dataset once, so a corrupt file is found before a long extraction."""

from __future__ import annotations

from tqdm import tqdm

from relook.datasets.base import RetrievalDataset
from relook.images import load_image


def verify_images(dataset: RetrievalDataset, progress: bool = False) -> int:
    """Load each distinct query / gallery image (with its crop); the first bad one raises ``DataError``
    naming the file. Returns the number of images checked."""

    seen = set()
    for _, path, bbox in tqdm(dataset.queries + dataset.gallery, desc=f"verify {dataset.name}", disable=not progress):
        if (path, bbox) in seen:
            continue
        seen.add((path, bbox))
        load_image(path, bbox)
    return len(seen)
