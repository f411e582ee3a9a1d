"""The dataset role: a reader turns an official on-disk layout into a ``RetrievalDataset``.

A ``RetrievalDataset`` lists query and gallery images as ``(image id, path, crop box or None)`` items
and carries the ground truth of its protocol: ``"revisitop"`` (``gnd`` with easy/hard/junk lists per
query), ``"classic"`` (``gnd`` with the original ok/junk lists per query) or ``"labels"`` (a label per image; positives share the query's label, the query itself is
ignored when it is also in the gallery).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from relook.errors import ConfigError
from relook.eval.protocols import classic_ground_truth, label_ground_truth, revisitop_ground_truth
from relook.registry import Registry

DATASETS: Registry = Registry("dataset")
register_dataset = DATASETS.register

ImageItem = tuple[str, Path, "tuple[float, float, float, float] | None"]


def load_dataset(name: str, root: str | Path, **conf: Any) -> RetrievalDataset:
    """Read the dataset registered as ``name`` from ``root`` (its official layout). The built-in readers are
    registered by then: importing this module runs ``relook/datasets/__init__.py`` first, which imports them."""
    return DATASETS.create(name, root=Path(root), **conf)


@dataclass
class RetrievalDataset:
    name: str
    root: Path
    queries: list[ImageItem]
    gallery: list[ImageItem]
    protocol: str  # "revisitop", "classic" or "labels"
    gnd: list[Mapping] | None = None  # revisitop: per query {"easy", "hard", "junk", "bbx"}
    query_labels: np.ndarray | None = None  # labels protocol
    gallery_labels: np.ndarray | None = None
    query_in_gallery: np.ndarray | None = None  # gallery index of each query itself, or -1
    info: dict[str, Any] = field(default_factory=dict)  # e.g. cameras, categories, splits
    # apply EXIF orientation when loading: off for benchmarks, whose boxes/cameras are in stored pixels and
    # whose official code reads stored pixels; on for a user's own photos (``folder``)
    exif_orientation: bool = False

    @property
    def query_ids(self) -> list[str]:
        return [q[0] for q in self.queries]

    @property
    def gallery_ids(self) -> list[str]:
        return [g[0] for g in self.gallery]

    def ground_truth(self, setting: str | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(positives, ignore) per query; ``setting`` is easy/medium/hard for the revisited protocol."""
        if self.protocol == "revisitop":
            return revisitop_ground_truth(self.gnd or [], setting or "medium")
        if self.protocol == "classic":
            return classic_ground_truth(self.gnd or [])
        if self.protocol == "labels":
            return label_ground_truth(self.query_labels, self.gallery_labels, self.query_in_gallery)
        raise ConfigError(f"dataset {self.name}: unknown protocol {self.protocol!r}")

    def __repr__(self) -> str:
        return (
            f"RetrievalDataset({self.name!r}, root={str(self.root)!r}, {len(self.queries)} queries, "
            f"{len(self.gallery)} gallery, protocol={self.protocol!r})"
        )


def labelled_split(name: str, root: Path, items: Sequence[ImageItem], labels: Sequence, info=None) -> RetrievalDataset:
    """Every image queries all the others (SOP, CUB, Cars, CO3D-Retrieve test split)."""
    labels = np.asarray(labels)
    return RetrievalDataset(
        name,
        root,
        list(items),
        list(items),
        "labels",
        query_labels=labels,
        gallery_labels=labels,
        query_in_gallery=np.arange(len(items)),
        info=dict(info or {}),
    )
